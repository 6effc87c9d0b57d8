import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  decodeInteger,
  type HeaderField,
  HpackDecoder,
  HpackEncoder,
  HpackError,
  writeInteger,
} from "./hpack.ts";
import {
  EOS,
  HUFFMAN_CODE,
  HUFFMAN_LENGTH,
  huffmanDecode,
  huffmanEncode,
  huffmanLength,
} from "./hpack_huffman.ts";

/** "8286 8441" -> bytes; whitespace is ignored so RFC hex dumps paste as they are. */
function hex(s: string): Uint8Array {
  const digits = s.replace(/\s+/g, "");
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Asserts the decoder's dynamic table, newest first, and its size in octets. */
function assertTable(dec: HpackDecoder, entries: HeaderField[], size: number): void {
  assert.deepEqual(dec.tableEntries(), entries);
  assert.equal(dec.tableSize, size);
}

// --- C.1 integers ---------------------------------------------------------------------------

Deno.test("C.1.1 encodes and decodes 10 with a 5-bit prefix", () => {
  const out = new Uint8Array(8);
  const n = writeInteger(out, 0, { bits: 5, flags: 0 }, 10);
  assert.equal(toHex(out.subarray(0, n)), "0a");
  // The bits above the prefix belong to the representation, not the integer.
  const at = { pos: 0 };
  assert.equal(decodeInteger(hex("ea"), at, 5), 10);
  assert.equal(at.pos, 1);
});

Deno.test("C.1.2 encodes and decodes 1337 with a 5-bit prefix", () => {
  const out = new Uint8Array(8);
  const n = writeInteger(out, 0, { bits: 5, flags: 0 }, 1337);
  assert.equal(toHex(out.subarray(0, n)), "1f9a0a");
  const at = { pos: 0 };
  assert.equal(decodeInteger(hex("1f9a0a"), at, 5), 1337);
  assert.equal(at.pos, 3);
});

Deno.test("C.1.3 encodes and decodes 42 at an octet boundary", () => {
  const out = new Uint8Array(8);
  const n = writeInteger(out, 0, { bits: 8, flags: 0 }, 42);
  assert.equal(toHex(out.subarray(0, n)), "2a");
  assert.equal(decodeInteger(hex("2a"), { pos: 0 }, 8), 42);
});

Deno.test("integers round-trip at every prefix width up to 2^31-1", () => {
  const out = new Uint8Array(8);
  for (let bits = 1; bits <= 8; bits++) {
    for (
      const v of [
        0,
        1,
        2 ** bits - 2,
        2 ** bits - 1,
        2 ** bits,
        127,
        128,
        16383,
        16384,
        2 ** 31 - 1,
      ]
    ) {
      const n = writeInteger(out, 0, { bits, flags: 0 }, v);
      const at = { pos: 0 };
      assert.equal(decodeInteger(out.subarray(0, n), at, bits), v, `value ${v}, ${bits} bits`);
      assert.equal(at.pos, n);
    }
  }
});

Deno.test("integers: truncated, too long and overflowing inputs are refused", () => {
  assert.throws(() => decodeInteger(hex(""), { pos: 0 }, 5), HpackError);
  assert.throws(() => decodeInteger(hex("1f"), { pos: 0 }, 5), HpackError);
  assert.throws(() => decodeInteger(hex("1f9a"), { pos: 0 }, 5), HpackError);
  // 2^31 - 1 + 31 fits no longer: 31 + (0x7fffffe1 + 1).
  assert.throws(() => decodeInteger(hex("1fe1ffffff07"), { pos: 0 }, 5), /exceeds/);
  assert.equal(decodeInteger(hex("1fe0ffffff07"), { pos: 0 }, 5), 2 ** 31 - 1);
  // Zero-valued continuation octets could otherwise go on forever.
  assert.throws(() => decodeInteger(hex("1f808080808000"), { pos: 0 }, 5), /too long/);
});

// --- C.2 header field representations -------------------------------------------------------

Deno.test("C.2.1 literal header field with indexing", () => {
  const dec = new HpackDecoder();
  const block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
  assert.deepEqual(dec.decode(block), [["custom-key", "custom-header"]]);
  assertTable(dec, [["custom-key", "custom-header"]], 55);
});

Deno.test("C.2.2 literal header field without indexing", () => {
  const dec = new HpackDecoder();
  assert.deepEqual(dec.decode(hex("040c 2f73 616d 706c 652f 7061 7468")), [
    [":path", "/sample/path"],
  ]);
  assertTable(dec, [], 0);
});

Deno.test("C.2.3 literal header field never indexed", () => {
  const dec = new HpackDecoder();
  assert.deepEqual(dec.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74")), [
    ["password", "secret"],
  ]);
  assertTable(dec, [], 0);
});

Deno.test("C.2.4 indexed header field", () => {
  const dec = new HpackDecoder();
  assert.deepEqual(dec.decode(hex("82")), [[":method", "GET"]]);
  assertTable(dec, [], 0);
});

// --- C.3 / C.4 requests ---------------------------------------------------------------------

const REQUESTS: HeaderField[][] = [
  [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]],
  [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ],
  [
    [":method", "GET"],
    [":scheme", "https"],
    [":path", "/index.html"],
    [":authority", "www.example.com"],
    ["custom-key", "custom-value"],
  ],
];
const REQUEST_TABLES: [HeaderField[], number][] = [
  [[[":authority", "www.example.com"]], 57],
  [[["cache-control", "no-cache"], [":authority", "www.example.com"]], 110],
  [
    [["custom-key", "custom-value"], ["cache-control", "no-cache"], [
      ":authority",
      "www.example.com",
    ]],
    164,
  ],
];

function checkSequence(
  dec: HpackDecoder,
  blocks: string[],
  lists: HeaderField[][],
  tables: [HeaderField[], number][],
): void {
  blocks.forEach((block, i) => {
    assert.deepEqual(dec.decode(hex(block)), lists[i], `block ${i + 1}`);
    assertTable(dec, tables[i]![0], tables[i]![1]);
  });
}

Deno.test("C.3 request examples without Huffman coding", () => {
  checkSequence(
    new HpackDecoder(),
    [
      "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      "8286 84be 5808 6e6f 2d63 6163 6865",
      "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ],
    REQUESTS,
    REQUEST_TABLES,
  );
});

Deno.test("C.4 request examples with Huffman coding", () => {
  checkSequence(
    new HpackDecoder(),
    [
      "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
      "8286 84be 5886 a8eb 1064 9cbf",
      "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ],
    REQUESTS,
    REQUEST_TABLES,
  );
});

// --- C.5 / C.6 responses, table size 256 with evictions -------------------------------------

const COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const DATE1 = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2 = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION = "https://www.example.com";
const RESPONSES: HeaderField[][] = [
  [[":status", "302"], ["cache-control", "private"], ["date", DATE1], ["location", LOCATION]],
  [[":status", "307"], ["cache-control", "private"], ["date", DATE1], ["location", LOCATION]],
  [
    [":status", "200"],
    ["cache-control", "private"],
    ["date", DATE2],
    ["location", LOCATION],
    ["content-encoding", "gzip"],
    ["set-cookie", COOKIE],
  ],
];
const RESPONSE_TABLES: [HeaderField[], number][] = [
  [
    [["location", LOCATION], ["date", DATE1], ["cache-control", "private"], [":status", "302"]],
    222,
  ],
  [
    [[":status", "307"], ["location", LOCATION], ["date", DATE1], ["cache-control", "private"]],
    222,
  ],
  [[["set-cookie", COOKIE], ["content-encoding", "gzip"], ["date", DATE2]], 215],
];

Deno.test("C.5 response examples without Huffman coding", () => {
  checkSequence(
    new HpackDecoder(256),
    [
      `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
       2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
       6c65 2e63 6f6d`,
      "4803 3330 37c1 c0bf",
      `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
       54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
       5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
       3d31`,
    ],
    RESPONSES,
    RESPONSE_TABLES,
  );
});

Deno.test("C.6 response examples with Huffman coding", () => {
  checkSequence(
    new HpackDecoder(256),
    [
      `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
       2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
      "4883 640e ffc1 c0bf",
      `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
       77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
       9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
    ],
    RESPONSES,
    RESPONSE_TABLES,
  );
});

// --- Huffman code -------------------------------------------------------------------------

Deno.test("Huffman table is the canonical code of Appendix B", () => {
  // The RFC's code is canonical: ordered by (length, symbol), each code is the previous one
  // plus one, shifted left when the length grows. Checking that catches a mistyped code or
  // length in the transcription; the Kraft sum of exactly 1 shows the code is complete.
  const order = [...Array(EOS + 1).keys()].sort((a, b) =>
    HUFFMAN_LENGTH[a]! - HUFFMAN_LENGTH[b]! || a - b
  );
  let code = 0, len = HUFFMAN_LENGTH[order[0]!]!, kraft = 0;
  for (const sym of order) {
    code *= 2 ** (HUFFMAN_LENGTH[sym]! - len);
    len = HUFFMAN_LENGTH[sym]!;
    assert.equal(HUFFMAN_CODE[sym], code, `code of symbol ${sym}`);
    kraft += 2 ** -len;
    code++;
  }
  assert.equal(kraft, 1);
  // Spot checks straight from the table.
  assert.deepEqual([HUFFMAN_CODE[48], HUFFMAN_LENGTH[48]], [0x0, 5]); // '0'
  assert.deepEqual([HUFFMAN_CODE[92], HUFFMAN_LENGTH[92]], [0x7fff0, 19]); // '\'
  assert.deepEqual([HUFFMAN_CODE[255], HUFFMAN_LENGTH[255]], [0x3ffffee, 26]);
  assert.deepEqual([HUFFMAN_CODE[EOS], HUFFMAN_LENGTH[EOS]], [0x3fffffff, 30]);
});

Deno.test("Huffman round-trips every octet and the RFC strings", () => {
  let all = "";
  for (let i = 0; i < 256; i++) all += String.fromCharCode(i);
  for (const s of [all, "www.example.com", "no-cache", COOKIE, "", "a", "\xff\x00\x80"]) {
    const enc = new Uint8Array(huffmanLength(s));
    assert.equal(huffmanEncode(s, enc, 0), enc.length);
    const out = new Uint8Array(Math.ceil((enc.length * 8) / 5));
    const n = huffmanDecode(enc, out);
    assert.equal(typeof n, "number");
    let got = "";
    for (let i = 0; i < (n as number); i++) got += String.fromCharCode(out[i]!);
    assert.equal(got, s);
  }
  const www = new Uint8Array(12);
  huffmanEncode("www.example.com", www, 0);
  assert.equal(toHex(www), "f1e3c2e5f23a6ba0ab90f4ff");
});

// --- malformed blocks -----------------------------------------------------------------------

Deno.test("malformed header blocks raise HpackError", () => {
  const cases: [string, string, RegExp][] = [
    ["truncated integer", "ff", /truncated integer/],
    ["truncated multi-octet integer", "ff 80", /truncated integer/],
    ["index 0", "80", /index 0/],
    ["index beyond the static table", "be", /index 62 beyond the table \(61 entries\)/],
    ["literal name index beyond the table", "7f 00 01 61", /index 63 beyond/],
    ["size update above the maximum", "3f e2 1f", /exceeds the limit of 4096/],
    ["size update after a field", "82 20", /size update after a header field/],
    ["string running past the end", "00 05 61 62", /runs past the end/],
    ["missing string", "40", /truncated string/],
    ["missing value", "40 01 61", /truncated string/],
    // "a" is 00011; 0x1f pads with 000, not with ones.
    ["Huffman padding not all ones", "00 01 61 81 18", /padding/],
    // "a" then a whole octet of ones: 8 bits of padding.
    ["Huffman padding longer than 7 bits", "00 01 61 82 1f ff", /padding/],
    // EOS (30 ones) followed by two padding ones.
    ["EOS in a Huffman string", "00 01 61 84 ff ff ff ff", /EOS/],
    ["integer overflow", "ff ff ff ff ff 0f", /exceeds/],
  ];
  for (const [what, block, message] of cases) {
    assert.throws(() => new HpackDecoder().decode(hex(block)), (err: unknown) => {
      assert.ok(err instanceof HpackError, `${what}: ${err}`);
      assert.match(err.message, message, what);
      return true;
    });
  }
});

Deno.test("a size update is accepted at block start, up to the advertised size", () => {
  const dec = new HpackDecoder(256);
  dec.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
  // Two updates in a row (shrink to 0, then back to 256) empty the table (4.2).
  assert.deepEqual(dec.decode(hex("20 3f e1 01 82")), [[":method", "GET"]]);
  assertTable(dec, [], 0);
  assert.equal(dec.tableCapacity, 256);
  assert.throws(() => dec.decode(hex("be")), /beyond the table/);
  assert.throws(() => new HpackDecoder(256).decode(hex("3f e2 01")), /exceeds the limit of 256/);
});

Deno.test("an entry larger than the table empties it", () => {
  const dec = new HpackDecoder(64);
  dec.decode(hex("40 01 61 01 62")); // a: b, 34 octets
  assertTable(dec, [["a", "b"]], 34);
  const long = "x".repeat(40);
  const block = new Uint8Array([0x40, 0x01, 0x63, 40, ...new TextEncoder().encode(long)]);
  assert.deepEqual(dec.decode(block), [["c", long]]);
  assertTable(dec, [], 0);
});

Deno.test("a header list over the limit raises HpackError", () => {
  const enc = new HpackEncoder();
  const big: HeaderField[] = [["x-a", "a".repeat(40_000)], ["x-b", "b".repeat(30_000)]];
  const block = enc.encode(big);
  assert.throws(() => new HpackDecoder().decode(block), /Header list too large/);
  assert.deepEqual(new HpackDecoder(4096, { maxHeaderListSize: 80_000 }).decode(block), big);
});

// --- encoder --------------------------------------------------------------------------------

Deno.test("encoder uses the static table and indexes repeated gRPC fields", () => {
  const enc = new HpackEncoder(), dec = new HpackDecoder();
  const headers: HeaderField[] = [[":status", "200"], ["content-type", "application/grpc"]];
  const first = enc.encode(headers);
  assert.equal(first[0], 0x88); // :status: 200 is static index 8
  assert.equal(first[1], 0x40 | 31); // content-type by static name, incremental indexing
  assert.deepEqual(dec.decode(first), headers);
  const second = enc.encode(headers);
  assert.equal(toHex(second), "88be"); // both one octet now
  assert.deepEqual(dec.decode(second), headers);

  const trailers: HeaderField[] = [["grpc-status", "0"], ["grpc-message", "boom"]];
  assert.deepEqual(dec.decode(enc.encode(trailers)), trailers);
  const again = enc.encode(trailers);
  assert.equal(again[0], 0xbe); // grpc-status: 0 from the dynamic table
  assert.deepEqual(dec.decode(again), trailers);
  // grpc-message varies per call, so it stays out of the table.
  assert.deepEqual(dec.tableEntries(), [["grpc-status", "0"], [
    "content-type",
    "application/grpc",
  ]]);
});

Deno.test("encoder sends secrets never-indexed and refuses non-octet chars", () => {
  const enc = new HpackEncoder();
  const block = enc.encode([["authorization", "Bearer x"]]);
  assert.equal(block[0], 0x10 | 0x0f); // never indexed, name index 23 needs 4-bit prefix + 8
  assert.deepEqual(new HpackDecoder().decode(block), [["authorization", "Bearer x"]]);
  assert.throws(() => enc.encode([["x", "\u0100"]]), TypeError);
});

/** A tiny deterministic PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function randomList(rand: () => number): HeaderField[] {
  const names = [
    ":status",
    "content-type",
    "grpc-status",
    "grpc-message",
    "x-meta",
    "x-other",
    "user-agent",
    "authorization",
    "date",
  ];
  const values = ["200", "application/grpc", "0", "13", "", "gzip"];
  const list: HeaderField[] = [];
  const n = Math.floor(rand() * 8);
  for (let i = 0; i < n; i++) {
    let name = names[Math.floor(rand() * names.length)]!;
    if (rand() < 0.2) name = "x-" + Math.floor(rand() * 1000);
    let value: string;
    const r = rand();
    if (r < 0.4) value = values[Math.floor(rand() * values.length)]!;
    else {
      // Random latin1 octets (including non-ASCII), mostly short, some past the
      // one- and two-octet length encodings (127, 16383).
      const len = r < 0.9
        ? Math.floor(rand() * 40)
        : r < 0.97
        ? 128 + Math.floor(rand() * 400)
        : 16384 + Math.floor(rand() * 2000);
      const chars: number[] = [];
      for (let j = 0; j < len; j++) {
        chars.push(rand() < 0.5 ? 0x61 + Math.floor(rand() * 26) : Math.floor(rand() * 256));
      }
      value = String.fromCharCode(...chars);
    }
    list.push([name, value]);
  }
  return list;
}

Deno.test("encoder round-trips random header lists through the decoder", () => {
  const rand = rng(7);
  const enc = new HpackEncoder(), dec = new HpackDecoder();
  for (let i = 0; i < 500; i++) {
    const list = randomList(rand);
    assert.deepEqual(dec.decode(enc.encode(list)), list, `block ${i}`);
  }
  // Long values go out with multi-octet lengths and come back intact.
  const long: HeaderField[] = [["x-long", "\xe9".repeat(200)], ["x-longer", "z\xff".repeat(9000)]];
  assert.deepEqual(dec.decode(enc.encode(long)), long);
});

Deno.test("encoder and decoder stay in step over many blocks with small tables", () => {
  for (const size of [0, 40, 100, 256]) {
    const rand = rng(size + 1);
    const enc = new HpackEncoder(), dec = new HpackDecoder(4096);
    enc.setMaxTableSize(size);
    for (let i = 0; i < 400; i++) {
      const list = randomList(rand);
      assert.deepEqual(dec.decode(enc.encode(list)), list, `table ${size}, block ${i}`);
      assert.ok(dec.tableSize <= size, `table ${size} holds ${dec.tableSize} octets`);
    }
  }
});

Deno.test("encoder signals the lowest table size the peer set between blocks", () => {
  const enc = new HpackEncoder(), dec = new HpackDecoder();
  const list: HeaderField[] = [["content-type", "application/grpc"], ["x-a", "1"]];
  dec.decode(enc.encode(list));
  assert.equal(dec.tableEntries().length, 2);
  // Shrink to 0 and back to 4096 before the next block: the peer must see both, so that it
  // evicts everything the encoder evicted.
  enc.setMaxTableSize(0);
  enc.setMaxTableSize(4096);
  const block = enc.encode(list);
  assert.equal(toHex(block.subarray(0, 4)), "203fe11f");
  assert.deepEqual(dec.decode(block), list);
  assert.equal(dec.tableCapacity, 4096);
  assert.deepEqual(dec.tableEntries(), [["x-a", "1"], ["content-type", "application/grpc"]]);
  // A larger allowance than we use changes nothing on the wire.
  enc.setMaxTableSize(65536);
  assert.equal(toHex(enc.encode([[":status", "200"]])), "88");
});

// --- real peers -----------------------------------------------------------------------------

const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/** An empty SETTINGS frame: the server preface clients wait for before they send requests. */
const SERVER_SETTINGS = new Uint8Array([0, 0, 0, 4, 0, 0, 0, 0, 0]);

/**
 * Accepts one HTTP/2 connection on `listener`, answers with a server preface and returns
 * the first `count` header blocks the client sends (HEADERS + CONTINUATION payloads, padding
 * and priority removed), in the order sent.
 */
async function captureHeaderBlocks(listener: Deno.Listener, count: number): Promise<Uint8Array[]> {
  const conn = await listener.accept();
  try {
    await conn.write(SERVER_SETTINGS);
    let buf = new Uint8Array(0);
    const fill = async (n: number) => {
      while (buf.length < n) {
        const chunk = new Uint8Array(65536);
        const got = await conn.read(chunk);
        if (got === null) throw new Error(`Connection closed with ${buf.length} of ${n} octets`);
        const next = new Uint8Array(buf.length + got);
        next.set(buf);
        next.set(chunk.subarray(0, got), buf.length);
        buf = next;
      }
    };
    await fill(PREFACE.length);
    assert.equal(new TextDecoder().decode(buf.subarray(0, PREFACE.length)), PREFACE);
    buf = buf.subarray(PREFACE.length);
    const blocks: Uint8Array[] = [];
    let pending: Uint8Array[] = [];
    while (blocks.length < count) {
      await fill(9);
      const length = (buf[0]! << 16) | (buf[1]! << 8) | buf[2]!;
      const type = buf[3]!, flags = buf[4]!;
      await fill(9 + length);
      let payload = buf.subarray(9, 9 + length);
      buf = buf.subarray(9 + length);
      if (type === 1) {
        // HEADERS: strip PADDED (0x8) and PRIORITY (0x20) fields around the fragment.
        let start = 0, end = payload.length;
        if (flags & 0x8) end -= payload[start++]!;
        if (flags & 0x20) start += 5;
        payload = payload.subarray(start, end);
      } else if (type !== 9) {
        continue; // not a header fragment (SETTINGS, WINDOW_UPDATE, ...)
      }
      pending.push(payload.slice());
      if (flags & 0x4) {
        // END_HEADERS: the block is complete.
        const size = pending.reduce((n, p) => n + p.length, 0);
        const block = new Uint8Array(size);
        let at = 0;
        for (const p of pending) {
          block.set(p, at);
          at += p.length;
        }
        blocks.push(block);
        pending = [];
      }
    }
    return blocks;
  } finally {
    conn.close();
  }
}

function field(fields: HeaderField[], name: string): string | undefined {
  return fields.find(([n]) => n === name)?.[1];
}

Deno.test("decodes the request headers of Go gRPC (ctr)", async () => {
  const dir = await Deno.makeTempDir();
  const sock = `${dir}/h2.sock`;
  const listener = Deno.listen({ transport: "unix", path: sock });
  const child = new Deno.Command("ctr", {
    args: ["--address", sock, "--timeout", "10s", "version"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const [block] = await captureHeaderBlocks(listener, 1);
    const fields = new HpackDecoder().decode(block!);
    assert.equal(field(fields, ":method"), "POST");
    assert.equal(field(fields, ":path"), "/containerd.services.version.v1.Version/Version");
    assert.equal(field(fields, "content-type"), "application/grpc");
    assert.equal(field(fields, "te"), "trailers");
    assert.match(field(fields, "user-agent") ?? "", /^grpc-go\//);
  } finally {
    listener.close();
    child.kill();
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decodes successive request headers of grpc-js (nghttp2), dynamic table reused", async () => {
  const grpc = await import("@grpc/grpc-js");
  const dir = await Deno.makeTempDir();
  const sock = `${dir}/h2.sock`;
  const listener = Deno.listen({ transport: "unix", path: sock });
  // grpc-js writes messages with Buffer methods, so a plain Uint8Array will not do.
  const identity = (b: Uint8Array) => Buffer.from(b);
  const Ctor = grpc.makeGenericClientConstructor({
    Call: {
      path: "/test.Svc/Call",
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  }, "Svc");
  const client = new Ctor(`unix:${sock}`, grpc.credentials.createInsecure());
  try {
    const captured = captureHeaderBlocks(listener, 3);
    for (let i = 0; i < 3; i++) {
      const md = new grpc.Metadata();
      md.set("containerd-namespace", "default");
      md.set("x-call", String(i));
      client.makeUnaryRequest(
        "/test.Svc/Call",
        identity,
        identity,
        new Uint8Array(0),
        md,
        () => {},
      );
    }
    const blocks = await captured;
    const dec = new HpackDecoder();
    blocks.forEach((block, i) => {
      const fields = dec.decode(block);
      assert.equal(field(fields, ":path"), "/test.Svc/Call");
      assert.equal(field(fields, "content-type"), "application/grpc");
      assert.equal(field(fields, "containerd-namespace"), "default");
      assert.equal(field(fields, "x-call"), String(i));
    });
    // The later blocks lean on the table the first one filled.
    assert.ok(
      blocks[2]!.length < blocks[0]!.length / 2,
      `block sizes ${blocks.map((b) => b.length)}`,
    );
  } finally {
    client.close();
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});
