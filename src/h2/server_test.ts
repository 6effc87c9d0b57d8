/**
 * The HTTP/2 server against hand-made frames: what real clients rarely do
 * (CONTINUATION, tiny windows, protocol violations) and must still be right.
 */
import assert from "node:assert/strict";
import { H2Connection, type ServerStream } from "./server.ts";
import { HpackDecoder, HpackEncoder } from "./hpack.ts";
import {
  ErrorCode,
  Flag,
  frame,
  FRAME_HEADER_LENGTH,
  FrameType,
  PREFACE,
  readFrameHeader,
  Setting,
  settingsFrame,
  wordsFrame,
} from "./frame.ts";

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
}

/** A raw client on one end of a socket pair, the server on the other. */
async function pair(onStream: (s: ServerStream) => void) {
  const dir = await Deno.makeTempDir({ prefix: "berth-h2-" });
  const path = `${dir}/s.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const accepted = listener.accept();
  const client = await Deno.connect({ transport: "unix", path });
  const server = new H2Connection(await accepted, { onStream });
  const served = server.serve();
  let buf = new Uint8Array(0);
  const frames: Frame[] = [];
  const reading = (async () => {
    const chunk = new Uint8Array(64 << 10);
    for (;;) {
      const n = await client.read(chunk).catch(() => null);
      if (n === null) return;
      const next = new Uint8Array(buf.length + n);
      next.set(buf);
      next.set(chunk.subarray(0, n), buf.length);
      buf = next;
      while (buf.length >= FRAME_HEADER_LENGTH) {
        const h = readFrameHeader(buf, 0);
        if (buf.length < FRAME_HEADER_LENGTH + h.length) break;
        frames.push({
          ...h,
          payload: buf.slice(FRAME_HEADER_LENGTH, FRAME_HEADER_LENGTH + h.length),
        });
        buf = buf.slice(FRAME_HEADER_LENGTH + h.length);
      }
    }
  })();
  const send = async (...parts: Uint8Array[]) => {
    for (const p of parts) await client.write(p);
  };
  /** Waits for a frame matching `pred` (frames are kept in order). */
  const next = async (pred: (f: Frame) => boolean, ms = 2000): Promise<Frame> => {
    const end = Date.now() + ms;
    for (;;) {
      const i = frames.findIndex(pred);
      if (i >= 0) return frames.splice(i, 1)[0]!;
      if (Date.now() > end) throw new Error(`no such frame; have ${JSON.stringify(frames)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  await send(PREFACE, settingsFrame([]));
  await next((f) => f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK));
  return {
    send,
    next,
    served,
    async close() {
      try {
        client.close();
      } catch { /* closed by the server */ }
      await served;
      await reading;
      listener.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A request header block; without table entries, so any connection can decode it. */
const request = (path = "/x") => {
  const enc = new HpackEncoder();
  enc.setMaxTableSize(0);
  const block = enc.encode([[":method", "POST"], [":scheme", "http"], [":path", path], [
    "te",
    "trailers",
  ]]);
  return block;
};

Deno.test("a header block split over HEADERS and CONTINUATION; PING is answered", async () => {
  const seen: string[] = [];
  const c = await pair((s) => {
    seen.push(s.header(":path")!);
    s.respond([[":status", "200"]], true);
  });
  try {
    const block = request("/split/path");
    await c.send(
      frame(FrameType.HEADERS, Flag.END_STREAM, 1, block.subarray(0, 3)),
      frame(FrameType.CONTINUATION, 0, 1, block.subarray(3, 6)),
      frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(6)),
    );
    const h = await c.next((f) => f.type === FrameType.HEADERS && f.streamId === 1);
    assert.equal(h.flags & Flag.END_STREAM, Flag.END_STREAM);
    assert.deepEqual(new HpackDecoder().decode(h.payload), [[":status", "200"]]);
    assert.deepEqual(seen, ["/split/path"]);
    await c.send(frame(FrameType.PING, 0, 0, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])));
    const pong = await c.next((f) => f.type === FrameType.PING);
    assert.equal(pong.flags, Flag.ACK);
    assert.deepEqual([...pong.payload], [1, 2, 3, 4, 5, 6, 7, 8]);
    // Unknown frame types are ignored.
    await c.send(frame(0xfa, 0, 0, new Uint8Array(3)));
    await c.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, request("/y")));
    await c.next((f) => f.type === FrameType.HEADERS && f.streamId === 3);
  } finally {
    await c.close();
  }
});

Deno.test("response DATA waits for the client's flow-control window", async () => {
  const c = await pair((s) => {
    s.respond([[":status", "200"]]);
    s.write(new TextEncoder().encode("0123456789abcdefghij")).catch(() => {});
    s.end([["grpc-status", "0"]]);
  });
  try {
    await c.send(settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 8]]));
    await c.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, request()));
    const d1 = await c.next((f) => f.type === FrameType.DATA);
    assert.equal(new TextDecoder().decode(d1.payload), "01234567");
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(c.next((f) => f.type === FrameType.DATA, 50)); // window spent
    await c.send(wordsFrame(FrameType.WINDOW_UPDATE, 0, 1, 100));
    const d2 = await c.next((f) => f.type === FrameType.DATA);
    assert.equal(new TextDecoder().decode(d2.payload), "89abcdefghij");
    // The trailers come after the last DATA, never before.
    const t = await c.next((f) =>
      f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0
    );
    assert.equal(t.streamId, 1);
  } finally {
    await c.close();
  }
});

Deno.test("DATA past the stream window resets the stream; the connection goes on", async () => {
  const c = await pair((s) => {
    if (s.header(":path") === "/ok") s.respond([[":status", "200"]], true);
    else s.read().catch(() => {});
  });
  try {
    await c.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, request("/upload")));
    // Our advertised stream window is 1 MiB: send 1 MiB + 16 KiB without reading.
    const chunk = new Uint8Array(16 << 10);
    for (let i = 0; i < 65; i++) await c.send(frame(FrameType.DATA, 0, 1, chunk));
    const rst = await c.next((f) => f.type === FrameType.RST_STREAM && f.streamId === 1);
    assert.equal(new DataView(rst.payload.buffer).getUint32(0), ErrorCode.FLOW_CONTROL_ERROR);
    await c.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, request("/ok")));
    await c.next((f) => f.type === FrameType.HEADERS && f.streamId === 3);
  } finally {
    await c.close();
  }
});

for (
  const [what, bytes, code] of [
    [
      "a header block with an index past the table",
      frame(FrameType.HEADERS, Flag.END_HEADERS, 1, new Uint8Array([0xff, 0x7f])),
      ErrorCode.COMPRESSION_ERROR,
    ],
    [
      "a frame larger than SETTINGS_MAX_FRAME_SIZE",
      frame(FrameType.DATA, 0, 1, new Uint8Array(20_000)),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    [
      "HEADERS on an even stream id",
      frame(FrameType.HEADERS, Flag.END_HEADERS, 2, request()),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "a CONTINUATION with no HEADERS before it",
      frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, request()),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "a window overflow on the connection",
      wordsFrame(FrameType.WINDOW_UPDATE, 0, 0, 2 ** 31 - 1),
      ErrorCode.FLOW_CONTROL_ERROR,
    ],
  ] as const
) {
  Deno.test(`${what} ends the connection with GOAWAY`, async () => {
    const c = await pair(() => {});
    try {
      await c.send(bytes);
      const g = await c.next((f) => f.type === FrameType.GOAWAY);
      assert.equal(new DataView(g.payload.buffer).getUint32(4), code);
      await c.served; // the server closed its end
    } finally {
      await c.close();
    }
  });
}
