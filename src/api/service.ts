/**
 * What a service implementation sees, independent of the transport: the
 * {@link CallContext} (namespace, lease, cancellation), the handler shapes by
 * method kind, and the list of services a server was given. The daemon
 * serves the same implementations over gRPC (src/api/grpc.ts, for ctr) and
 * over ttrpc (src/api/ttrpc_server.ts, for berth's own CLI).
 *
 * Nothing here loads a transport, so either side can use it cheaply.
 */
import type { DescMessage, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { failedPrecondition } from "../core/errdefs.ts";
import { validateIdentifier } from "../core/identifiers.ts";

/** The metadata key containerd's clients put the namespace under. */
export const NAMESPACE_HEADER = "containerd-namespace";
/** The metadata key naming the lease a call's new objects belong to. */
export const LEASE_HEADER = "containerd-lease";

/** Reads one metadata value of a call (the first, when a key repeats). */
export type MetadataGetter = (key: string) => string | undefined;

/** What a handler knows about its call besides the request. */
export class CallContext {
  /** Aborted when the caller cancels, its deadline passes or its connection closes. */
  readonly signal: AbortSignal;
  #get: MetadataGetter;
  constructor(get: MetadataGetter, signal: AbortSignal) {
    this.#get = get;
    this.signal = signal;
  }
  /** The first value of a metadata key (lower case), if sent. */
  header(name: string): string | undefined {
    return this.#get(name);
  }
  /** The namespace from the call's metadata, validated, or undefined. */
  get namespaceOrUndefined(): string | undefined {
    const ns = this.#get(NAMESPACE_HEADER);
    return ns ? validateIdentifier("namespace", ns) : undefined;
  }
  /** The namespace, required for namespaced services (as in containerd). */
  namespace(): string {
    const ns = this.namespaceOrUndefined;
    if (!ns) throw failedPrecondition("namespace is required");
    return ns;
  }
  /** The lease named in the call's metadata, if any. */
  get lease(): string | undefined {
    return this.#get(LEASE_HEADER) || undefined;
  }
}

type In<M> = M extends { input: infer I extends DescMessage } ? MessageShape<I> : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? MessageInitShape<O> : never;

/** Sends one message on a server stream; resolves when the transport took it. */
export type Send<T> = (msg: T) => Promise<void>;

/** A handler by method kind; streaming requests end when the client half-closes. */
export type Handler<M> = M extends { methodKind: "unary" }
  ? (req: In<M>, ctx: CallContext) => Promise<Out<M>>
  : M extends { methodKind: "server_streaming" }
    ? (req: In<M>, ctx: CallContext, send: Send<Out<M>>) => Promise<void>
  : M extends { methodKind: "client_streaming" }
    ? (reqs: AsyncIterable<In<M>>, ctx: CallContext) => Promise<Out<M>>
  : M extends { methodKind: "bidi_streaming" }
    ? (reqs: AsyncIterable<In<M>>, ctx: CallContext, send: Send<Out<M>>) => Promise<void>
  : never;

/** An implementation of a service: any subset of its methods (the rest are UNIMPLEMENTED). */
export type ServiceImpl<S extends GenServiceMethods> = { [K in keyof S]?: Handler<S[K]> };

/** A service and its implementation, as registered. */
export interface RegisteredService {
  service: DescService;
  impl: Record<string, unknown>;
}

const registered = new WeakMap<object, RegisteredService[]>();

/** Records that `server` serves `impl` for `service` (so another transport can serve it too). */
export function recordService(
  server: object,
  service: DescService,
  impl: object,
): void {
  let list = registered.get(server);
  if (!list) registered.set(server, list = []);
  list.push({ service, impl: impl as Record<string, unknown> });
}

/** The services registered on `server` so far, in order. */
export function servicesOf(server: object): readonly RegisteredService[] {
  return registered.get(server) ?? [];
}
