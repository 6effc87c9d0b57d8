/**
 * `containerd.services.snapshots.v1.Snapshots`: a thin adapter choosing the
 * snapshotter named in each request, plus the snapshotter plugins that open
 * overlayfs and native under `<root>/snapshots/<name>`.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  Kind as ProtoKind,
  Snapshots as SnapshotsService,
} from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import {
  SnapshotCommitSchema,
  SnapshotPrepareSchema,
  SnapshotRemoveSchema,
} from "../../gen/containerd/events/snapshot_pb.ts";
import { invalidArgument } from "../../core/errdefs.ts";
import type { CallContext } from "../grpc.ts";
import type { Daemon, Plugin } from "../plugins.ts";
import type { Info, Kind, Scope, Snapshotter } from "../../snapshots/mod.ts";
import type { Mount } from "../../mount/mod.ts";

const KINDS: Record<Kind, ProtoKind> = {
  active: ProtoKind.ACTIVE,
  view: ProtoKind.VIEW,
  committed: ProtoKind.COMMITTED,
};

function toProto(i: Info) {
  return {
    name: i.name,
    parent: i.parent,
    kind: KINDS[i.kind],
    createdAt: timestampFromDate(i.createdAt),
    updatedAt: timestampFromDate(i.updatedAt),
    labels: i.labels,
  };
}

function mountsProto(ms: Mount[]) {
  return ms.map((m) => ({
    type: m.type,
    source: m.source,
    target: m.target ?? "",
    options: m.options,
  }));
}

/** The snapshotter a request names ("" means the configured default). */
export function pickSnapshotter(daemon: Daemon, name: string): Snapshotter {
  const sn = daemon.snapshotters.get(name || daemon.config.snapshotter);
  if (!sn) {
    throw invalidArgument(
      `snapshotter "${name}" is not loaded (loaded: ${[...daemon.snapshotters.keys()].join(", ")})`,
    );
  }
  return sn;
}

function scopeOf(ctx: CallContext): Scope {
  return { namespace: ctx.namespace(), lease: ctx.lease };
}

/** An `io.containerd.snapshotter.v1` plugin that opens snapshotter `id`. */
function snapshotterPlugin(id: string): Plugin {
  return {
    type: "io.containerd.snapshotter.v1",
    id,
    requires: ["io.containerd.metadata.v1"],
    exports: {},
    async register({ daemon }) {
      const { openSnapshotter } = await import("../../snapshots/mod.ts");
      const root = `${daemon.config.root}/snapshots/${id}`;
      const sn = await openSnapshotter(id, {
        root,
        db: daemon.db,
        namespaces: daemon.namespaces,
        leases: daemon.leases,
        log: daemon.log,
      });
      daemon.snapshotters.set(id, sn);
      this.exports = { root };
      // Storage left by a crash between a row's removal and its directory's.
      sn.cleanup().catch((e) =>
        daemon.log.warn("snapshot cleanup failed", { snapshotter: id, error: e })
      );
    },
  };
}

export const overlayfsPlugin: Plugin = snapshotterPlugin("overlayfs");
export const nativePlugin: Plugin = snapshotterPlugin("native");

export const snapshotsPlugin: Plugin = {
  type: "io.containerd.grpc.v1",
  id: "snapshots",
  requires: ["io.containerd.snapshotter.v1"],
  register({ daemon, server }) {
    if (!daemon.snapshotters.has(daemon.config.snapshotter)) {
      throw new Error(
        `Invalid config: snapshotter "${daemon.config.snapshotter}" is not one of ${
          [...daemon.snapshotters.keys()].join(", ")
        }`,
      );
    }
    const events = daemon.events;
    const pick = (name: string) => pickSnapshotter(daemon, name);
    server.add(SnapshotsService, {
      async prepare(req, ctx) {
        const sn = pick(req.snapshotter);
        const scope = scopeOf(ctx);
        const mounts = await sn.prepare(scope, req.key, { parent: req.parent, labels: req.labels });
        events.publish(scope.namespace, "/snapshot/prepare", SnapshotPrepareSchema, {
          key: req.key,
          parent: req.parent,
          snapshotter: sn.name,
        });
        return { mounts: mountsProto(mounts) };
      },
      async view(req, ctx) {
        const sn = pick(req.snapshotter);
        const mounts = await sn.view(scopeOf(ctx), req.key, {
          parent: req.parent,
          labels: req.labels,
        });
        return { mounts: mountsProto(mounts) };
      },
      async mounts(req, ctx) {
        const mounts = await pick(req.snapshotter).mounts(scopeOf(ctx), req.key);
        return { mounts: mountsProto(mounts) };
      },
      async commit(req, ctx) {
        const sn = pick(req.snapshotter);
        const scope = scopeOf(ctx);
        await sn.commit(scope, req.name, req.key, { labels: req.labels });
        events.publish(scope.namespace, "/snapshot/commit", SnapshotCommitSchema, {
          key: req.key,
          name: req.name,
          snapshotter: sn.name,
        });
        return {};
      },
      async remove(req, ctx) {
        const sn = pick(req.snapshotter);
        const scope = scopeOf(ctx);
        await sn.remove(scope, req.key);
        events.publish(scope.namespace, "/snapshot/remove", SnapshotRemoveSchema, {
          key: req.key,
          snapshotter: sn.name,
        });
        return {};
      },
      async stat(req, ctx) {
        return { info: toProto(await pick(req.snapshotter).stat(scopeOf(ctx), req.key)) };
      },
      async update(req, ctx) {
        if (!req.info) throw invalidArgument("snapshot info must be given for an update");
        const info = await pick(req.snapshotter).update(
          scopeOf(ctx),
          { name: req.info.name, labels: req.info.labels },
          req.updateMask?.paths ?? [],
        );
        return { info: toProto(info) };
      },
      async list(req, ctx, send) {
        const infos = await pick(req.snapshotter).walk(scopeOf(ctx), req.filters);
        // Batches keep each message small, as containerd's 100 per send.
        for (let i = 0; i < infos.length; i += 100) {
          await send({ info: infos.slice(i, i + 100).map(toProto) });
        }
      },
      async usage(req, ctx) {
        const u = await pick(req.snapshotter).usage(scopeOf(ctx), req.key);
        return { size: BigInt(u.size), inodes: BigInt(u.inodes) };
      },
      async cleanup(req) {
        await pick(req.snapshotter).cleanup();
        return {};
      },
    });
  },
};
