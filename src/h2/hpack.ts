/**
 * HPACK, the header compression of HTTP/2 (RFC 7541): a decoder for the header blocks our
 * peers send and an encoder for ours. Pure TypeScript over Uint8Array, no I/O.
 *
 * Header names and values are strings whose chars are octets (latin1): HPACK and HTTP/2
 * treat them as opaque octets, and gRPC's "-bin" metadata is base64 text anyway.
 *
 * @example
 * ```ts
 * const enc = new HpackEncoder(), dec = new HpackDecoder();
 * const block = enc.encode([[":status", "200"], ["content-type", "application/grpc"]]);
 * dec.decode(block); // [[":status", "200"], ["content-type", "application/grpc"]]
 * ```
 *
 * @module
 */

import { huffmanDecode, huffmanEncode, huffmanLength } from "./hpack_huffman.ts";

/** One header field; names are lower-case ASCII, values are octets mapped 1:1 to chars (latin1). */
export type HeaderField = [name: string, value: string];

/** A malformed header block: the connection must end with COMPRESSION_ERROR (RFC 7540 4.3). */
export class HpackError extends Error {
  /** @param message what was wrong, in sentence case */
  constructor(message: string) {
    super(message);
    this.name = "HpackError";
  }
}

/** The default SETTINGS_HEADER_TABLE_SIZE of HTTP/2 (RFC 7540 6.5.2). */
export const DEFAULT_TABLE_SIZE = 4096;

/**
 * The default limit on a decoded header list, counted like SETTINGS_MAX_HEADER_LIST_SIZE
 * (RFC 7540 6.5.2): name and value octets plus 32 per field.
 */
export const DEFAULT_MAX_HEADER_LIST_SIZE = 64 * 1024;

/** The static table (RFC 7541 Appendix A); index 1 is STATIC_TABLE[0]. */
const STATIC_TABLE: readonly HeaderField[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];
const STATIC_COUNT = STATIC_TABLE.length;

/** Per-entry overhead in the table size accounting (RFC 7541 4.1). */
const ENTRY_OVERHEAD = 32;

/** Integers above this are refused: no sane index, length or table size gets near it. */
const MAX_INTEGER = 0x7fffffff;

/**
 * The dynamic table (RFC 7541 2.3.2): a FIFO of fields, newest first by index, bounded by
 * `capacity` octets. Entries are kept oldest-first in arrays with a moving head so that both
 * insertion and eviction are O(1).
 */
class DynamicTable {
  #names: string[] = [];
  #values: string[] = [];
  #head = 0;
  /** Current size in octets (32 + name + value per entry). */
  size = 0;
  /** How many entries were ever inserted; gives each entry a stable sequence number. */
  inserted = 0;
  /** Called for each evicted entry with its sequence number. */
  onEvict?: (name: string, value: string, seq: number) => void;

  constructor(public capacity: number) {}

  get length(): number {
    return this.#names.length - this.#head;
  }

  /** Entry `i`, 0 being the newest; `i` must be below `length`. */
  name(i: number): string {
    return this.#names[this.#names.length - 1 - i]!;
  }

  value(i: number): string {
    return this.#values[this.#values.length - 1 - i]!;
  }

  /** Index (0 = newest) of the entry with sequence number `seq`, or -1 if evicted. */
  indexOfSeq(seq: number): number {
    const i = this.inserted - 1 - seq;
    return i < this.length ? i : -1;
  }

  add(name: string, value: string): void {
    const entry = ENTRY_OVERHEAD + name.length + value.length;
    // An entry larger than the whole table empties it and is not inserted (RFC 7541 4.4).
    this.#evictTo(this.capacity - entry);
    if (entry > this.capacity) return;
    this.inserted++;
    this.#names.push(name);
    this.#values.push(value);
    this.size += entry;
  }

  setCapacity(capacity: number): void {
    this.capacity = capacity;
    this.#evictTo(capacity);
  }

  #evictTo(limit: number): void {
    while (this.size > limit && this.length > 0) {
      const seq = this.inserted - this.length;
      const name = this.#names[this.#head]!, value = this.#values[this.#head]!;
      this.size -= ENTRY_OVERHEAD + name.length + value.length;
      this.#head++;
      this.onEvict?.(name, value, seq);
    }
    if (this.length === 0) this.size = 0;
    // Drop the evicted prefix once it dominates, so the arrays stay small.
    if (this.#head > 32 && this.#head * 2 > this.#names.length) {
      this.#names = this.#names.slice(this.#head);
      this.#values = this.#values.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** A read position in a buffer, advanced by the readers that take it. */
export interface Cursor {
  pos: number;
}

/**
 * Reads an integer with an N-bit prefix (RFC 7541 5.1) at `at.pos` and advances past it;
 * bits of the first octet above the prefix are ignored. Throws HpackError when the input
 * ends early or the value exceeds 2^31-1.
 */
export function decodeInteger(buf: Uint8Array, at: Cursor, prefixBits: number): number {
  if (at.pos >= buf.length) throw new HpackError("Invalid header block: truncated integer");
  const mask = (1 << prefixBits) - 1;
  let value = buf[at.pos++]! & mask;
  if (value < mask) return value;
  for (let shift = 0;; shift += 7) {
    if (at.pos >= buf.length) throw new HpackError("Invalid header block: truncated integer");
    // Five continuation octets carry 35 bits, more than MAX_INTEGER; a longer run is either
    // padding with zeros or an overflow, and neither is worth accepting.
    if (shift > 28) throw new HpackError("Invalid header block: integer too long");
    const b = buf[at.pos++]!;
    value += (b & 0x7f) * 2 ** shift;
    if (value > MAX_INTEGER) throw new HpackError("Invalid header block: integer exceeds 2^31-1");
    if ((b & 0x80) === 0) return value;
  }
}

/**
 * Writes `value` with an N-bit prefix (RFC 7541 5.1) into `out` at `pos`, `flags` filling
 * the first octet's bits above the prefix, and returns the position after it. `out` needs
 * room for 6 octets.
 */
export function writeInteger(
  out: Uint8Array,
  pos: number,
  prefix: { bits: number; flags: number },
  value: number,
): number {
  const mask = (1 << prefix.bits) - 1;
  if (value < mask) {
    out[pos++] = prefix.flags | value;
    return pos;
  }
  out[pos++] = prefix.flags | mask;
  value -= mask;
  while (value >= 0x80) {
    out[pos++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 0x80);
  }
  out[pos++] = value;
  return pos;
}

/** Reads octets [start, end) of `buf` as a latin1 string. */
function latin1(buf: Uint8Array, start: number, end: number): string {
  if (end - start <= 16) {
    let s = "";
    for (let i = start; i < end; i++) s += String.fromCharCode(buf[i]!);
    return s;
  }
  // fromCharCode takes its octets as arguments; chunks keep us under the engine's limit.
  let s = "";
  for (let i = start; i < end; i += 8192) {
    const chunk = buf.subarray(i, Math.min(end, i + 8192));
    s += String.fromCharCode.apply(null, chunk as unknown as number[]);
  }
  return s;
}

/** Options of {@link HpackDecoder} beyond the table size. */
export interface HpackDecoderOptions {
  /** Limit on the decoded header list (name + value + 32 octets per field); default 64 KiB. */
  maxHeaderListSize?: number;
}

/**
 * Decodes header blocks of one direction of one HTTP/2 connection. It keeps the dynamic
 * table between blocks, so blocks must be decoded in the order they arrive, and after an
 * HpackError the decoder is out of step with the peer: the connection has to end.
 */
export class HpackDecoder {
  #maxTableSize: number;
  #maxListSize: number;
  #table: DynamicTable;
  // The block being decoded and the read position in it.
  #buf: Uint8Array = new Uint8Array(0);
  #at: Cursor = { pos: 0 };
  // Scratch space for Huffman output, grown on demand.
  #scratch = new Uint8Array(256);

  /**
   * @param maxTableSize the SETTINGS_HEADER_TABLE_SIZE we advertise (default 4096); the
   *   peer's encoder starts with a table of this size and may not raise it further.
   * @param options limits beyond the table size
   */
  constructor(maxTableSize: number = DEFAULT_TABLE_SIZE, options: HpackDecoderOptions = {}) {
    this.#maxTableSize = maxTableSize;
    this.#maxListSize = options.maxHeaderListSize ?? DEFAULT_MAX_HEADER_LIST_SIZE;
    this.#table = new DynamicTable(maxTableSize);
  }

  /** The dynamic table's current size in octets (RFC 7541 4.1); for tests and diagnostics. */
  get tableSize(): number {
    return this.#table.size;
  }

  /** The dynamic table's current maximum size, as last set by the peer. */
  get tableCapacity(): number {
    return this.#table.capacity;
  }

  /** The dynamic table's entries, newest first; for tests and diagnostics. */
  tableEntries(): HeaderField[] {
    const out: HeaderField[] = [];
    for (let i = 0; i < this.#table.length; i++) {
      out.push([this.#table.name(i), this.#table.value(i)]);
    }
    return out;
  }

  /** Decodes one complete header block (HEADERS + CONTINUATION payloads joined). Throws HpackError. */
  decode(block: Uint8Array): HeaderField[] {
    this.#buf = block;
    this.#at.pos = 0;
    const fields: HeaderField[] = [];
    let listSize = 0;
    try {
      while (this.#at.pos < block.length) {
        const b = block[this.#at.pos]!;
        let field: HeaderField;
        if (b & 0x80) {
          // Indexed header field (6.1).
          const index = this.#integer(7);
          if (index === 0) throw new HpackError("Invalid header block: index 0 is not allowed");
          field = this.#lookup(index);
        } else if (b & 0x40) {
          // Literal with incremental indexing (6.2.1).
          field = this.#literal(6);
          this.#table.add(field[0], field[1]);
        } else if (b & 0x20) {
          // Dynamic table size update (6.3): only before the first field of a block (4.2).
          if (fields.length > 0) {
            throw new HpackError(
              "Invalid header block: dynamic table size update after a header field",
            );
          }
          const size = this.#integer(5);
          if (size > this.#maxTableSize) {
            throw new HpackError(
              `Invalid header block: dynamic table size update to ${size} exceeds the limit of ${this.#maxTableSize}`,
            );
          }
          this.#table.setCapacity(size);
          continue;
        } else {
          // Literal without indexing (0000) or never indexed (0001) (6.2.2, 6.2.3).
          field = this.#literal(4);
        }
        listSize += ENTRY_OVERHEAD + field[0].length + field[1].length;
        if (listSize > this.#maxListSize) {
          throw new HpackError(
            `Header list too large: more than ${this.#maxListSize} octets`,
          );
        }
        fields.push(field);
      }
    } finally {
      this.#buf = new Uint8Array(0);
    }
    return fields;
  }

  #integer(prefixBits: number): number {
    return decodeInteger(this.#buf, this.#at, prefixBits);
  }

  /** Reads a string literal (5.2). */
  #string(): string {
    const buf = this.#buf;
    if (this.#at.pos >= buf.length) throw new HpackError("Invalid header block: truncated string");
    const huffman = (buf[this.#at.pos]! & 0x80) !== 0;
    const length = this.#integer(7);
    const start = this.#at.pos, end = start + length;
    if (end > buf.length) {
      throw new HpackError(
        `Invalid header block: string of ${length} octets runs past the end of the block`,
      );
    }
    this.#at.pos = end;
    if (!huffman) return latin1(buf, start, end);
    // Every code is at least 5 bits long, so n octets decode to at most 8n/5 octets.
    const most = Math.ceil((length * 8) / 5);
    if (most > this.#scratch.length) {
      this.#scratch = new Uint8Array(Math.max(most, 2 * this.#scratch.length));
    }
    const n = huffmanDecode(buf.subarray(start, end), this.#scratch);
    if (n === "eos") throw new HpackError("Invalid Huffman string: contains EOS");
    if (n === "padding") {
      throw new HpackError(
        "Invalid Huffman string: padding is longer than 7 bits or not all ones",
      );
    }
    return latin1(this.#scratch, 0, n);
  }

  /** Reads a literal field whose name index has an N-bit prefix (6.2). */
  #literal(prefixBits: number): HeaderField {
    const index = this.#integer(prefixBits);
    const name = index === 0 ? this.#string() : this.#lookup(index)[0];
    return [name, this.#string()];
  }

  #lookup(index: number): HeaderField {
    if (index <= STATIC_COUNT) {
      const [name, value] = STATIC_TABLE[index - 1]!;
      return [name, value];
    }
    const i = index - STATIC_COUNT - 1;
    if (i >= this.#table.length) {
      throw new HpackError(
        `Invalid header block: index ${index} beyond the table (${
          STATIC_COUNT + this.#table.length
        } entries)`,
      );
    }
    return [this.#table.name(i), this.#table.value(i)];
  }
}

/** Full (name, value) matches in the static table, as "name\0value" -> index. */
const STATIC_FIELDS = new Map<string, number>();
/** Names in the static table -> their lowest index. */
const STATIC_NAMES = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  const key = name + "\0" + value;
  if (!STATIC_FIELDS.has(key)) STATIC_FIELDS.set(key, i + 1);
  if (!STATIC_NAMES.has(name)) STATIC_NAMES.set(name, i + 1);
});

/**
 * Headers never put into the dynamic table: they change from message to message, so an
 * entry would only push out ones that repeat.
 */
const VOLATILE = new Set([
  ":path",
  "content-length",
  "date",
  "etag",
  "grpc-message",
  "grpc-status-details-bin",
  "grpc-timeout",
  "last-modified",
  "location",
]);

/**
 * Headers sent as never-indexed literals (6.2.3) so that no intermediary compresses them
 * into a table either (RFC 7541 7.1.3).
 */
const SENSITIVE = new Set(["authorization", "cookie", "proxy-authorization", "set-cookie"]);

/** Entries bigger than this are not worth a table slot; typical gRPC pairs are far smaller. */
const MAX_INDEXED_ENTRY = 256;

/** The largest table we use for encoding, whatever the peer allows: plenty for gRPC. */
const ENCODER_TABLE_LIMIT = DEFAULT_TABLE_SIZE;

/**
 * Encodes header blocks for one direction of one HTTP/2 connection.
 *
 * Fields matching a static entry become one octet; repeating fields (content-type,
 * grpc-status, user metadata) go into the dynamic table on first use and are one octet
 * afterwards; everything else is a literal without indexing, naming a static entry where
 * one exists. Strings are Huffman-coded when that is shorter.
 */
export class HpackEncoder {
  #table = new DynamicTable(DEFAULT_TABLE_SIZE);
  /** "name\0value" -> sequence number of its dynamic table entry. */
  #fields = new Map<string, number>();
  /** The table size we will use from the next block on. */
  #target = DEFAULT_TABLE_SIZE;
  /** The smallest size the peer allowed since the last block (RFC 7541 4.2). */
  #lowest = Infinity;
  #out = new Uint8Array(512);
  #pos = 0;

  constructor() {
    this.#table.onEvict = (name, value, seq) => {
      const key = name + "\0" + value;
      if (this.#fields.get(key) === seq) this.#fields.delete(key);
    };
  }

  /** Apply the peer's SETTINGS_HEADER_TABLE_SIZE (emit a size update at the start of the next block if it shrank below what we use). */
  setMaxTableSize(n: number): void {
    this.#target = Math.min(n, ENCODER_TABLE_LIMIT);
    this.#lowest = Math.min(this.#lowest, this.#target);
  }

  /** Encodes a header list. */
  encode(headers: HeaderField[]): Uint8Array {
    this.#pos = 0;
    // If the peer lowered its limit and maybe raised it again since the last block, the
    // lowest value must be signalled first so that its decoder evicts what ours did (4.2).
    const table = this.#table;
    if (this.#lowest < table.capacity) {
      this.#sizeUpdate(this.#lowest);
    }
    if (this.#target !== table.capacity) this.#sizeUpdate(this.#target);
    this.#lowest = Infinity;

    for (const [name, value] of headers) this.#field(name, value);
    const block = this.#out.slice(0, this.#pos);
    // Don't keep a buffer grown by one huge block around for the connection's lifetime.
    if (this.#out.length > 64 * 1024) this.#out = new Uint8Array(512);
    return block;
  }

  #sizeUpdate(size: number): void {
    this.#table.setCapacity(size);
    this.#integer(0x20, 5, size);
  }

  #field(name: string, value: string): void {
    const key = name + "\0" + value;
    const sensitive = SENSITIVE.has(name);
    if (!sensitive) {
      const full = STATIC_FIELDS.get(key);
      if (full !== undefined) return this.#integer(0x80, 7, full);
      const seq = this.#fields.get(key);
      if (seq !== undefined) {
        const i = this.#table.indexOfSeq(seq);
        if (i >= 0) return this.#integer(0x80, 7, STATIC_COUNT + 1 + i);
      }
    }
    const nameIndex = STATIC_NAMES.get(name) ?? 0;
    const entry = ENTRY_OVERHEAD + name.length + value.length;
    if (
      !sensitive && !VOLATILE.has(name) && entry <= MAX_INDEXED_ENTRY &&
      entry <= this.#table.capacity
    ) {
      // Literal with incremental indexing (6.2.1).
      this.#integer(0x40, 6, nameIndex);
      if (nameIndex === 0) this.#string(name);
      this.#string(value);
      this.#table.add(name, value);
      this.#fields.set(key, this.#table.inserted - 1);
      return;
    }
    // Never indexed (0001) for secrets, without indexing (0000) otherwise.
    this.#integer(sensitive ? 0x10 : 0x00, 4, nameIndex);
    if (nameIndex === 0) this.#string(name);
    this.#string(value);
  }

  #reserve(n: number): void {
    if (this.#pos + n <= this.#out.length) return;
    const grown = new Uint8Array(Math.max(this.#pos + n, 2 * this.#out.length));
    grown.set(this.#out.subarray(0, this.#pos));
    this.#out = grown;
  }

  /** Writes `value` with an N-bit prefix; `flags` fills the octet's bits above the prefix. */
  #integer(flags: number, bits: number, value: number): void {
    this.#reserve(6);
    this.#pos = writeInteger(this.#out, this.#pos, { bits, flags }, value);
  }

  #string(s: string): void {
    for (let i = 0; i < s.length; i++) {
      if (s.charCodeAt(i) > 0xff) {
        throw new TypeError(
          `Cannot encode header: char ${i} of ${JSON.stringify(s.slice(0, 64))} is not an octet`,
        );
      }
    }
    const coded = huffmanLength(s);
    if (coded < s.length) {
      this.#integer(0x80, 7, coded);
      this.#reserve(coded);
      this.#pos = huffmanEncode(s, this.#out, this.#pos);
      return;
    }
    this.#integer(0x00, 7, s.length);
    this.#reserve(s.length);
    const out = this.#out;
    for (let i = 0; i < s.length; i++) out[this.#pos++] = s.charCodeAt(i);
  }
}
