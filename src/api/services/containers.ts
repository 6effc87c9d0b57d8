import { Containers as ContainersService } from "../../gen/containerd/services/containers/v1/containers_pb.ts";
import { invalidArgument } from "../../core/errdefs.ts";
import type { Plugin } from "../plugins.ts";

export const containersPlugin: Plugin = {
  type: "io.containerd.grpc.v1",
  id: "containers",
  requires: ["io.containerd.metadata.v1"],
  register({ daemon, server }) {
    const store = daemon.containers;
    server.add(ContainersService, {
      get: (req, ctx) => Promise.resolve({ container: store.get(ctx.namespace(), req.id) }),
      list: (req, ctx) => Promise.resolve({ containers: store.list(ctx.namespace(), req.filters) }),
      async listStream(req, ctx, send) {
        for (const container of store.list(ctx.namespace(), req.filters)) await send({ container });
      },
      create(req, ctx) {
        if (!req.container) throw invalidArgument("container must be given");
        const container = store.create(ctx.namespace(), req.container);
        return Promise.resolve({ container });
      },
      update(req, ctx) {
        if (!req.container) throw invalidArgument("container must be given");
        const container = store.update(ctx.namespace(), req.container, req.updateMask?.paths ?? []);
        return Promise.resolve({ container });
      },
      delete(req, ctx) {
        const ns = ctx.namespace();
        const container = store.get(ns, req.id);
        store.delete(ns, req.id);
        return Promise.resolve({});
      },
    });
  },
};
