/**
 * Serves protobuf-es service descriptors on a grpc-js server. Each handler gets
 * the decoded request and a {@link CallContext}; thrown errors are mapped to
 * gRPC statuses once, here. Every service added is also recorded (see
 * `servicesOf` in ./service.ts) so the daemon serves it over ttrpc as well.
 */
import * as grpc from "@grpc/grpc-js";
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import type { GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { toGrpcStatus } from "./errors.ts";
import type { Logger } from "../util/log.ts";
import { CallContext, recordService, type Send, type ServiceImpl } from "./service.ts";

export { CallContext, LEASE_HEADER, NAMESPACE_HEADER } from "./service.ts";
export type { Send, ServiceImpl } from "./service.ts";

/** A CallContext over a grpc-js call's metadata. */
function contextOf(call: { metadata: grpc.Metadata }, signal: AbortSignal): CallContext {
  return new CallContext((name) => {
    const v = call.metadata.get(name)[0];
    return v === undefined ? undefined : String(v);
  }, signal);
}

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
          const ctx = contextOf(call, signalOf(call));
          const t0 = performance.now();
          h(call.request, ctx).then((res) => {
            log.trace("call", { method: path, ms: +(performance.now() - t0).toFixed(1) });
            cb(null, res);
          }, (err) => cb(failure(err, log, path)));
        };
        break;
      case "server_streaming":
        handlers[m.localName] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
          const ctx = contextOf(call, signalOf(call));
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
          const ctx = contextOf(call, signalOf(call));
          h(readAll(call), ctx).then((res) => cb(null, res), (err) => cb(failure(err, log, path)));
        };
        break;
      case "bidi_streaming":
        handlers[m.localName] = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
          const ctx = contextOf(call, signalOf(call));
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
  recordService(server, service, impl);
}
