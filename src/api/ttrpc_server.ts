/**
 * The daemon's ttrpc server on `<grpc socket>.ttrpc`: shims forward their
 * task events here (containerd.services.events.ttrpc.v1.Events/Forward, the
 * address they get as TTRPC_ADDRESS), and the daemon delivers them as they
 * are to its event subscribers.
 */
import { create } from "@bufbuild/protobuf";
import { Events } from "../gen/containerd/services/ttrpc/events/v1/events_pb.ts";
import { EnvelopeSchema } from "../gen/containerd/services/events/v1/events_pb.ts";
import { TtrpcServer } from "../ttrpc/mod.ts";
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

/** Starts serving Events/Forward on `path` (a stale socket there is replaced). */
export async function startTtrpcServer(
  path: string,
  events: Exchange,
  log: Logger,
): Promise<EventsServer> {
  const server = new TtrpcServer({ log });
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
