import assert from "node:assert/strict";
import { encodeFrame, FrameReader, FrameWriter, MAX_MESSAGE_LENGTH } from "./frame.ts";

/** A reader that hands out the given chunks one read at a time. */
function chunks(...parts: number[][]) {
  const queue = parts.map((p) => new Uint8Array(p));
  return {
    read(p: Uint8Array): Promise<number | null> {
      const next = queue.shift();
      if (!next) return Promise.resolve(null);
      const n = Math.min(p.length, next.length);
      p.set(next.subarray(0, n));
      if (n < next.length) queue.unshift(next.subarray(n));
      return Promise.resolve(n);
    },
  };
}

Deno.test("encodeFrame writes ttrpc's 10-byte big-endian header", () => {
  const f = encodeFrame(0x01020304, 2, new Uint8Array([0xaa, 0xbb, 0xcc]));
  assert.deepEqual(
    [...f],
    [0, 0, 0, 3, 1, 2, 3, 4, 2, 0, 0xaa, 0xbb, 0xcc],
  );
});

Deno.test("encodeFrame refuses payloads over 4 MiB", () => {
  assert.throws(
    () => encodeFrame(1, 1, new Uint8Array(MAX_MESSAGE_LENGTH + 1)),
    /exceeds maximum message size of 4194304/,
  );
  assert.equal(
    encodeFrame(1, 1, new Uint8Array(MAX_MESSAGE_LENGTH)).length,
    MAX_MESSAGE_LENGTH + 10,
  );
});

Deno.test("FrameReader reassembles frames split across reads and several frames in one read", async () => {
  const a = [...encodeFrame(1, 1, new Uint8Array([1, 2, 3]))];
  const b = [...encodeFrame(3, 2, new Uint8Array([]))];
  const c = [...encodeFrame(5, 1, new Uint8Array([9]))];
  const r = new FrameReader(chunks(a.slice(0, 4), a.slice(4, 11), [...a.slice(11), ...b, ...c]));
  const f1 = await r.next();
  assert.deepEqual(f1 && { ...f1, payload: [...f1.payload!] }, {
    streamId: 1,
    type: 1,
    flags: 0,
    length: 3,
    payload: [1, 2, 3],
  });
  const f2 = await r.next();
  assert.equal(f2?.streamId, 3);
  assert.equal(f2?.type, 2);
  assert.equal(f2?.payload?.length, 0);
  const f3 = await r.next();
  assert.deepEqual([...f3!.payload!], [9]);
  assert.equal(await r.next(), null);
});

Deno.test("FrameReader skips an oversized payload and keeps reading", async () => {
  const big = MAX_MESSAGE_LENGTH + 5;
  const header = [
    big >>> 24,
    (big >>> 16) & 0xff,
    (big >>> 8) & 0xff,
    big & 0xff,
    0,
    0,
    0,
    7,
    1,
    0,
  ];
  const body = new Array(big).fill(0x55);
  const next = [...encodeFrame(9, 1, new Uint8Array([4]))];
  const r = new FrameReader(chunks(header, body.slice(0, 1000), body.slice(1000), next));
  const f = await r.next();
  assert.equal(f?.payload, null);
  assert.equal(f?.length, big);
  assert.equal(f?.streamId, 7);
  const g = await r.next();
  assert.equal(g?.streamId, 9);
  assert.deepEqual([...g!.payload!], [4]);
});

Deno.test("FrameReader reports a stream cut inside a frame", async () => {
  const a = [...encodeFrame(1, 1, new Uint8Array([1, 2, 3]))];
  await assert.rejects(new FrameReader(chunks(a.slice(0, 12))).next(), /inside a message/);
  await assert.rejects(new FrameReader(chunks(a.slice(0, 5))).next(), /inside a message header/);
});

Deno.test("FrameReader handles a large frame after small ones", async () => {
  const payload = new Uint8Array(300_000).map((_, i) => i & 0xff);
  const all = [...encodeFrame(1, 2, new Uint8Array([7])), ...encodeFrame(3, 2, payload)];
  const parts: number[][] = [];
  for (let i = 0; i < all.length; i += 7000) parts.push(all.slice(i, i + 7000));
  const r = new FrameReader(chunks(...parts));
  assert.deepEqual([...(await r.next())!.payload!], [7]);
  const f = await r.next();
  assert.deepEqual(f!.payload, payload);
  assert.equal(await r.next(), null);
});

Deno.test("FrameReader waits with a small buffer, before and after a large frame", async () => {
  // What an idle connection holds is the buffer of its pending read.
  const big = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff);
  const all = [
    ...encodeFrame(1, 2, new Uint8Array([1])),
    ...encodeFrame(3, 2, big),
    ...encodeFrame(5, 2, new Uint8Array([5, 5])),
  ];
  // The large frame's tail and the next frame arrive in one read.
  const source = chunks(all.slice(0, 30_000), all.slice(30_000));
  const sizes: number[] = [];
  const r = new FrameReader({
    read(p) {
      sizes.push(p.length);
      return source.read(p);
    },
  });
  assert.deepEqual([...(await r.next())!.payload!], [1]);
  assert.deepEqual((await r.next())!.payload, big);
  assert.deepEqual([...(await r.next())!.payload!], [5, 5]);
  assert.equal(await r.next(), null);
  assert.ok(sizes[0]! <= 4096, `first read offered ${sizes[0]} bytes`);
  assert.ok(sizes.at(-1)! <= 4096, `the read at the end offered ${sizes.at(-1)} bytes`);
  // The large payload was read into its own buffer: one read for what the first chunk left.
  assert.ok(sizes.some((n) => n > 100_000), `reads offered ${sizes.join(", ")}`);
});

Deno.test("FrameWriter never interleaves frames and finishes short writes", async () => {
  const written: number[] = [];
  // A writer that takes at most 3 bytes per call and yields between calls.
  const w = new FrameWriter({
    async write(p: Uint8Array) {
      await new Promise((r) => setTimeout(r, 0));
      const n = Math.min(3, p.length);
      written.push(...p.subarray(0, n));
      return n;
    },
  });
  await Promise.all([
    w.send(1, 1, new Uint8Array([1, 1, 1, 1, 1])),
    w.send(3, 1, new Uint8Array([3, 3, 3, 3])),
  ]);
  assert.deepEqual(written, [
    ...encodeFrame(1, 1, new Uint8Array([1, 1, 1, 1, 1])),
    ...encodeFrame(3, 1, new Uint8Array([3, 3, 3, 3])),
  ]);
});

Deno.test("FrameWriter fails later sends after a write error", async () => {
  let calls = 0;
  const w = new FrameWriter({
    write() {
      calls++;
      return Promise.reject(new Deno.errors.BrokenPipe("broken pipe"));
    },
  });
  await assert.rejects(w.send(1, 1, new Uint8Array([1])), /broken pipe/);
  await assert.rejects(w.send(3, 1, new Uint8Array([1])), /broken pipe/);
  assert.equal(calls, 1);
});
