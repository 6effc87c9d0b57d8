/**
 * The daemon's ttrpc server on `<grpc socket>.ttrpc`: shims forward their
 * task events here (containerd.services.events.ttrpc.v1.Events/Forward, the
 * address they get as TTRPC_ADDRESS), and the daemon delivers them as they
 * are to its event subscribers.
 *
 * It also serves every gRPC service of the daemon with the same handlers
 * (berth's CLI talks ttrpc: no HTTP/2 to load or set up per call). The
 * namespace comes from `containerd-namespace-ttrpc` or `containerd-namespace`,
 * the lease from `containerd-lease`; errors map as on gRPC.
 */
import { create, type DescService } from "@bufbuild/protobuf";
import type { GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { Events } from "../gen/containerd/services/ttrpc/events/v1/events_pb.ts";
import { EnvelopeSchema } from "../gen/containerd/services/events/v1/events_pb.ts";
import { type TtrpcContext, TtrpcServer } from "../ttrpc/mod.ts";
import { GRPC_NAMESPACE_KEY, TTRPC_NAMESPACE_KEY } from "../ttrpc/frame.ts";
import { CallContext, NAMESPACE_HEADER, type RegisteredService } from "./service.ts";
import { invalidArgument } from "../core/errdefs.ts";
import { validateIdentifier } from "../core/identifiers.ts";
import { validateTopic } from "../events/exchange.ts";
import type { Exchange } from "../events/exchange.ts";
import type { Logger } from "../util/log.ts";

/** A running events server; `close()` stops it and removes its socket. */
export interface EventsServer {
  readonly path: string;
  close(): void;
}

/** The CallContext of a ttrpc call, for handlers written against CallContext. */
export function callContextOf(ctx: TtrpcContext): CallContext {
  return new CallContext(
    (key) =>
      key === NAMESPACE_HEADER
        ? ctx.get(TTRPC_NAMESPACE_KEY) || ctx.get(GRPC_NAMESPACE_KEY)
        : ctx.get(key),
    ctx.signal,
  );
}

/** `impl` (written for gRPC) as a ttrpc implementation of `service`. */
function adapt(service: DescService, impl: Record<string, unknown>, log: Logger) {
  const out: Record<string, unknown> = {};
  for (const m of service.methods) {
    const fn = impl[m.localName];
    if (typeof fn !== "function") continue;
    const path = `/${service.typeName}/${m.name}`;
    out[m.localName] = m.methodKind === "unary"
      ? async (req: unknown, ctx: TtrpcContext) => {
        const t0 = performance.now();
        const res = await fn.call(impl, req, callContextOf(ctx));
        log.trace("call", { method: path, ms: +(performance.now() - t0).toFixed(1) });
        return res;
      }
      : (req: unknown, ctx: TtrpcContext, send: unknown) =>
        fn.call(impl, req, callContextOf(ctx), send);
  }
  return out;
}

/**
 * Starts serving Events/Forward and `services` on `path` (a stale socket
 * there is replaced).
 */
export async function startTtrpcServer(
  path: string,
  events: Exchange,
  log: Logger,
  services: readonly RegisteredService[] = [],
): Promise<EventsServer> {
  const server = new TtrpcServer({ log });
  for (const { service, impl } of services) {
    // The handlers were typed against the descriptor when they were added to gRPC.
    server.register(
      service as DescService & { method: GenServiceMethods },
      adapt(service, impl, log) as never,
    );
  }
  server.register(Events, {
    forward(req) {
      const env = req.envelope;
      if (!env) throw invalidArgument("envelope must be given");
      validateIdentifier("namespace", env.namespace);
      validateTopic(env.topic);
      if (!env.event) throw invalidArgument(`event for topic "${env.topic}" is missing`);
      log.debug("event forwarded", { namespace: env.namespace, topic: env.topic });
      events.forward(create(EnvelopeSchema, {
        timestamp: env.timestamp,
        namespace: env.namespace,
        topic: env.topic,
        event: env.event,
      }));
      return {};
    },
  });
  // A socket left by a crashed daemon is replaced; a live one is not.
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    throw new Error(`Cannot listen on ${path}: another daemon is serving there`);
  } catch (err) {
    if (err instanceof Error && err.message.startsWith("Cannot listen")) throw err;
    await Deno.remove(path).catch(() => {});
  }
  server.listen(path);
  await Deno.chmod(path, 0o660).catch(() => {});
  return {
    path,
    close: () => server.close(),
  };
}
