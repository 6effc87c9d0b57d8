import { Events as EventsService } from "../../gen/containerd/services/events/v1/events_pb.ts";
import { invalidArgument } from "../../core/errdefs.ts";
import { validateTopic } from "../../events/exchange.ts";
import type { Plugin } from "../plugins.ts";

export const eventsPlugin: Plugin = {
  type: "io.containerd.grpc.v1",
  id: "events",
  register({ daemon, server }) {
    const bus = daemon.events;
    server.add(EventsService, {
      publish(req, ctx) {
        bus.publishAny(ctx.namespace(), req.topic, req.event);
        return Promise.resolve({});
      },
      forward(req) {
        const env = req.envelope;
        if (!env) throw invalidArgument("envelope must be given");
        validateTopic(env.topic);
        if (!env.namespace) throw invalidArgument("envelope namespace must be given");
        bus.forward(env);
        return Promise.resolve({});
      },
      async subscribe(req, ctx, send) {
        for await (const env of bus.subscribe(req.filters, ctx.signal)) await send(env);
      },
    });
  },
};
