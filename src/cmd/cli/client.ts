/**
 * The CLI's connection to the daemon: typed calls on protobuf-es service
 * descriptors over grpc-js, with the namespace sent as containerd does.
 * Errors come back as BerthErrors of the server's kind.
 */
import * as grpc from "@grpc/grpc-js";
import type { DescMessage, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { grpcDefinition, LEASE_HEADER, NAMESPACE_HEADER } from "../../api/grpc.ts";
import { fromGrpcError } from "../../api/errors.ts";
import { unavailable } from "../../core/errdefs.ts";

type MethodOf<S> = S extends { method: infer M } ? M : never;
type In<M> = M extends { input: infer I extends DescMessage } ? MessageInitShape<I> : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? MessageShape<O> : never;

export interface ClientOptions {
  address: string;
  namespace?: string;
  lease?: string;
}

export class Client {
  readonly address: string;
  namespace: string | undefined;
  lease: string | undefined;
  #clients = new Map<string, grpc.Client>();
  #channel: grpc.Channel | undefined;

  constructor(opts: ClientOptions) {
    this.address = opts.address;
    this.namespace = opts.namespace;
    this.lease = opts.lease;
  }

  #client(service: DescService): grpc.Client {
    let c = this.#clients.get(service.typeName);
    if (!c) {
      const Ctor = grpc.makeGenericClientConstructor(grpcDefinition(service), service.name);
      const opts: grpc.ClientOptions = {
        "grpc.max_receive_message_length": 16 << 20,
        "grpc.max_send_message_length": 16 << 20,
      };
      if (this.#channel) opts.channelOverride = this.#channel;
      c = new Ctor(`unix:${this.address}`, grpc.credentials.createInsecure(), opts);
      this.#channel ??= c.getChannel() as grpc.Channel;
      this.#clients.set(service.typeName, c);
    }
    return c;
  }

  #metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.namespace) md.set(NAMESPACE_HEADER, this.namespace);
    if (this.lease) md.set(LEASE_HEADER, this.lease);
    return md;
  }

  #wrap(err: unknown): Error {
    const e = err as { code?: number };
    // Only a transport failure means the daemon is unreachable; UNAVAILABLE
    // from a handler (say, a registry that is down) is the daemon's answer.
    const details = String((err as { details?: unknown })?.details ?? "");
    if (
      e?.code === grpc.status.UNAVAILABLE &&
      /No connection established|connect E[A-Z]+|Connection dropped|Failed to connect/.test(details)
    ) {
      return unavailable(`cannot reach the berth daemon at ${this.address} (is it running?)`, {
        cause: err,
      });
    }
    return fromGrpcError(err);
  }

  /** A unary call. */
  call<S extends DescService, K extends keyof MethodOf<S> & string>(
    service: S,
    method: K,
    req: In<MethodOf<S>[K]>,
  ): Promise<Out<MethodOf<S>[K]>> {
    const c = this.#client(service) as unknown as Record<string, (...a: unknown[]) => unknown>;
    return new Promise((resolve, reject) => {
      c[method]!.call(
        c,
        req,
        this.#metadata(),
        { waitForReady: false },
        (err: unknown, res: unknown) => {
          if (err) reject(this.#wrap(err));
          else resolve(res as Out<MethodOf<S>[K]>);
        },
      );
    });
  }

  /** A server-streaming call, as an async iterator. */
  async *stream<S extends DescService, K extends keyof MethodOf<S> & string>(
    service: S,
    method: K,
    req: In<MethodOf<S>[K]>,
    signal?: AbortSignal,
  ): AsyncGenerator<Out<MethodOf<S>[K]>> {
    const c = this.#client(service) as unknown as Record<
      string,
      (...a: unknown[]) => grpc.ClientReadableStream<unknown>
    >;
    const call = c[method]!.call(c, req, this.#metadata());
    signal?.addEventListener("abort", () => call.cancel());
    try {
      for await (const msg of call) yield msg as Out<MethodOf<S>[K]>;
    } catch (err) {
      if ((err as { code?: number }).code === grpc.status.CANCELLED && signal?.aborted) return;
      throw this.#wrap(err);
    }
  }

  /** A bidirectional call: returns the writable call and an iterator of replies. */
  duplex<S extends DescService, K extends keyof MethodOf<S> & string>(
    service: S,
    method: K,
  ): {
    send(msg: In<MethodOf<S>[K]>): Promise<void>;
    end(): void;
    replies: AsyncGenerator<Out<MethodOf<S>[K]>>;
  } {
    const c = this.#client(service) as unknown as Record<
      string,
      (...a: unknown[]) => grpc.ClientDuplexStream<unknown, unknown>
    >;
    const call = c[method]!.call(c, this.#metadata());
    const wrap = (e: unknown) => this.#wrap(e);
    async function* replies() {
      try {
        for await (const msg of call) yield msg as Out<MethodOf<S>[K]>;
      } catch (err) {
        throw wrap(err);
      }
    }
    return {
      send: (msg) =>
        new Promise((resolve) => {
          if (call.write(msg)) resolve();
          else call.once("drain", () => resolve());
        }),
      end: () => call.end(),
      replies: replies(),
    };
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
    this.#channel = undefined;
  }
}
