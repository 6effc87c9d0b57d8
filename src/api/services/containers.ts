import { Containers as ContainersService } from "../../gen/containerd/services/containers/v1/containers_pb.ts";
import {
  ContainerCreateSchema,
  ContainerDeleteSchema,
  ContainerUpdateSchema,
} from "../../gen/containerd/events/container_pb.ts";
import { failedPrecondition, invalidArgument } from "../../core/errdefs.ts";
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
        const ns = ctx.namespace();
        const container = store.create(ns, req.container);
        daemon.events.publish(ns, "/containers/create", ContainerCreateSchema, {
          id: container.id,
          image: container.image,
          runtime: { name: container.runtime?.name ?? "", options: container.runtime?.options },
        });
        return Promise.resolve({ container });
      },
      update(req, ctx) {
        if (!req.container) throw invalidArgument("container must be given");
        const ns = ctx.namespace();
        const container = store.update(ns, req.container, req.updateMask?.paths ?? []);
        daemon.events.publish(ns, "/containers/update", ContainerUpdateSchema, {
          id: container.id,
          image: container.image,
          labels: container.labels,
          snapshotKey: container.snapshotKey,
        });
        return Promise.resolve({ container });
      },
      delete(req, ctx) {
        const ns = ctx.namespace();
        // A task holds the container's spec and rootfs: it must go first.
        if (daemon.tasks.has(ns, req.id)) {
          throw failedPrecondition(
            `cannot delete container "${req.id}": it has a task; delete the task first`,
          );
        }
        store.delete(ns, req.id);
        daemon.events.publish(ns, "/containers/delete", ContainerDeleteSchema, { id: req.id });
        return Promise.resolve({});
      },
    });
  },
};
