/**
 * The server side of an HTTP/2 connection (RFC 9113), as much of it as a
 * gRPC server needs: streams opened by the client, header blocks (HPACK),
 * DATA in both directions with flow control, SETTINGS, PING, RST_STREAM and
 * GOAWAY. No push, no priorities (PRIORITY frames are read and ignored), no
 * TLS: the daemon serves it on a unix socket with prior knowledge, as
 * containerd does.
 *
 * Writes are coalesced: every frame queued in one turn of the event loop goes
 * out in one write, so a unary response (HEADERS, DATA, trailers) is a single
 * syscall and the client gets it whole.
 */
import { type HeaderField, HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";
import {
  ConnectionError,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  frame,
  FRAME_HEADER_LENGTH,
  type FrameHeader,
  FrameType,
  goawayFrame,
  headerFrames,
  MAX_WINDOW,
  PREFACE,
  readFrameHeader,
  Setting,
  settingsFrame,
  StreamError,
  wordsFrame,
} from "./frame.ts";

export type { HeaderField } from "./hpack.ts";

/** What a server advertises and enforces per connection. */
export interface H2Options {
  /** Called once per request, when its header block is complete. */
  onStream(stream: ServerStream): void;
  /** Concurrent streams a client may open (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams?: number;
  /** Bytes a client may send on one stream before we read them. */
  streamWindow?: number;
  /** Bytes a client may send on the whole connection before we read them. */
  connectionWindow?: number;
  /** Decoded size of one request's headers (SETTINGS_MAX_HEADER_LIST_SIZE). */
  maxHeaderListSize?: number;
  /** Told about connections that end on a protocol error (for the log). */
  onError?(err: Error): void;
}

/** Queued output beyond which a streaming writer waits. */
const HIGH_WATER = 1 << 20;
/**
 * Queued output beyond which the client is taken to have stopped reading
 * (unary answers do not wait for the queue): the connection is closed rather
 * than the daemon's memory growing without bound.
 */
const MAX_QUEUED = 64 << 20;
/** Largest header block (all fragments) we buffer for one request. */
const MAX_HEADER_BLOCK = 256 << 10;
const READ_BUFFER = 32 << 10;

interface PendingWrite {
  data: Uint8Array;
  off: number;
  resolve(): void;
  reject(err: Error): void;
}

/** One request stream: its headers, its body as it comes, and the response. */
export class ServerStream {
  readonly id: number;
  readonly headers: readonly HeaderField[];
  #conn: H2Connection;
  #abort = new AbortController();
  // Receiving.
  #chunks: Uint8Array[] = [];
  #remoteEnded = false;
  #waiter: { resolve(): void } | undefined;
  /** Bytes the client may still send on this stream. */
  recvWindow: number;
  #consumed = 0;
  // Sending.
  /** Bytes we may still send on this stream. */
  sendWindow: number;
  pending: PendingWrite[] = [];
  pendingTrailers: HeaderField[] | undefined;
  #headersSent = false;
  #localEnded = false;
  #reason: Error | undefined;

  constructor(conn: H2Connection, id: number, headers: HeaderField[], windows: {
    recv: number;
    send: number;
  }) {
    this.#conn = conn;
    this.id = id;
    this.headers = headers;
    this.recvWindow = windows.recv;
    this.sendWindow = windows.send;
  }

  /** Aborted when the client resets the stream or the connection ends. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** The first value of a header (names are lower case). */
  header(name: string): string | undefined {
    for (const [n, v] of this.headers) if (n === name) return v;
    return undefined;
  }

  /** True once our side has ended (trailers sent) or the stream was reset. */
  get localEnded(): boolean {
    return this.#localEnded;
  }

  get remoteEnded(): boolean {
    return this.#remoteEnded;
  }

  /**
   * The next piece of the request body; null once the client ended it.
   * Rejects if the stream was reset or the connection ended first.
   */
  async read(): Promise<Uint8Array | null> {
    for (;;) {
      const c = this.#chunks.shift();
      if (c) {
        this.#consumed += c.length;
        // Give the client room again once half the window was read.
        if (this.#consumed >= (this.#conn.streamWindow >>> 1) && !this.#remoteEnded) {
          this.#conn.windowUpdate(this.id, this.#consumed);
          this.recvWindow += this.#consumed;
          this.#consumed = 0;
        }
        return c;
      }
      if (this.#reason) throw this.#reason;
      if (this.#remoteEnded) return null;
      await new Promise<void>((resolve) => (this.#waiter = { resolve }));
    }
  }

  /** Sends the response headers (once). */
  respond(headers: HeaderField[], endStream = false): void {
    if (this.#localEnded || this.#headersSent) return;
    this.#headersSent = true;
    this.#conn.sendHeaders(this, headers, endStream);
    if (endStream) this.#endLocal();
  }

  get headersSent(): boolean {
    return this.#headersSent;
  }

  /**
   * Sends body bytes, as flow control allows; resolves once they are framed
   * and the connection's output is not backed up.
   */
  write(data: Uint8Array): Promise<void> {
    if (this.#localEnded) return Promise.reject(this.#reason ?? new Error("stream ended"));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.pending.push({ data, off: 0, resolve, reject });
    this.#conn.pumpData(this);
    return promise;
  }

  /** Ends the response with trailers, after any body still waiting for flow control. */
  end(trailers: HeaderField[]): void {
    if (this.#localEnded || this.pendingTrailers) return;
    this.pendingTrailers = trailers;
    this.#conn.pumpData(this);
  }

  /** Resets the stream (RST_STREAM): the client sees it cancelled. */
  reset(code: number = ErrorCode.CANCEL): void {
    if (this.#localEnded && this.#remoteEnded) return;
    this.#conn.sendReset(this.id, code);
    this.closeWith(new Error(`stream reset (code ${code})`));
  }

  // --- called by the connection ---

  /** Body bytes arrived. */
  pushData(chunk: Uint8Array): void {
    if (chunk.length) this.#chunks.push(chunk);
    this.#wake();
  }

  /** The client ended its side. */
  endRemote(): void {
    this.#remoteEnded = true;
    this.#wake();
    this.#maybeDone();
  }

  /** The trailers went out: our side is done. */
  trailersSent(): void {
    this.pendingTrailers = undefined;
    this.#endLocal();
  }

  #endLocal(): void {
    this.#localEnded = true;
    if (!this.#remoteEnded) {
      // The response is complete; the client may stop sending (RFC 9113 8.1).
      this.#conn.sendReset(this.id, ErrorCode.NO_ERROR);
      this.#remoteEnded = true;
      this.#wake();
    }
    this.#maybeDone();
  }

  /** Reset by the client, or the connection ended: everything pending fails. */
  closeWith(reason: Error): void {
    if (!this.#reason) this.#reason = reason;
    this.#localEnded = true;
    this.#remoteEnded = true;
    for (const p of this.pending.splice(0)) p.reject(reason);
    this.pendingTrailers = undefined;
    this.#abort.abort(reason);
    this.#wake();
    this.#conn.forget(this);
  }

  #maybeDone(): void {
    if (this.#localEnded && this.#remoteEnded) this.#conn.forget(this);
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.resolve();
  }
}

/** One client connection. */
export class H2Connection {
  #conn: Deno.Conn;
  #o: H2Options;
  readonly streamWindow: number;
  #connWindow: number;
  #maxStreams: number;
  #decoder: HpackDecoder;
  #maxHeaderList: number;
  #encoder = new HpackEncoder();
  #streams = new Map<number, ServerStream>();
  #lastStreamId = 0;
  // Peer settings.
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  #sendWindow = DEFAULT_WINDOW;
  #recvConsumed = 0;
  // A header block being collected across CONTINUATION frames.
  #partial: { streamId: number; endStream: boolean; parts: Uint8Array[]; size: number } | undefined;
  // Output.
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #flushScheduled = false;
  #flushing = false;
  #drainWaiters: Array<() => void> = [];
  #idleWaiters: Array<() => void> = [];
  #lazyTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #goingAway = false;
  #done = Promise.withResolvers<void>();

  constructor(conn: Deno.Conn, opts: H2Options) {
    this.#conn = conn;
    this.#o = opts;
    this.streamWindow = opts.streamWindow ?? 1 << 20;
    this.#connWindow = opts.connectionWindow ?? 16 << 20;
    this.#maxStreams = opts.maxConcurrentStreams ?? 1000;
    this.#maxHeaderList = opts.maxHeaderListSize ?? 64 << 10;
    this.#decoder = new HpackDecoder(4096, { maxHeaderListSize: this.#maxHeaderList });
  }

  /** Resolves when the connection has ended. */
  get done(): Promise<void> {
    return this.#done.promise;
  }

  /** Streams open now. */
  get streams(): number {
    return this.#streams.size;
  }

  /** Reads and answers frames until the connection ends. */
  async serve(): Promise<void> {
    this.#queue(settingsFrame([
      [Setting.MAX_CONCURRENT_STREAMS, this.#maxStreams],
      [Setting.INITIAL_WINDOW_SIZE, this.streamWindow],
      [Setting.MAX_HEADER_LIST_SIZE, this.#maxHeaderList],
      [Setting.ENABLE_PUSH, 0],
    ]));
    if (this.#connWindow > DEFAULT_WINDOW) {
      this.#queue(wordsFrame(FrameType.WINDOW_UPDATE, 0, 0, this.#connWindow - DEFAULT_WINDOW));
    }
    try {
      await this.#readLoop();
    } catch (err) {
      if (err instanceof ConnectionError) {
        this.#o.onError?.(err);
        this.#queue(goawayFrame(this.#lastStreamId, err.code, err.message));
        await this.#written();
      } else if (
        !this.#closed && !(err instanceof Deno.errors.BadResource) &&
        !(err instanceof Deno.errors.ConnectionReset) && !(err instanceof Deno.errors.BrokenPipe)
      ) {
        this.#o.onError?.(err as Error);
      }
    } finally {
      this.close();
    }
  }

  /**
   * Graceful end: tells the client to open no more streams (GOAWAY) and
   * closes once the open ones are done.
   */
  goAway(): void {
    if (this.#closed || this.#goingAway) return;
    this.#goingAway = true;
    this.#queue(goawayFrame(this.#lastStreamId, ErrorCode.NO_ERROR));
    if (this.#streams.size === 0) this.#closeAfterFlush();
  }

  /** Ends the connection now; open streams fail. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const reason = new Error("connection closed");
    for (const s of [...this.#streams.values()]) s.closeWith(reason);
    this.#streams.clear();
    for (const w of this.#drainWaiters.splice(0)) w();
    for (const w of this.#idleWaiters.splice(0)) w();
    clearTimeout(this.#lazyTimer);
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    this.#done.resolve();
  }

  // --- reading ---

  async #readLoop(): Promise<void> {
    let buf = new Uint8Array(READ_BUFFER);
    let start = 0, end = 0;
    let preface = true;
    for (;;) {
      // Handle every complete frame in the buffer before reading again.
      for (;;) {
        const avail = end - start;
        if (preface) {
          const n = Math.min(avail, PREFACE.length);
          for (let i = 0; i < n; i++) {
            if (buf[start + i] !== PREFACE[i]) {
              throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 client preface");
            }
          }
          if (avail < PREFACE.length) break;
          start += PREFACE.length;
          preface = false;
          continue;
        }
        if (avail < FRAME_HEADER_LENGTH) break;
        const h = readFrameHeader(buf, start);
        if (h.length > DEFAULT_MAX_FRAME_SIZE) {
          throw new ConnectionError(
            ErrorCode.FRAME_SIZE_ERROR,
            `frame of ${h.length} bytes exceeds SETTINGS_MAX_FRAME_SIZE`,
          );
        }
        if (avail < FRAME_HEADER_LENGTH + h.length) break;
        const payload = buf.subarray(
          start + FRAME_HEADER_LENGTH,
          start + FRAME_HEADER_LENGTH + h.length,
        );
        start += FRAME_HEADER_LENGTH + h.length;
        try {
          this.#handle(h, payload);
        } catch (err) {
          if (!(err instanceof StreamError)) throw err;
          this.sendReset(err.streamId, err.code);
          this.#streams.get(err.streamId)?.closeWith(err);
        }
        if (this.#closed) return;
      }
      if (start === end) start = end = 0;
      else if (start > 0 && buf.length - end < FRAME_HEADER_LENGTH + DEFAULT_MAX_FRAME_SIZE) {
        buf.copyWithin(0, start, end);
        end -= start;
        start = 0;
      }
      if (end === buf.length) {
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf.subarray(0, end));
        buf = bigger;
      }
      const n = await this.#conn.read(buf.subarray(end));
      if (n === null) return;
      end += n;
    }
  }

  #handle(h: FrameHeader, p: Uint8Array): void {
    if (this.#partial && h.type !== FrameType.CONTINUATION) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "expected a CONTINUATION frame");
    }
    switch (h.type) {
      case FrameType.DATA:
        return this.#onData(h, p);
      case FrameType.HEADERS:
        return this.#onHeaders(h, p);
      case FrameType.CONTINUATION:
        return this.#onContinuation(h, p);
      case FrameType.PRIORITY:
        if (h.streamId === 0 || p.length !== 5) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "malformed PRIORITY frame");
        }
        return;
      case FrameType.RST_STREAM: {
        if (h.streamId === 0 || p.length !== 4) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "malformed RST_STREAM frame");
        }
        if (h.streamId > this.#lastStreamId) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
        }
        const code = new DataView(p.buffer, p.byteOffset).getUint32(0);
        this.#streams.get(h.streamId)?.closeWith(
          new Error(code === ErrorCode.CANCEL ? "call cancelled" : `stream reset (code ${code})`),
        );
        return;
      }
      case FrameType.SETTINGS:
        return this.#onSettings(h, p);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "a client may not push");
      case FrameType.PING:
        if (h.streamId !== 0 || p.length !== 8) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "malformed PING frame");
        }
        if (!(h.flags & Flag.ACK)) this.#queueLazy(frame(FrameType.PING, Flag.ACK, 0, p));
        return;
      case FrameType.GOAWAY:
        if (h.streamId !== 0 || p.length < 8) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "malformed GOAWAY frame");
        }
        // The client opens no more streams; it closes the connection when it is done.
        return;
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(h, p);
      default:
        return; // unknown frame types are ignored (RFC 9113 4.1)
    }
  }

  /** The payload without its padding (DATA and HEADERS with PADDED). */
  #unpad(h: FrameHeader, p: Uint8Array): Uint8Array {
    if (!(h.flags & Flag.PADDED)) return p;
    if (p.length < 1 || p[0]! >= p.length) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding exceeds the frame");
    }
    return p.subarray(1, p.length - p[0]!);
  }

  #onData(h: FrameHeader, p: Uint8Array): void {
    if (h.streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    // Every DATA byte (padding included) counts against the connection window.
    this.#recvConsumed += h.length;
    if (this.#recvConsumed >= this.#connWindow >>> 1) {
      this.#queue(wordsFrame(FrameType.WINDOW_UPDATE, 0, 0, this.#recvConsumed));
      this.#recvConsumed = 0;
    }
    const s = this.#streams.get(h.streamId);
    if (!s) {
      if (h.streamId > this.#lastStreamId) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      }
      return; // a stream we already closed: the client had not seen it yet
    }
    if (s.remoteEnded) {
      throw new StreamError(h.streamId, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
    }
    s.recvWindow -= h.length;
    if (s.recvWindow < 0) {
      throw new StreamError(h.streamId, ErrorCode.FLOW_CONTROL_ERROR, "stream window exceeded");
    }
    const data = this.#unpad(h, p);
    s.pushData(data.slice());
    if (h.flags & Flag.END_STREAM) s.endRemote();
  }

  #onHeaders(h: FrameHeader, p: Uint8Array): void {
    if (h.streamId === 0 || (h.streamId & 1) === 0) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on an invalid stream id");
    }
    let block = this.#unpad(h, p);
    if (h.flags & Flag.PRIORITY) {
      if (block.length < 5) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "short HEADERS");
      block = block.subarray(5);
    }
    const endStream = (h.flags & Flag.END_STREAM) !== 0;
    if (h.flags & Flag.END_HEADERS) return this.#onHeaderBlock(h.streamId, block, endStream);
    this.#partial = { streamId: h.streamId, endStream, parts: [block.slice()], size: block.length };
  }

  #onContinuation(h: FrameHeader, p: Uint8Array): void {
    const part = this.#partial;
    if (!part || part.streamId !== h.streamId) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION frame");
    }
    part.size += p.length;
    if (part.size > MAX_HEADER_BLOCK) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    }
    part.parts.push(p.slice());
    if (!(h.flags & Flag.END_HEADERS)) return;
    this.#partial = undefined;
    const block = new Uint8Array(part.size);
    let off = 0;
    for (const x of part.parts) {
      block.set(x, off);
      off += x.length;
    }
    this.#onHeaderBlock(part.streamId, block, part.endStream);
  }

  #onHeaderBlock(id: number, block: Uint8Array, endStream: boolean): void {
    let headers: HeaderField[];
    try {
      // Always decoded, even for a stream we refuse: it updates the shared table.
      headers = this.#decoder.decode(block);
    } catch (err) {
      if (err instanceof HpackError) {
        throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, `header block: ${err.message}`);
      }
      throw err;
    }
    const existing = this.#streams.get(id);
    if (existing) {
      // Trailers from the client: they must end the stream.
      if (!endStream) {
        throw new StreamError(id, ErrorCode.PROTOCOL_ERROR, "HEADERS without END_STREAM");
      }
      existing.endRemote();
      return;
    }
    if (id <= this.#lastStreamId) {
      throw new ConnectionError(ErrorCode.STREAM_CLOSED, "HEADERS on a closed stream");
    }
    this.#lastStreamId = id;
    if (this.#goingAway) return this.sendReset(id, ErrorCode.REFUSED_STREAM);
    if (this.#streams.size >= this.#maxStreams) {
      return this.sendReset(id, ErrorCode.REFUSED_STREAM);
    }
    const bad = invalidRequestHeaders(headers);
    if (bad) throw new StreamError(id, ErrorCode.PROTOCOL_ERROR, bad);
    const s = new ServerStream(this, id, headers, {
      recv: this.streamWindow,
      send: this.#peerInitialWindow,
    });
    this.#streams.set(id, s);
    if (endStream) s.endRemote();
    this.#o.onStream(s);
  }

  #onSettings(h: FrameHeader, p: Uint8Array): void {
    if (h.streamId !== 0) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    }
    if (h.flags & Flag.ACK) {
      if (p.length) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with data");
      return;
    }
    if (p.length % 6) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "malformed SETTINGS");
    const v = new DataView(p.buffer, p.byteOffset, p.length);
    for (let i = 0; i < p.length; i += 6) {
      const id = v.getUint16(i), value = v.getUint32(i + 2);
      switch (id) {
        case Setting.HEADER_TABLE_SIZE:
          this.#encoder.setMaxTableSize(value);
          break;
        case Setting.ENABLE_PUSH:
          if (value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad ENABLE_PUSH");
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) {
            throw new ConnectionError(
              ErrorCode.FLOW_CONTROL_ERROR,
              "INITIAL_WINDOW_SIZE too large",
            );
          }
          const delta = value - this.#peerInitialWindow;
          this.#peerInitialWindow = value;
          for (const s of this.#streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) {
              throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow");
            }
          }
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > 16_777_215) {
            throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad MAX_FRAME_SIZE");
          }
          this.#peerMaxFrame = value;
          break;
        default:
          break; // MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE: we never open or push streams
      }
    }
    this.#queueLazy(frame(FrameType.SETTINGS, Flag.ACK, 0));
    for (const s of this.#streams.values()) if (s.pending.length) this.pumpData(s);
  }

  #onWindowUpdate(h: FrameHeader, p: Uint8Array): void {
    if (p.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE");
    const inc = new DataView(p.buffer, p.byteOffset).getUint32(0) & MAX_WINDOW;
    if (h.streamId === 0) {
      if (inc === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.#sendWindow += inc;
      if (this.#sendWindow > MAX_WINDOW) {
        throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow");
      }
      for (const s of this.#streams.values()) if (s.pending.length) this.pumpData(s);
      return;
    }
    const s = this.#streams.get(h.streamId);
    if (!s) {
      if (h.streamId > this.#lastStreamId) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
      }
      return;
    }
    if (inc === 0) {
      throw new StreamError(h.streamId, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
    }
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      throw new StreamError(h.streamId, ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow");
    }
    this.pumpData(s);
  }

  // --- writing (called by streams) ---

  sendHeaders(s: ServerStream, headers: HeaderField[], endStream: boolean): void {
    const block = this.#encoder.encode(headers);
    for (const f of headerFrames(s.id, block, endStream, this.#peerMaxFrame)) this.#queue(f);
  }

  sendReset(id: number, code: number): void {
    if (this.#closed) return;
    this.#queue(wordsFrame(FrameType.RST_STREAM, 0, id, code));
  }

  windowUpdate(id: number, inc: number): void {
    if (!this.#closed && inc > 0) this.#queue(wordsFrame(FrameType.WINDOW_UPDATE, 0, id, inc));
  }

  /** Frames what flow control lets `s` send now; then its trailers once nothing is left. */
  pumpData(s: ServerStream): void {
    if (this.#closed) return;
    while (s.pending.length) {
      const w = s.pending[0]!;
      const left = w.data.length - w.off;
      const n = Math.min(left, s.sendWindow, this.#sendWindow, this.#peerMaxFrame);
      if (n <= 0 && left > 0) return; // wait for WINDOW_UPDATE
      if (n > 0) {
        this.#queue(frame(FrameType.DATA, 0, s.id, w.data.subarray(w.off, w.off + n)));
        w.off += n;
        s.sendWindow -= n;
        this.#sendWindow -= n;
      }
      if (w.off === w.data.length) {
        s.pending.shift();
        if (this.#outBytes < HIGH_WATER) w.resolve();
        else this.#drainWaiters.push(w.resolve);
      }
    }
    const trailers = s.pendingTrailers;
    if (trailers && !s.localEnded) {
      this.sendHeaders(s, trailers, true);
      s.trailersSent();
    }
  }

  /** A stream is done on both sides (or reset): it no longer counts. */
  forget(s: ServerStream): void {
    if (this.#streams.get(s.id) === s) this.#streams.delete(s.id);
    if (this.#goingAway && this.#streams.size === 0) this.#closeAfterFlush();
  }

  #queue(bytes: Uint8Array): void {
    if (this.#closed) return;
    this.#out.push(bytes);
    this.#outBytes += bytes.length;
    if (this.#outBytes > MAX_QUEUED) {
      this.#o.onError?.(new Error(`the client reads nothing: ${this.#outBytes} bytes queued`));
      return this.close();
    }
    if (!this.#flushScheduled && !this.#flushing) {
      this.#flushScheduled = true;
      // After the current task: whatever else it queues goes in the same write.
      queueMicrotask(() => this.#flush());
    }
  }

  /**
   * Queues an acknowledgement nobody waits on (PING, SETTINGS). It goes out
   * with the next response, or within a millisecond: Go's client PINGs on
   * every response it reads, and answering each in a write of its own made
   * a second syscall and wake-up per call on both sides.
   */
  #queueLazy(bytes: Uint8Array): void {
    if (this.#closed) return;
    this.#out.push(bytes);
    this.#outBytes += bytes.length;
    if (this.#flushScheduled || this.#flushing || this.#lazyTimer !== undefined) return;
    this.#lazyTimer = setTimeout(() => {
      this.#lazyTimer = undefined;
      if (this.#out.length && !this.#flushScheduled && !this.#flushing) this.#flush();
    }, 1);
  }

  /**
   * Writes the queue until it is empty. The loop and the flag live in one
   * function so nothing can be queued between the last write and the flag
   * going down without being written.
   */
  async #flush(): Promise<void> {
    this.#flushScheduled = false;
    if (this.#flushing || this.#closed) return;
    clearTimeout(this.#lazyTimer);
    this.#lazyTimer = undefined;
    this.#flushing = true;
    try {
      while (this.#out.length) {
        const parts = this.#out;
        this.#out = [];
        this.#outBytes = 0;
        let buf: Uint8Array;
        if (parts.length === 1) buf = parts[0]!;
        else {
          let size = 0;
          for (const x of parts) size += x.length;
          buf = new Uint8Array(size);
          let off = 0;
          for (const x of parts) {
            buf.set(x, off);
            off += x.length;
          }
        }
        for (let off = 0; off < buf.length;) off += await this.#conn.write(buf.subarray(off));
        if (this.#outBytes < HIGH_WATER) { for (const w of this.#drainWaiters.splice(0)) w(); }
      }
    } catch {
      this.close(); // the client is gone
    } finally {
      this.#flushing = false;
      for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  /** Resolves once everything queued so far is written (or the connection closed). */
  async #written(): Promise<void> {
    while (!this.#closed && (this.#out.length || this.#flushing || this.#flushScheduled)) {
      await new Promise<void>((r) => this.#idleWaiters.push(r));
    }
  }

  #closeAfterFlush(): void {
    if (this.#closed) return;
    this.#written().then(() => this.close());
  }
}

/** Why a request's pseudo-headers are malformed (RFC 9113 8.3.1), or undefined. */
function invalidRequestHeaders(headers: HeaderField[]): string | undefined {
  let method = false, path = false, regular = false;
  for (const [name] of headers) {
    if (name.startsWith(":")) {
      if (regular) return `pseudo-header ${name} after a regular header`;
      if (name === ":method") method = true;
      else if (name === ":path") path = true;
      else if (name !== ":scheme" && name !== ":authority") {
        return `unknown pseudo-header ${name}`;
      }
    } else {
      regular = true;
      if (name === "connection") return "connection-specific header";
    }
  }
  if (!method || !path) return "request without :method or :path";
  return undefined;
}
