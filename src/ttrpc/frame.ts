/**
 * ttrpc's framing (github.com/containerd/ttrpc v1.2; v1.1, the version
 * containerd 1.6 speaks, is its unary subset): every message is a 10-byte
 * header followed by its payload.
 *
 * ```text
 * 0      4          8      9       10
 * | len  | streamID | type | flags | payload (len bytes) ...
 * ```
 * Integers are big-endian. `len` counts the payload only and is capped at
 * 4 MiB. Client-initiated streams use odd ids. Type 1 carries a Request,
 * type 2 a Response, type 3 (data) one message of a streaming call (1.2).
 *
 * Flags say where a streaming call stands: a Request with `remoteOpen` means
 * the client sends data frames after it, one with `remoteClosed` that it
 * sends none; a data frame with `remoteClosed` is the sender's last, and
 * `noData` marks a frame that carries no message (a bare close). A Request
 * with no flags is unary to a v1.1 peer; the server decides by the method.
 */

/** Size of the fixed frame header. */
export const HEADER_LENGTH = 10;
/** Largest payload either side accepts (ttrpc's messageLengthMax). */
export const MAX_MESSAGE_LENGTH = 4 << 20;

/** The metadata key containerd puts the namespace under on ttrpc calls. */
export const TTRPC_NAMESPACE_KEY = "containerd-namespace-ttrpc";
/** The gRPC namespace key, accepted too (some clients copy gRPC metadata as is). */
export const GRPC_NAMESPACE_KEY = "containerd-namespace";

/** Frame types. */
export const MessageType = { request: 1, response: 2, data: 3 } as const;

/** Frame flags (ttrpc 1.2). */
export const Flags = { remoteClosed: 0x1, remoteOpen: 0x2, noData: 0x4 } as const;

/** One decoded frame. */
export interface Frame {
  streamId: number;
  type: number;
  flags: number;
  /** The payload, or null when it was larger than MAX_MESSAGE_LENGTH and was skipped. */
  payload: Uint8Array | null;
  /** The payload length announced by the header. */
  length: number;
}

/** Encodes one frame (header and payload in a single buffer, written in one go). */
export function encodeFrame(
  streamId: number,
  type: number,
  payload: Uint8Array,
  flags = 0,
): Uint8Array<ArrayBuffer> {
  if (payload.length > MAX_MESSAGE_LENGTH) {
    throw new RangeError(
      `ttrpc message length ${payload.length} exceeds maximum message size of ${MAX_MESSAGE_LENGTH}`,
    );
  }
  const out = new Uint8Array(HEADER_LENGTH + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.length);
  view.setUint32(4, streamId);
  view.setUint8(8, type);
  view.setUint8(9, flags);
  out.set(payload, HEADER_LENGTH);
  return out;
}

/** Anything with Deno's `read` contract (a Deno.Conn, a Deno.FsFile). */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

/** Anything with Deno's `write` contract (may write fewer bytes than asked). */
export interface ByteWriter {
  write(p: Uint8Array): Promise<number>;
}

/**
 * The reader's own buffer: headers and small frames. A connection spends
 * nearly all its life waiting in a read into this buffer (a daemon holds one
 * per shim, a shim one per client), so it is kept small; a frame that does
 * not fit is read straight into a buffer of its own size instead.
 */
const BUFFER = 4 * 1024;
/** Bytes per read while skipping an oversized payload. */
const DISCARD_CHUNK = 64 * 1024;

/**
 * Reads frames off a byte stream. `next()` resolves null at a clean end of
 * stream (between frames) and throws when the stream ends inside a frame.
 */
export class FrameReader {
  #r: ByteReader;
  #buf = new Uint8Array(BUFFER);
  #start = 0;
  #end = 0;

  constructor(r: ByteReader) {
    this.#r = r;
  }

  /** Makes sure `n` (at most the buffer's size) bytes are buffered; false at end of stream. */
  async #fill(n: number): Promise<boolean> {
    while (this.#end - this.#start < n) {
      if (this.#buf.length - this.#start < n || this.#end === this.#buf.length) {
        // Move the unread bytes to the front.
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      const got = await this.#r.read(this.#buf.subarray(this.#end));
      if (got === null) return false;
      this.#end += got;
    }
    return true;
  }

  /**
   * A payload of `n` bytes that does not fit the buffer: what is buffered
   * goes first, the rest is read directly into the payload (never past it,
   * so the next frame stays unread).
   */
  async #readLarge(n: number): Promise<Uint8Array> {
    const payload = new Uint8Array(n);
    let have = this.#end - this.#start;
    payload.set(this.#buf.subarray(this.#start, this.#end));
    this.#start = this.#end = 0;
    while (have < n) {
      const got = await this.#r.read(payload.subarray(have));
      if (got === null) throw new Error("ttrpc: connection closed inside a message");
      have += got;
    }
    return payload;
  }

  /** Drops `n` payload bytes without keeping them (for oversized frames). */
  async #discard(n: number): Promise<void> {
    const take = Math.min(this.#end - this.#start, n);
    this.#start += take;
    n -= take;
    if (n === 0) return;
    this.#start = this.#end = 0;
    const sink = new Uint8Array(Math.min(n, DISCARD_CHUNK));
    while (n > 0) {
      const got = await this.#r.read(sink.subarray(0, Math.min(n, sink.length)));
      if (got === null) throw new Error("ttrpc: connection closed inside an oversized message");
      n -= got;
    }
  }

  /** The next frame, or null at end of stream. */
  async next(): Promise<Frame | null> {
    if (!(await this.#fill(HEADER_LENGTH))) {
      if (this.#end > this.#start) {
        throw new Error("ttrpc: connection closed inside a message header");
      }
      return null;
    }
    const view = new DataView(this.#buf.buffer, this.#buf.byteOffset + this.#start, HEADER_LENGTH);
    const length = view.getUint32(0);
    const streamId = view.getUint32(4);
    const type = view.getUint8(8);
    const flags = view.getUint8(9);
    this.#start += HEADER_LENGTH;
    if (length > MAX_MESSAGE_LENGTH) {
      await this.#discard(length);
      return { streamId, type, flags, payload: null, length };
    }
    if (length > this.#buf.length) {
      return { streamId, type, flags, payload: await this.#readLarge(length), length };
    }
    if (!(await this.#fill(length))) throw new Error("ttrpc: connection closed inside a message");
    // A copy: the buffer is reused for the next frames.
    const payload = this.#buf.slice(this.#start, this.#start + length);
    this.#start += length;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return { streamId, type, flags, payload, length };
  }
}

/**
 * Writes whole frames one after another: concurrent senders never interleave
 * their bytes, and a failed write fails every later one.
 */
export class FrameWriter {
  #w: ByteWriter;
  #tail: Promise<void> = Promise.resolve();
  #error: unknown;

  constructor(w: ByteWriter) {
    this.#w = w;
  }

  /** Queues one frame; resolves when all its bytes were written. */
  send(streamId: number, type: number, payload: Uint8Array, flags = 0): Promise<void> {
    const frame = encodeFrame(streamId, type, payload, flags);
    const p = this.#tail.then(async () => {
      if (this.#error !== undefined) throw this.#error;
      try {
        for (let off = 0; off < frame.length;) off += await this.#w.write(frame.subarray(off));
      } catch (err) {
        this.#error = err;
        throw err;
      }
    });
    this.#tail = p.catch(() => {});
    return p;
  }
}
