/**
 * The static Huffman code of HPACK (RFC 7541 Appendix B): string literals in header blocks
 * may be Huffman-coded with this fixed table, and every peer we talk to (Go gRPC, grpc-js,
 * nghttp2) does so for most values.
 *
 * Decoding walks a table of 4-bit steps built once at module load: a state is an inner node
 * of the code tree, and (state, nibble) gives the next state plus the symbol completed on the
 * way, if any. The shortest code is 5 bits, so one nibble completes at most one symbol.
 *
 * @module
 */

/**
 * The code table of RFC 7541 Appendix B as flat pairs, symbol by symbol (0..255, then EOS at
 * 256): code right-aligned ("code as hex") and its length in bits.
 */
// deno-fmt-ignore
const CODES: readonly number[] = [
  // 0..31: control characters
  0x1ff8, 13, 0x7fffd8, 23, 0xfffffe2, 28, 0xfffffe3, 28,
  0xfffffe4, 28, 0xfffffe5, 28, 0xfffffe6, 28, 0xfffffe7, 28,
  0xfffffe8, 28, 0xffffea, 24, 0x3ffffffc, 30, 0xfffffe9, 28,
  0xfffffea, 28, 0x3ffffffd, 30, 0xfffffeb, 28, 0xfffffec, 28,
  0xfffffed, 28, 0xfffffee, 28, 0xfffffef, 28, 0xffffff0, 28,
  0xffffff1, 28, 0xffffff2, 28, 0x3ffffffe, 30, 0xffffff3, 28,
  0xffffff4, 28, 0xffffff5, 28, 0xffffff6, 28, 0xffffff7, 28,
  0xffffff8, 28, 0xffffff9, 28, 0xffffffa, 28, 0xffffffb, 28,
  // 32..63: ' ' ! " # $ % & ' ( ) * + , - . / 0-9 : ; < = > ?
  0x14, 6, 0x3f8, 10, 0x3f9, 10, 0xffa, 12,
  0x1ff9, 13, 0x15, 6, 0xf8, 8, 0x7fa, 11,
  0x3fa, 10, 0x3fb, 10, 0xf9, 8, 0x7fb, 11,
  0xfa, 8, 0x16, 6, 0x17, 6, 0x18, 6,
  0x0, 5, 0x1, 5, 0x2, 5, 0x19, 6,
  0x1a, 6, 0x1b, 6, 0x1c, 6, 0x1d, 6,
  0x1e, 6, 0x1f, 6, 0x5c, 7, 0xfb, 8,
  0x7ffc, 15, 0x20, 6, 0xffb, 12, 0x3fc, 10,
  // 64..95: @ A-Z [ \ ] ^ _
  0x1ffa, 13, 0x21, 6, 0x5d, 7, 0x5e, 7,
  0x5f, 7, 0x60, 7, 0x61, 7, 0x62, 7,
  0x63, 7, 0x64, 7, 0x65, 7, 0x66, 7,
  0x67, 7, 0x68, 7, 0x69, 7, 0x6a, 7,
  0x6b, 7, 0x6c, 7, 0x6d, 7, 0x6e, 7,
  0x6f, 7, 0x70, 7, 0x71, 7, 0x72, 7,
  0xfc, 8, 0x73, 7, 0xfd, 8, 0x1ffb, 13,
  0x7fff0, 19, 0x1ffc, 13, 0x3ffc, 14, 0x22, 6,
  // 96..127: ` a-z { | } ~ DEL
  0x7ffd, 15, 0x3, 5, 0x23, 6, 0x4, 5,
  0x24, 6, 0x5, 5, 0x25, 6, 0x26, 6,
  0x27, 6, 0x6, 5, 0x74, 7, 0x75, 7,
  0x28, 6, 0x29, 6, 0x2a, 6, 0x7, 5,
  0x2b, 6, 0x76, 7, 0x2c, 6, 0x8, 5,
  0x9, 5, 0x2d, 6, 0x77, 7, 0x78, 7,
  0x79, 7, 0x7a, 7, 0x7b, 7, 0x7ffe, 15,
  0x7fc, 11, 0x3ffd, 14, 0x1ffd, 13, 0xffffffc, 28,
  // 128..159
  0xfffe6, 20, 0x3fffd2, 22, 0xfffe7, 20, 0xfffe8, 20,
  0x3fffd3, 22, 0x3fffd4, 22, 0x3fffd5, 22, 0x7fffd9, 23,
  0x3fffd6, 22, 0x7fffda, 23, 0x7fffdb, 23, 0x7fffdc, 23,
  0x7fffdd, 23, 0x7fffde, 23, 0xffffeb, 24, 0x7fffdf, 23,
  0xffffec, 24, 0xffffed, 24, 0x3fffd7, 22, 0x7fffe0, 23,
  0xffffee, 24, 0x7fffe1, 23, 0x7fffe2, 23, 0x7fffe3, 23,
  0x7fffe4, 23, 0x1fffdc, 21, 0x3fffd8, 22, 0x7fffe5, 23,
  0x3fffd9, 22, 0x7fffe6, 23, 0x7fffe7, 23, 0xffffef, 24,
  // 160..191
  0x3fffda, 22, 0x1fffdd, 21, 0xfffe9, 20, 0x3fffdb, 22,
  0x3fffdc, 22, 0x7fffe8, 23, 0x7fffe9, 23, 0x1fffde, 21,
  0x7fffea, 23, 0x3fffdd, 22, 0x3fffde, 22, 0xfffff0, 24,
  0x1fffdf, 21, 0x3fffdf, 22, 0x7fffeb, 23, 0x7fffec, 23,
  0x1fffe0, 21, 0x1fffe1, 21, 0x3fffe0, 22, 0x1fffe2, 21,
  0x7fffed, 23, 0x3fffe1, 22, 0x7fffee, 23, 0x7fffef, 23,
  0xfffea, 20, 0x3fffe2, 22, 0x3fffe3, 22, 0x3fffe4, 22,
  0x7ffff0, 23, 0x3fffe5, 22, 0x3fffe6, 22, 0x7ffff1, 23,
  // 192..223
  0x3ffffe0, 26, 0x3ffffe1, 26, 0xfffeb, 20, 0x7fff1, 19,
  0x3fffe7, 22, 0x7ffff2, 23, 0x3fffe8, 22, 0x1ffffec, 25,
  0x3ffffe2, 26, 0x3ffffe3, 26, 0x3ffffe4, 26, 0x7ffffde, 27,
  0x7ffffdf, 27, 0x3ffffe5, 26, 0xfffff1, 24, 0x1ffffed, 25,
  0x7fff2, 19, 0x1fffe3, 21, 0x3ffffe6, 26, 0x7ffffe0, 27,
  0x7ffffe1, 27, 0x3ffffe7, 26, 0x7ffffe2, 27, 0xfffff2, 24,
  0x1fffe4, 21, 0x1fffe5, 21, 0x3ffffe8, 26, 0x3ffffe9, 26,
  0xffffffd, 28, 0x7ffffe3, 27, 0x7ffffe4, 27, 0x7ffffe5, 27,
  // 224..255
  0xfffec, 20, 0xfffff3, 24, 0xfffed, 20, 0x1fffe6, 21,
  0x3fffe9, 22, 0x1fffe7, 21, 0x1fffe8, 21, 0x7ffff3, 23,
  0x3fffea, 22, 0x3fffeb, 22, 0x1ffffee, 25, 0x1ffffef, 25,
  0xfffff4, 24, 0xfffff5, 24, 0x3ffffea, 26, 0x7ffff4, 23,
  0x3ffffeb, 26, 0x7ffffe6, 27, 0x3ffffec, 26, 0x3ffffed, 26,
  0x7ffffe7, 27, 0x7ffffe8, 27, 0x7ffffe9, 27, 0x7ffffea, 27,
  0x7ffffeb, 27, 0xffffffe, 28, 0x7ffffec, 27, 0x7ffffed, 27,
  0x7ffffee, 27, 0x7ffffef, 27, 0x7fffff0, 27, 0x3ffffee, 26,
  // 256: EOS
  0x3fffffff, 30,
];

/** The end-of-string symbol; a decoder must treat it inside a string as an error (5.2). */
export const EOS = 256;

/** Code of each symbol 0..256, right-aligned. */
export const HUFFMAN_CODE: Uint32Array = new Uint32Array(257);
/** Length in bits of each symbol's code. */
export const HUFFMAN_LENGTH: Uint8Array = new Uint8Array(257);
for (let sym = 0; sym <= EOS; sym++) {
  HUFFMAN_CODE[sym] = CODES[2 * sym]!;
  HUFFMAN_LENGTH[sym] = CODES[2 * sym + 1]!;
}

/** Why a Huffman-coded string is malformed; the caller wraps it in its own error type. */
export type HuffmanFault = "eos" | "padding";

// Flags and fields packed into one entry of the nibble table.
const EMIT = 0x100; // a symbol completed within this nibble; the symbol sits in bits 9..16
const FAIL = 0x20000; // the nibble runs into EOS
const STATE_MASK = 0xff;

/**
 * The decoding tables, built from CODES. Inner nodes are numbered 0..255 (a complete prefix
 * code over 257 symbols has exactly 256), the root is 0.
 */
function buildDecoder(): { steps: Uint32Array; accepting: Uint8Array } {
  // Tree: for an inner node n, child[2n + bit] is another inner node (>= 0) or a leaf
  // encoded as -1 - symbol; -0x10000 marks "no child yet".
  const NONE = -0x10000;
  const child: number[] = [NONE, NONE];
  const depth: number[] = [0];
  const allOnes: boolean[] = [true];
  for (let sym = 0; sym <= EOS; sym++) {
    const code = HUFFMAN_CODE[sym]!, len = HUFFMAN_LENGTH[sym]!;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = (code >>> i) & 1;
      const slot = 2 * node + bit;
      const next = child[slot]!;
      if (i === 0) {
        if (next !== NONE) throw new Error(`Huffman table is not a prefix code: symbol ${sym}`);
        child[slot] = -1 - sym;
      } else if (next === NONE) {
        const id = depth.length;
        child[slot] = id;
        child.push(NONE, NONE);
        depth.push(depth[node]! + 1);
        allOnes.push(allOnes[node]! && bit === 1);
        node = id;
      } else if (next < 0) {
        throw new Error(`Huffman table is not a prefix code: symbol ${sym}`);
      } else {
        node = next;
      }
    }
  }
  const inner = depth.length;
  if (inner !== 256 || child.includes(NONE)) {
    throw new Error(`Huffman table is not complete: ${inner} inner nodes`);
  }

  const steps = new Uint32Array(256 * 16);
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state, entry = 0;
      for (let i = 3; i >= 0; i--) {
        const next = child[2 * node + ((nibble >>> i) & 1)]!;
        if (next >= 0) {
          node = next;
          continue;
        }
        const sym = -1 - next;
        if (sym === EOS) {
          entry = FAIL;
          break;
        }
        entry = EMIT | (sym << 9);
        node = 0;
      }
      steps[state * 16 + nibble] = entry | node;
    }
  }

  // A string may end mid-code only on a prefix of EOS (all ones) shorter than 8 bits (5.2).
  const accepting = new Uint8Array(256);
  for (let n = 0; n < 256; n++) accepting[n] = allOnes[n]! && depth[n]! <= 7 ? 1 : 0;
  return { steps, accepting };
}

const { steps: STEPS, accepting: ACCEPTING } = buildDecoder();

/**
 * Decodes a Huffman-coded string literal into `out` (which must hold `data.length * 8 / 5`
 * octets, the worst case) and returns how many octets it wrote, or the fault that makes the
 * string malformed.
 */
export function huffmanDecode(data: Uint8Array, out: Uint8Array): number | HuffmanFault {
  let state = 0, o = 0;
  for (let i = 0; i < data.length; i++) {
    const byte = data[i]!;
    let e = STEPS[(state << 4) | (byte >>> 4)]!;
    if (e & FAIL) return "eos";
    if (e & EMIT) out[o++] = e >>> 9;
    e = STEPS[((e & STATE_MASK) << 4) | (byte & 0xf)]!;
    if (e & FAIL) return "eos";
    if (e & EMIT) out[o++] = e >>> 9;
    state = e & STATE_MASK;
  }
  return ACCEPTING[state] ? o : "padding";
}

/** The length in octets of `s` (latin1 chars) once Huffman-coded, padding included. */
export function huffmanLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += HUFFMAN_LENGTH[s.charCodeAt(i) & 0xff]!;
  return (bits + 7) >>> 3;
}

/**
 * Writes `s` (latin1 chars) Huffman-coded into `out` at `pos`, padding the last octet with
 * the most significant bits of EOS (all ones), and returns the position after it. `out` must
 * have room for `huffmanLength(s)` octets.
 */
export function huffmanEncode(s: string, out: Uint8Array, pos: number): number {
  // acc holds fewer than 8 pending bits between symbols; codes longer than 24 bits go in two
  // pieces so acc never needs more than 31 bits.
  let acc = 0, bits = 0;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i) & 0xff;
    const code = HUFFMAN_CODE[sym]!, len = HUFFMAN_LENGTH[sym]!;
    if (len > 24) {
      acc = (acc << (len - 16)) | (code >>> 16);
      bits += len - 16;
      while (bits >= 8) out[pos++] = acc >>> (bits -= 8);
      acc &= (1 << bits) - 1;
      acc = (acc << 16) | (code & 0xffff);
      bits += 16;
    } else {
      acc = (acc << len) | code;
      bits += len;
    }
    while (bits >= 8) out[pos++] = acc >>> (bits -= 8);
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out[pos++] = (acc << (8 - bits)) | (0xff >>> bits);
  return pos;
}
