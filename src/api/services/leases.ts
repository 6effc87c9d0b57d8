/**
 * `containerd.services.leases.v1.Leases`: a thin adapter over the lease
 * store. containerd publishes no events for leases, and neither does berth.
 *
 * Creating and deleting a lease commit without an fsync of their own
 * (relaxedDurability in src/metadata/db.ts): `ctr run` makes and drops one
 * lease around every container, and the commits that matter come next (the
 * snapshot, the container record), whose fsync makes the lease's durable
 * too. Only power loss right after a delete can bring a lease back, and it
 * then ends at its expiry like any other.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Leases as LeasesService } from "../../gen/containerd/services/leases/v1/leases_pb.ts";
import { invalidArgument } from "../../core/errdefs.ts";
import type { Lease, LeaseResource } from "../../metadata/leases.ts";
import type { Plugin } from "../plugins.ts";
import { relaxedDurability } from "../../metadata/db.ts";

function toProto(l: Lease) {
  return { id: l.id, createdAt: timestampFromDate(l.createdAt), labels: l.labels };
}

function resourceOf(lease: string, r: { id: string; type: string } | undefined): LeaseResource {
  if (!r) throw invalidArgument(`lease "${lease}": resource must be given`);
  return { type: r.type, id: r.id };
}

export const leasesPlugin: Plugin = {
  type: "io.containerd.grpc.v1",
  id: "leases",
  requires: ["io.containerd.metadata.v1"],
  register({ daemon, server }) {
    const store = daemon.leases;
    server.add(LeasesService, {
      create(req, ctx) {
        const ns = ctx.namespace();
        const lease = relaxedDurability(() => store.create(ns, req.id, req.labels));
        daemon.log.debug("lease created", { namespace: ns, id: lease.id });
        return Promise.resolve({ lease: toProto(lease) });
      },
      async delete(req, ctx) {
        const ns = ctx.namespace();
        relaxedDurability(() => store.delete(ns, req.id));
        // What only the lease protected is collected now; `sync` waits for it.
        const gc = daemon.gc.collect();
        if (req.sync) await gc;
        else gc.catch((e) => daemon.log.warn("gc failed", { error: e }));
        return {};
      },
      list: (req, ctx) =>
        Promise.resolve({ leases: store.list(ctx.namespace(), req.filters).map(toProto) }),
      addResource(req, ctx) {
        store.addResource(ctx.namespace(), req.id, resourceOf(req.id, req.resource));
        return Promise.resolve({});
      },
      deleteResource(req, ctx) {
        store.deleteResource(ctx.namespace(), req.id, resourceOf(req.id, req.resource));
        return Promise.resolve({});
      },
      listResources: (req, ctx) =>
        Promise.resolve({ resources: store.listResources(ctx.namespace(), req.id) }),
    });
  },
};
