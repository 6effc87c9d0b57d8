/**
 * Serves protobuf-es service descriptors on a grpc-js server. Each handler gets
 * the decoded request and a {@link CallContext}; thrown errors are mapped to
 * gRPC statuses once, here.
 */
import * as grpc from "@grpc/grpc-js";
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import type { GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { failedPrecondition } from "../core/errdefs.ts";
import { validateIdentifier } from "../core/identifiers.ts";
import { toGrpcStatus } from "./errors.ts";
import type { Logger } from "../util/log.ts";

export const NAMESPACE_HEADER = "containerd-namespace";
export const LEASE_HEADER = "containerd-lease";

/** What a handler knows about its call besides the request. */
export class CallContext {
  readonly metadata: grpc.Metadata;
  readonly signal: AbortSignal;
  constructor(metadata: grpc.Metadata, signal: AbortSignal) {
    this.metadata = metadata;
    this.signal = signal;
  }
  #header(name: string): string | undefined {
    const v = this.metadata.get(name)[0];
    return v === undefined ? undefined : String(v);
  }
  /** The namespace from the call's metadata, validated, or undefined. */
  get namespaceOrUndefined(): string | undefined {
    const ns = this.#header(NAMESPACE_HEADER);
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
    return this.#header(LEASE_HEADER) || undefined;
  }
}

type In<M> = M extends { input: infer I extends DescMessage } ? MessageShape<I> : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? MessageInitShape<O> : never;

/** Sends one message on a server stream; resolves when the transport took it. */
export type Send<T> = (msg: T) => Promise<void>;

type Handler<M> = M extends { methodKind: "unary" }
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

function serializers(m: DescMethod) {
  return {
    requestSerialize: (v: unknown) =>
      Buffer.from(toBinary(m.input, create(m.input, v as MessageInitShape<DescMessage>))),
    requestDeserialize: (b: Buffer) => fromBinary(m.input, b),
    responseSerialize: (v: unknown) =>
      Buffer.from(toBinary(m.output, create(m.output, v as MessageInitShape<DescMessage>))),
    responseDeserialize: (b: Buffer) => fromBinary(m.output, b),
  };
}

/** The grpc-js definition of a protobuf-es service (also used by clients). */
export function grpcDefinition(service: DescService): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    def[m.localName] = {
      path: `/${service.typeName}/${m.name}`,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      originalName: m.name,
      ...serializers(m),
    };
  }
  return def;
}

function failure(err: unknown, log: Logger, path: string): grpc.ServiceError {
  const { code, details } = toGrpcStatus(err);
  if (code === grpc.status.UNKNOWN || code === grpc.status.INTERNAL) {
    log.error("call failed", { method: path, error: err instanceof Error ? err.stack : err });
  } else log.debug("call refused", { method: path, code: grpc.status[code], error: details });
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

function signalOf(call: { on(e: "cancelled", f: () => void): unknown }): AbortSignal {
  const ac = new AbortController();
  call.on("cancelled", () => ac.abort());
  return ac.signal;
}

/** Iterates a readable call stream, ending when the client half-closes. */
async function* readAll<T>(
  call: grpc.ServerReadableStream<T, unknown> | grpc.ServerDuplexStream<T, unknown>,
) {
  // destroyOnReturn: false keeps a duplex call's writable side alive after the
  // client half-closes; plain for-await destroys the stream at its end, and
  // then neither later messages nor the final status reach the client.
  const it = (call as unknown as {
    iterator(o: { destroyOnReturn: boolean }): AsyncIterable<T>;
  }).iterator({ destroyOnReturn: false });
  for await (const msg of it) yield msg;
}

function sender<T>(
  call: grpc.ServerWritableStream<unknown, T> | grpc.ServerDuplexStream<unknown, T>,
): Send<T> {
  return (msg) =>
    new Promise((resolve, reject) => {
      if (call.cancelled) return reject(new Error("call cancelled"));
      if (call.write(msg)) resolve();
      else call.once("drain", () => resolve());
    });
}

/** Registers `impl` for `service` on `server`. */
export function addService<S extends GenServiceMethods>(
  server: grpc.Server,
  service: DescService & { method: S },
  impl: ServiceImpl<S>,
  log: Logger,
): void {
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const m of service.methods) {
    const fn = (impl as Record<string, unknown>)[m.localName] as
      | ((...args: unknown[]) => Promise<unknown>)
      | undefined;
    const path = `/${service.typeName}/${m.name}`;
    if (!fn) continue; // grpc-js answers UNIMPLEMENTED for unregistered methods.
    // async: a handler that throws synchronously still becomes a rejected promise.
    const h = async (...args: unknown[]) => await fn.apply(impl, args);
    switch (m.methodKind) {
      case "unary":
        handlers[m.localName] = (
          call: grpc.ServerUnaryCall<unknown, unknown>,
          cb: grpc.sendUnaryData<unknown>,
        ) => {
          const ctx = new CallContext(call.metadata, signalOf(call));
          const t0 = performance.now();
          h(call.request, ctx).then((res) => {
            log.trace("call", { method: path, ms: +(performance.now() - t0).toFixed(1) });
            cb(null, res);
          }, (err) => cb(failure(err, log, path)));
        };
        break;
      case "server_streaming":
        handlers[m.localName] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
          const ctx = new CallContext(call.metadata, signalOf(call));
          h(call.request, ctx, sender(call)).then(
            () => call.end(),
            (err) => {
              // emit, not destroy: grpc-js sends the status from its error handler;
              // a destroyed stream never sends one and the client hangs.
              if (!call.cancelled) call.emit("error", failure(err, log, path));
            },
          );
        };
        break;
      case "client_streaming":
        handlers[m.localName] = (
          call: grpc.ServerReadableStream<unknown, unknown>,
          cb: grpc.sendUnaryData<unknown>,
        ) => {
          const ctx = new CallContext(call.metadata, signalOf(call));
          h(readAll(call), ctx).then((res) => cb(null, res), (err) => cb(failure(err, log, path)));
        };
        break;
      case "bidi_streaming":
        handlers[m.localName] = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
          const ctx = new CallContext(call.metadata, signalOf(call));
          h(readAll(call), ctx, sender(call)).then(
            () => call.end(),
            (err) => {
              // emit, not destroy: grpc-js sends the status from its error handler;
              // a destroyed stream never sends one and the client hangs.
              if (!call.cancelled) call.emit("error", failure(err, log, path));
            },
          );
        };
        break;
    }
  }
  server.addService(grpcDefinition(service), handlers);
}
