/**
 * A ttrpc client over a unix socket: typed unary and streaming calls (ttrpc
 * 1.2) on protobuf-es service descriptors, multiplexed on one connection
 * (odd, increasing stream ids, as containerd/ttrpc's client uses). The daemon
 * talks to shims with it, shims forward events with it, and the CLI talks to
 * the daemon with it.
 *
 * Errors are BerthErrors: the server's status maps back to its kind; a peer
 * that goes away fails every pending and later call as `unavailable`.
 *
 * The connection does not keep the process alive while no call is pending.
 *
 * ```ts
 * const c = await TtrpcClient.connect("unix:///run/containerd/s/abc", { namespace: "default" });
 * const { shimPid } = await c.call(Task, "connect", { id: "t1" });
 * for await (const e of c.serverStream(Events, "subscribe", {})) console.log(e.topic);
 * c.close();
 * ```
 */
import {
  create,
  type DescMessage,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { RequestSchema, ResponseSchema } from "../gen/ttrpc/ttrpc_pb.ts";
import { BerthError, unavailable } from "../core/errdefs.ts";
import { Flags, FrameReader, FrameWriter, MessageType, TTRPC_NAMESPACE_KEY } from "./frame.ts";
import { errorOf } from "./status.ts";
import { Inbox } from "./inbox.ts";

type MethodOf<S> = S extends { method: infer M } ? M : never;
type In<M> = M extends { input: infer I extends DescMessage } ? MessageInitShape<I> : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? MessageShape<O> : never;

/** Metadata to send: a key may carry several values. */
export type Metadata = Record<string, string | readonly string[]>;

/** Per-call options. */
export interface CallOptions {
  /** Extra metadata for this call (merged over the client's). */
  metadata?: Metadata;
  /** Deadline in milliseconds, sent to the server and enforced here. */
  timeout?: number;
  /** Cancels the call (the server's reply, if any, is then dropped). */
  signal?: AbortSignal;
}

/** Options of a {@link TtrpcClient}. */
export interface TtrpcClientOptions {
  /** Sent as `containerd-namespace-ttrpc` on every call. */
  namespace?: string;
  /** Sent on every call. */
  metadata?: Metadata;
}

/** A call waiting for frames on its stream id. */
interface Pending {
  method: string;
  /** A frame for this stream arrived (payload null: it was too large and skipped). */
  frame(type: number, flags: number, payload: Uint8Array | null, length: number): void;
  /** The connection is gone. */
  reject(err: Error): void;
}

/** Errors the client made itself because the connection failed (not a server's status). */
const transportErrors = new WeakSet<Error>();

/**
 * True when `err` says the connection to the server failed (could not
 * connect, or it closed), as opposed to an error status the server answered.
 */
export function isTransportError(err: unknown): boolean {
  return err instanceof Error && transportErrors.has(err);
}

function transport(err: BerthError): BerthError {
  transportErrors.add(err);
  return err;
}

/**
 * One streaming call. Messages from the server are read by iterating it;
 * a client-streaming or bidi call sends with `send` and ends its side with
 * `closeSend`. `cancel` drops the call here (ttrpc cannot tell the server;
 * the server's late frames are ignored).
 */
export class TtrpcStream<I, O> implements AsyncIterable<O> {
  /** `/service/method`. */
  readonly method: string;
  #inbox: Inbox<Uint8Array>;
  #decode: (b: Uint8Array) => O;
  #encode: (m: I) => Uint8Array;
  #send: (bytes: Uint8Array, flags: number) => Promise<void>;
  #cancel: (reason: unknown) => void;
  #canSend: boolean;
  #localClosed = false;

  /** @internal Made by {@link TtrpcClient.openStream}. */
  constructor(init: {
    method: string;
    inbox: Inbox<Uint8Array>;
    decode: (b: Uint8Array) => O;
    encode: (m: I) => Uint8Array;
    send: (bytes: Uint8Array, flags: number) => Promise<void>;
    cancel: (reason: unknown) => void;
    clientStreams: boolean;
  }) {
    this.method = init.method;
    this.#inbox = init.inbox;
    this.#decode = init.decode;
    this.#encode = init.encode;
    this.#send = init.send;
    this.#cancel = init.cancel;
    this.#canSend = init.clientStreams;
  }

  /** Sends one message (client-streaming and bidi calls only). */
  send(msg: I): Promise<void> {
    if (!this.#canSend) {
      return Promise.reject(new Error(`${this.method}: the server does not take a request stream`));
    }
    if (this.#localClosed) {
      return Promise.reject(new Error(`${this.method}: cannot send after closeSend`));
    }
    return this.#send(this.#encode(msg), 0);
  }

  /** Ends the client's side: the server's request iterator finishes. */
  closeSend(): Promise<void> {
    if (!this.#canSend || this.#localClosed) return Promise.resolve();
    this.#localClosed = true;
    return this.#send(new Uint8Array(), Flags.remoteClosed | Flags.noData);
  }

  /** The next message from the server, or undefined at the end of the stream. */
  async recv(): Promise<O | undefined> {
    const r = await this.#inbox.next();
    return r.done ? undefined : this.#decode(r.value);
  }

  /** Stops the call here; a pending or later `recv` fails as canceled. */
  cancel(reason?: unknown): void {
    this.#cancel(reason);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<O> {
    for (;;) {
      const r = await this.#inbox.next();
      if (r.done) return;
      yield this.#decode(r.value);
    }
  }
}

/** `unix:///a/b`, `unix://a/b` or a bare path: the socket path. */
export function socketPath(address: string): string {
  return address.startsWith("unix://") ? address.slice("unix://".length) : address;
}

/** A client on one ttrpc connection. */
export class TtrpcClient {
  /** The socket path connected to. */
  readonly path: string;
  #conn: Deno.Conn;
  #writer: FrameWriter;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #error: Error | undefined;
  #metadata: [string, string][];
  #done: Promise<void>;

  /** Connects to a ttrpc server at a socket path or `unix://` address. */
  static async connect(address: string, opts: TtrpcClientOptions = {}): Promise<TtrpcClient> {
    const path = socketPath(address);
    let conn: Deno.Conn;
    try {
      conn = await Deno.connect({ transport: "unix", path });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw transport(
        unavailable(`cannot connect to ttrpc server at ${path}: ${why}`, { cause: err }),
      );
    }
    return new TtrpcClient(conn, path, opts);
  }

  /** Wraps an established connection. */
  constructor(conn: Deno.Conn, path: string, opts: TtrpcClientOptions = {}) {
    this.#conn = conn;
    this.path = path;
    this.#writer = new FrameWriter(conn);
    this.#metadata = flatten(opts.metadata ?? {});
    if (opts.namespace) this.#metadata.push([TTRPC_NAMESPACE_KEY, opts.namespace]);
    this.#conn.unref();
    this.#done = this.#readLoop();
  }

  /** Resolves when the connection has ended (closed by either side). */
  get done(): Promise<void> {
    return this.#done;
  }

  /** True once the connection is unusable. */
  get closed(): boolean {
    return this.#error !== undefined;
  }

  /** A unary call of `service`'s method `method` (its local name, e.g. `connect`). */
  async call<S extends DescService, K extends keyof MethodOf<S> & string>(
    service: S,
    method: K,
    req: In<MethodOf<S>[K]>,
    opts: CallOptions = {},
  ): Promise<Out<MethodOf<S>[K]>> {
    const m = service.methods.find((x) => x.localName === method);
    if (!m) throw new Error(`Service ${service.typeName} has no method ${method}`);
    if (m.methodKind !== "unary") {
      throw new Error(`Cannot call ${service.typeName}/${m.name}: it is a streaming method`);
    }
    const payload = toBinary(m.input, create(m.input, req as MessageInitShape<DescMessage>));
    const reply = await this.callRaw(service.typeName, m.name, payload, opts);
    return fromBinary(m.output, reply) as Out<MethodOf<S>[K]>;
  }

  /** A unary call with an already encoded request; resolves to the encoded reply. */
  callRaw(
    service: string,
    method: string,
    payload: Uint8Array,
    opts: CallOptions = {},
  ): Promise<Uint8Array> {
    if (this.#error) return Promise.reject(this.#error);
    const name = `/${service}/${method}`;
    if (opts.signal?.aborted) return Promise.reject(canceled(name, opts.signal.reason));
    const id = this.#nextId;
    // Odd ids only: even ones are reserved for server-initiated streams.
    this.#nextId = (this.#nextId + 2) >>> 0;
    const metadata = opts.metadata
      ? [...this.#metadata, ...flatten(opts.metadata)]
      : this.#metadata;
    const req = create(RequestSchema, {
      service,
      method,
      payload,
      timeoutNano: opts.timeout ? BigInt(Math.ceil(opts.timeout * 1e6)) : 0n,
      metadata: metadata.map(([key, value]) => ({ key, value })),
    });
    return new Promise<Uint8Array>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => finish(canceled(name, opts.signal?.reason));
      const finish = (err: Error | undefined, reply?: Uint8Array) => {
        if (!this.#pending.delete(id)) return;
        if (timer !== undefined) clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        if (this.#pending.size === 0) this.#conn.unref();
        if (err) reject(err);
        else resolve(reply!);
      };
      this.#pending.set(id, {
        method: name,
        frame: (type, _flags, payload, length) => {
          // A unary call ends with its Response; anything else on its id is ignored.
          if (type !== MessageType.response) return;
          if (payload === null) {
            finish(
              new BerthError(
                "resource_exhausted",
                `${name}: reply of ${length} bytes exceeds the maximum message size`,
              ),
            );
            return;
          }
          settle(name, payload).then((p) => finish(undefined, p), (e) => finish(e));
        },
        reject: (e) => finish(e),
      });
      this.#conn.ref();
      if (opts.timeout) {
        timer = setTimeout(
          () =>
            finish(
              new BerthError(
                "deadline_exceeded",
                `${name}: no reply within ${opts.timeout} ms: context deadline exceeded`,
              ),
            ),
          opts.timeout,
        );
      }
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      this.#writer.send(id, MessageType.request, toBinary(RequestSchema, req)).catch((err) =>
        finish(this.#fail(err))
      );
    });
  }

  /**
   * Opens a streaming call of `service`'s method `method`. A server-streaming
   * call takes its request here; client-streaming and bidi calls send theirs
   * on the stream.
   */
  openStream<S extends DescService, K extends keyof MethodOf<S> & string>(
    service: S,
    method: K,
    req?: In<MethodOf<S>[K]>,
    opts: CallOptions = {},
  ): TtrpcStream<In<MethodOf<S>[K]>, Out<MethodOf<S>[K]>> {
    const m = service.methods.find((x) => x.localName === method);
    if (!m) throw new Error(`Service ${service.typeName} has no method ${method}`);
    if (m.methodKind === "unary") {
      throw new Error(`Cannot stream ${service.typeName}/${m.name}: it is a unary method`);
    }
    const clientStreams = m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming";
    const serverStreams = m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming";
    const name = `/${service.typeName}/${m.name}`;
    const inbox = new Inbox<Uint8Array>();
    const encode = (msg: unknown) =>
      toBinary(m.input, create(m.input, msg as MessageInitShape<DescMessage>));
    const id = this.#nextId;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let detached = false;
    /** Settles once a Response ended the stream: rejects with the server's error. */
    let final: Promise<void> | undefined;
    /** Stops listening for this stream's frames. */
    const detach = () => {
      if (detached) return;
      detached = true;
      if (timer !== undefined) clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      if (this.#pending.delete(id) && this.#pending.size === 0) this.#conn.unref();
    };
    /** Ends the stream for its reader (the first end wins). */
    const end = (err?: Error) => {
      detach();
      if (err) inbox.fail(err);
      else inbox.close();
    };
    const onAbort = () => end(canceled(name, opts.signal?.reason));
    const stream = new TtrpcStream<In<MethodOf<S>[K]>, Out<MethodOf<S>[K]>>({
      method: name,
      inbox,
      decode: (b) => fromBinary(m.output, b) as Out<MethodOf<S>[K]>,
      encode,
      send: (bytes, flags) => {
        if (detached) {
          // Sending after the server answered: its error says why, if it failed.
          return (final ?? Promise.resolve()).then(() => {
            throw new Error(`${name}: the call has ended`);
          });
        }
        return this.#writer.send(id, MessageType.data, bytes, flags).catch((err) => {
          const e = this.#fail(err);
          end(e);
          throw e;
        });
      },
      cancel: (reason) => end(canceled(name, reason)),
      clientStreams,
    });
    if (this.#error) {
      end(this.#error);
      return stream;
    }
    if (opts.signal?.aborted) {
      end(canceled(name, opts.signal.reason));
      return stream;
    }
    this.#nextId = (this.#nextId + 2) >>> 0;
    const metadata = opts.metadata
      ? [...this.#metadata, ...flatten(opts.metadata)]
      : this.#metadata;
    const request = create(RequestSchema, {
      service: service.typeName,
      method: m.name,
      payload: !clientStreams && req !== undefined ? encode(req) : new Uint8Array(),
      timeoutNano: opts.timeout ? BigInt(Math.ceil(opts.timeout * 1e6)) : 0n,
      metadata: metadata.map(([key, value]) => ({ key, value })),
    });
    this.#pending.set(id, {
      method: name,
      frame: (type, flags, payload, length) => {
        if (payload === null) {
          end(
            new BerthError(
              "resource_exhausted",
              `${name}: message of ${length} bytes exceeds the maximum message size`,
            ),
          );
          return;
        }
        if (type === MessageType.data) {
          if (!(flags & Flags.noData)) inbox.push(payload);
          if (flags & Flags.remoteClosed) end();
        } else if (type === MessageType.response) {
          // The Response ends the stream: an error, or a client stream's result.
          detach();
          final = settle(name, payload).then((p) => {
            if (!serverStreams || p.length > 0) inbox.push(p);
            inbox.close();
          }, (e) => {
            inbox.fail(e);
            throw e;
          });
          final.catch(() => {}); // Read through the inbox or a later send.
        }
      },
      reject: (e) => end(e),
    });
    this.#conn.ref();
    if (opts.timeout) {
      timer = setTimeout(
        () =>
          end(
            new BerthError(
              "deadline_exceeded",
              `${name}: no reply within ${opts.timeout} ms: context deadline exceeded`,
            ),
          ),
        opts.timeout,
      );
    }
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    this.#writer.send(
      id,
      MessageType.request,
      toBinary(RequestSchema, request),
      clientStreams ? Flags.remoteOpen : Flags.remoteClosed,
    ).catch((err) => end(this.#fail(err)));
    return stream;
  }

  /** A server-streaming call: the server's messages, in order. */
  serverStream<S extends DescService, K extends keyof MethodOf<S> & string>(
    service: S,
    method: K,
    req: In<MethodOf<S>[K]>,
    opts: CallOptions = {},
  ): AsyncIterable<Out<MethodOf<S>[K]>> {
    return this.openStream(service, method, req, opts);
  }

  /** Closes the connection; pending calls fail. */
  close(): void {
    if (!this.#error) {
      this.#error = transport(unavailable(`ttrpc client for ${this.path} is closed`));
    }
    try {
      // Ref first: the read loop's cancelled read must still settle `done`.
      this.#conn.ref();
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Records why the connection is unusable (first reason wins) and returns it. */
  #fail(cause: unknown): Error {
    this.#error ??= transport(unavailable(`ttrpc connection to ${this.path} closed`, { cause }));
    return this.#error;
  }

  async #readLoop(): Promise<void> {
    const reader = new FrameReader(this.#conn);
    try {
      for (;;) {
        const f = await reader.next();
        if (!f) break;
        if (f.type !== MessageType.response && f.type !== MessageType.data) continue;
        const call = this.#pending.get(f.streamId);
        if (!call) continue; // Cancelled or timed out; the late reply is dropped.
        call.frame(f.type, f.flags, f.payload, f.length);
      }
      this.#fail(undefined);
    } catch (err) {
      this.#fail(err);
    } finally {
      const err = this.#error!;
      for (const call of [...this.#pending.values()]) call.reject(err);
      try {
        this.#conn.close();
      } catch {
        // Already closed.
      }
    }
  }
}

/** The payload of a Response, or (rejected) the error its status names. */
function settle(method: string, bytes: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve) => resolve(payloadOf(method, bytes)));
}

function payloadOf(method: string, bytes: Uint8Array): Uint8Array {
  let res;
  try {
    res = fromBinary(ResponseSchema, bytes);
  } catch (err) {
    throw new BerthError("unknown", `${method}: undecodable reply`, { cause: err });
  }
  if (res.status && res.status.code !== 0) throw errorOf(res.status, method);
  return res.payload;
}

function flatten(md: Metadata): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(md)) {
    for (const value of typeof v === "string" ? [v] : v) out.push([k.toLowerCase(), value]);
  }
  return out;
}

function canceled(method: string, reason: unknown): BerthError {
  return new BerthError("canceled", `${method}: context canceled`, { cause: reason });
}
