import {
  Namespaces as NamespacesService,
} from "../../gen/containerd/services/namespaces/v1/namespace_pb.ts";
import {
  NamespaceCreateSchema,
  NamespaceDeleteSchema,
  NamespaceUpdateSchema,
} from "../../gen/containerd/events/namespace_pb.ts";
import { adaptObject, parseFilters } from "../../core/filters.ts";
import { invalidArgument } from "../../core/errdefs.ts";
import type { Plugin } from "../plugins.ts";

export const namespacesPlugin: Plugin = {
  type: "io.containerd.grpc.v1",
  id: "namespaces",
  requires: ["io.containerd.metadata.v1"],
  register({ daemon, server }) {
    const store = daemon.namespaces;
    const events = daemon.events;
    server.add(NamespacesService, {
      get: (req) => Promise.resolve({ namespace: store.get(req.name) }),
      list(req) {
        const filter = parseFilters([req.filter]);
        return Promise.resolve({
          namespaces: store.list().filter((n) => filter.match(adaptObject({ ...n }))),
        });
      },
      create(req, ctx) {
        if (!req.namespace) throw invalidArgument("namespace must be given");
        const ns = store.create(req.namespace.name, req.namespace.labels);
        // Published in the caller's namespace, as containerd does.
        events.publish(
          ctx.namespaceOrUndefined ?? "default",
          "/namespaces/create",
          NamespaceCreateSchema,
          ns,
        );
        return Promise.resolve({ namespace: ns });
      },
      update(req, ctx) {
        if (!req.namespace) throw invalidArgument("namespace must be given");
        const ns = store.update(
          req.namespace.name,
          req.namespace.labels,
          req.updateMask?.paths ?? [],
        );
        events.publish(
          ctx.namespaceOrUndefined ?? "default",
          "/namespaces/update",
          NamespaceUpdateSchema,
          ns,
        );
        return Promise.resolve({ namespace: ns });
      },
      delete(req, ctx) {
        store.delete(req.name);
        events.publish(
          ctx.namespaceOrUndefined ?? "default",
          "/namespaces/delete",
          NamespaceDeleteSchema,
          { name: req.name },
        );
        return Promise.resolve({});
      },
    });
  },
};
