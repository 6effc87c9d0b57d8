/**
 * A ttrpc client over a unix socket: typed unary calls on protobuf-es service
 * descriptors, multiplexed on one connection (odd, increasing stream ids, as
 * containerd/ttrpc's client uses). The daemon talks to shims with it and
 * shims forward events with it.
 *
 * Errors are BerthErrors: the server's status maps back to its kind; a peer
 * that goes away fails every pending and later call as `unavailable`.
 *
 * The connection does not keep the process alive while no call is pending.
 *
 * ```ts
 * const c = await TtrpcClient.connect("unix:///run/containerd/s/abc", { namespace: "default" });
 * const { shimPid } = await c.call(Task, "connect", { id: "t1" });
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
import { FrameReader, FrameWriter, MessageType, TTRPC_NAMESPACE_KEY } from "./frame.ts";
import { errorOf } from "./status.ts";

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

interface Pending {
  resolve(payload: Uint8Array): void;
  reject(err: Error): void;
  method: string;
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
      throw unavailable(`cannot connect to ttrpc server at ${path}: ${why}`, { cause: err });
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
      throw new Error(
        `Cannot call ${service.typeName}/${m.name}: ttrpc supports unary methods only`,
      );
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
        resolve: (p) => finish(undefined, p),
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

  /** Closes the connection; pending calls fail. */
  close(): void {
    if (!this.#error) {
      this.#error = unavailable(`ttrpc client for ${this.path} is closed`);
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
    this.#error ??= unavailable(`ttrpc connection to ${this.path} closed`, { cause });
    return this.#error;
  }

  async #readLoop(): Promise<void> {
    const reader = new FrameReader(this.#conn);
    try {
      for (;;) {
        const f = await reader.next();
        if (!f) break;
        if (f.type !== MessageType.response) continue;
        const call = this.#pending.get(f.streamId);
        if (!call) continue; // Cancelled or timed out; the late reply is dropped.
        if (f.payload === null) {
          call.reject(
            new BerthError(
              "resource_exhausted",
              `${call.method}: reply of ${f.length} bytes exceeds the maximum message size`,
            ),
          );
          continue;
        }
        this.#settle(call, f.payload);
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

  async #settle(call: Pending, bytes: Uint8Array): Promise<void> {
    let res;
    try {
      res = fromBinary(ResponseSchema, bytes);
    } catch (err) {
      call.reject(new BerthError("unknown", `${call.method}: undecodable reply`, { cause: err }));
      return;
    }
    if (res.status && res.status.code !== 0) {
      call.reject(await errorOf(res.status, call.method));
    } else call.resolve(res.payload);
  }
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
