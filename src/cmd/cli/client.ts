/**
 * The CLI's connection to the daemon: typed calls on protobuf-es service
 * descriptors over ttrpc, on the daemon's `<address>.ttrpc` socket (the
 * daemon serves every gRPC service there too). A plain unix socket and
 * ttrpc's 10-byte framing cost a short-lived CLI process far less than
 * HTTP/2 and grpc-js. The namespace goes as `containerd-namespace-ttrpc`, a
 * lease as `containerd-lease`. Errors come back as BerthErrors of the
 * server's kind.
 */
import type { DescMessage, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { isTransportError, TtrpcClient, type TtrpcStream } from "../../ttrpc/client.ts";
import { TTRPC_NAMESPACE_KEY } from "../../ttrpc/frame.ts";
import { unavailable } from "../../core/errdefs.ts";

type MethodOf<S> = S extends { method: infer M } ? M : never;
type In<M> = M extends { input: infer I extends DescMessage } ? MessageInitShape<I> : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? MessageShape<O> : never;

/** The metadata key naming the lease a call's new objects belong to. */
const LEASE_HEADER = "containerd-lease";

/** Where to reach the daemon and what to send with every call. */
export interface ClientOptions {
  /** The daemon's gRPC socket; the CLI connects to `<address>.ttrpc`. */
  address: string;
  namespace?: string;
  lease?: string;
}

/** A connection to the daemon, opened at the first call. */
export class Client {
  readonly address: string;
  namespace: string | undefined;
  lease: string | undefined;
  #conn: Promise<TtrpcClient> | undefined;
  #client: TtrpcClient | undefined;

  constructor(opts: ClientOptions) {
    this.address = opts.address;
    this.namespace = opts.namespace;
    this.lease = opts.lease;
  }

  /** The connection, opened at first use and again after it was lost (a daemon restart). */
  #connect(): Promise<TtrpcClient> {
    if (this.#client?.closed) this.#conn = this.#client = undefined;
    return this.#conn ??= TtrpcClient.connect(`${this.address}.ttrpc`).then((c) => {
      this.#client = c;
      return c;
    }, (err) => {
      this.#conn = undefined;
      throw this.#unreachable(err);
    });
  }

  #unreachable(cause: unknown): Error {
    return unavailable(`cannot reach the berth daemon at ${this.address} (is it running?)`, {
      cause,
    });
  }

  /** The metadata of a call, read now (namespace and lease may change between calls). */
  #metadata(): Record<string, string> {
    const md: Record<string, string> = {};
    if (this.namespace) md[TTRPC_NAMESPACE_KEY] = this.namespace;
    if (this.lease) md[LEASE_HEADER] = this.lease;
    return md;
  }

  /** Only a transport failure means the daemon is unreachable; an error status is its answer. */
  #wrap = (err: unknown): Error => {
    if (isTransportError(err)) return this.#unreachable(err);
    return err instanceof Error ? err : new Error(String(err));
  };

  /** A unary call. */
  async call<S extends DescService, K extends keyof MethodOf<S> & string>(
    service: S,
    method: K,
    req: In<MethodOf<S>[K]>,
  ): Promise<Out<MethodOf<S>[K]>> {
    const c = await this.#connect();
    try {
      return await c.call(service, method, req, { metadata: this.#metadata() });
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  /** A server-streaming call, as an async iterator; aborting `signal` ends it quietly. */
  async *stream<S extends DescService, K extends keyof MethodOf<S> & string>(
    service: S,
    method: K,
    req: In<MethodOf<S>[K]>,
    signal?: AbortSignal,
  ): AsyncGenerator<Out<MethodOf<S>[K]>> {
    const c = await this.#connect();
    const s = c.openStream(service, method, req, {
      metadata: this.#metadata(),
      ...(signal ? { signal } : {}),
    });
    try {
      for await (const msg of s) yield msg;
    } catch (err) {
      if (signal?.aborted) return;
      throw this.#wrap(err);
    } finally {
      s.cancel();
    }
  }

  /** A client-streaming call: sends every message of `reqs`, then resolves with the reply. */
  async upload<S extends DescService, K extends keyof MethodOf<S> & string>(
    service: S,
    method: K,
    reqs: AsyncIterable<In<MethodOf<S>[K]>>,
  ): Promise<Out<MethodOf<S>[K]>> {
    const c = await this.#connect();
    const s = c.openStream(service, method, undefined, { metadata: this.#metadata() });
    // The reply may come early (an error while we still send): watch for it meanwhile.
    const reply = s.recv();
    reply.catch(() => {});
    try {
      for await (const msg of reqs) {
        await Promise.race([s.send(msg), reply.then(() => {})]);
        if (await settledEarly(reply)) break;
      }
      await s.closeSend().catch(() => {});
      const res = await reply;
      if (res === undefined) throw new Error(`${s.method}: the daemon sent no reply`);
      return res;
    } catch (err) {
      s.cancel();
      throw this.#wrap(err);
    }
  }

  /** A bidirectional call: send messages, end the sending side, iterate the replies. */
  duplex<S extends DescService, K extends keyof MethodOf<S> & string>(
    service: S,
    method: K,
  ): {
    send(msg: In<MethodOf<S>[K]>): Promise<void>;
    end(): void;
    replies: AsyncGenerator<Out<MethodOf<S>[K]>>;
  } {
    const opened: Promise<TtrpcStream<In<MethodOf<S>[K]>, Out<MethodOf<S>[K]>>> = this.#connect()
      .then((c) => c.openStream(service, method, undefined, { metadata: this.#metadata() }));
    opened.catch(() => {}); // Reported by send and replies.
    const wrap = this.#wrap;
    async function* replies() {
      const s = await opened.catch((e) => {
        throw wrap(e);
      });
      try {
        for await (const msg of s) yield msg;
      } catch (err) {
        throw wrap(err);
      }
    }
    return {
      send: async (msg) => {
        const s = await opened.catch((e) => {
          throw wrap(e);
        });
        await s.send(msg).catch((e) => {
          throw wrap(e);
        });
      },
      end: () => void opened.then((s) => s.closeSend()).catch(() => {}),
      replies: replies(),
    };
  }

  /** Closes the connection (pending calls fail; a later call connects again). */
  close(): void {
    this.#conn?.then((c) => c.close(), () => {});
    this.#conn = this.#client = undefined;
  }
}

/** True when `p` has already settled (checked without waiting for it). */
async function settledEarly(p: Promise<unknown>): Promise<boolean> {
  const pending = Symbol();
  const r = await Promise.race([p.then(() => true, () => true), Promise.resolve(pending)]);
  return r === true;
}
