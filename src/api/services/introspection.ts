import { Introspection as IntrospectionService } from "../../gen/containerd/services/introspection/v1/introspection_pb.ts";
import { adaptObject, parseFilters } from "../../core/filters.ts";
import type { Plugin } from "../plugins.ts";

/** Serves the plugin list the daemon was built with (given at registration time). */
export function introspectionPlugin(all: () => readonly Plugin[]): Plugin {
  return {
    type: "io.containerd.grpc.v1",
    id: "introspection",
    register({ daemon, server }) {
      server.add(IntrospectionService, {
        plugins(req) {
          const filter = parseFilters(req.filters);
          const plugins = all()
            .filter((p) =>
              filter.match((path) => {
                if (path.length === 1 && (path[0] === "capabilities" || path[0] === "platforms")) {
                  return undefined;
                }
                return adaptObject({ type: p.type, id: p.id })(path);
              })
            )
            .map((p) => ({
              type: p.type,
              id: p.id,
              requires: p.requires ?? [],
              capabilities: p.capabilities ?? [],
              exports: p.exports ?? {},
              platforms: [],
            }));
          return Promise.resolve({ plugins });
        },
        server: () => Promise.resolve({ uuid: daemon.uuid }),
      });
    },
  };
}
