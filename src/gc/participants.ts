/**
 * The stores' parts in garbage collection: which of their objects are roots,
 * what each references, and how unreferenced ones are removed. Reads go
 * straight to the metadata tables (one query per kind per collection).
 */
import type { MetaDb } from "../metadata/db.ts";
import { labelsOf } from "../metadata/db.ts";
import type { ContentStore } from "../metadata/content.ts";
import type { ContainerStore } from "../metadata/containers.ts";
import { EXPIRE_LABEL } from "../metadata/leases.ts";
import type { Snapshotter } from "../snapshots/mod.ts";
import type { Logger } from "../util/log.ts";
import { isKind } from "../core/errdefs.ts";
import { Collector, type GcNode, type GcParticipant, labelRefs, ROOT_LABEL } from "./gc.ts";

const key = (ns: string, id: string) => `${ns}\u0000${id}`;

function contentParticipant(db: MetaDb, content: ContentStore, log: Logger): GcParticipant {
  let labels = new Map<string, Record<string, string>>();
  return {
    kind: "content",
    roots() {
      // Load every blob's labels once per collection.
      labels = new Map(
        db.all("SELECT namespace, digest, labels FROM content").map((r) => [
          key(String(r.namespace), String(r.digest)),
          labelsOf(r.labels),
        ]),
      );
      const out: GcNode[] = [];
      for (const [k, l] of labels) {
        if (l[ROOT_LABEL] !== undefined) {
          const [namespace, id] = k.split("\u0000") as [string, string];
          out.push({ kind: "content", namespace, id });
        }
      }
      return out;
    },
    refs: (n) => labelRefs(n.namespace, labels.get(key(n.namespace, n.id)) ?? {}),
    all: () =>
      db.all("SELECT namespace, digest FROM content").map((r) => ({
        kind: "content",
        namespace: String(r.namespace),
        id: String(r.digest),
      })),
    remove(nodes) {
      for (const n of nodes) {
        try {
          content.delete(n.namespace, n.id);
          log.debug("gc: removed content", { namespace: n.namespace, digest: n.id });
        } catch (e) {
          if (!isKind(e, "not_found")) {
            log.warn("gc: cannot remove content", { digest: n.id, error: e });
          }
        }
      }
    },
  };
}

function snapshotParticipant(
  db: MetaDb,
  name: string,
  sn: Snapshotter,
  log: Logger,
): GcParticipant {
  const kind = `snapshots/${name}`;
  let rows = new Map<string, { parent: string; labels: Record<string, string>; depth: number }>();
  return {
    kind,
    roots() {
      const all = db.all(
        `SELECT s.namespace, s.key, s.labels, p.key AS parent FROM snapshots s
         LEFT JOIN snapshots p ON p.id = s.parent_id WHERE s.snapshotter = ?`,
        name,
      );
      rows = new Map(all.map((r) => [
        key(String(r.namespace), String(r.key)),
        { parent: r.parent ? String(r.parent) : "", labels: labelsOf(r.labels), depth: 0 },
      ]));
      return all.filter((r) => labelsOf(r.labels)[ROOT_LABEL] !== undefined).map((r) => ({
        kind,
        namespace: String(r.namespace),
        id: String(r.key),
      }));
    },
    refs(n) {
      const r = rows.get(key(n.namespace, n.id));
      if (!r) return [];
      const out = labelRefs(n.namespace, r.labels);
      if (r.parent) out.push({ kind, namespace: n.namespace, id: r.parent });
      return out;
    },
    all: () =>
      [...rows.keys()].map((k) => {
        const [namespace, id] = k.split("\u0000") as [string, string];
        return { kind, namespace, id };
      }),
    async remove(nodes) {
      // Children before parents: order by depth in the parent chain, deepest first.
      const depth = (ns: string, id: string): number => {
        let d = 0;
        for (let p = rows.get(key(ns, id))?.parent; p; p = rows.get(key(ns, p))?.parent) d++;
        return d;
      };
      const sorted = nodes.map((n) => ({ n, d: depth(n.namespace, n.id) })).sort((a, b) =>
        b.d - a.d
      );
      for (const { n } of sorted) {
        try {
          await sn.remove({ namespace: n.namespace }, n.id);
          log.debug("gc: removed snapshot", {
            snapshotter: name,
            namespace: n.namespace,
            key: n.id,
          });
        } catch (e) {
          if (!isKind(e, "not_found")) {
            log.warn("gc: cannot remove snapshot", { key: n.id, error: e });
          }
        }
      }
    },
  };
}

export interface GcDeps {
  db: MetaDb;
  content: ContentStore;
  containers: ContainerStore;
  snapshotters: ReadonlyMap<string, Snapshotter>;
  log: Logger;
}

/** Builds the daemon's collector over every store. */
export function buildCollector(d: GcDeps): Collector {
  const gc = new Collector();
  gc.register(contentParticipant(d.db, d.content, d.log));
  gc.registerLater(() =>
    [...d.snapshotters].map(([name, sn]) => snapshotParticipant(d.db, name, sn, d.log))
  );
  // Images: their target and label references.
  gc.addRoots(() =>
    d.db.all("SELECT namespace, digest, labels FROM images").flatMap((r) => [
      { kind: "content", namespace: String(r.namespace), id: String(r.digest) },
      ...labelRefs(String(r.namespace), labelsOf(r.labels)),
    ])
  );
  // Leases: whatever an unexpired lease holds. Expired leases are deleted.
  gc.addRoots(() => {
    const now = Date.now();
    const live = new Set<string>();
    for (const l of d.db.all("SELECT namespace, id, labels FROM leases")) {
      const exp = labelsOf(l.labels)[EXPIRE_LABEL];
      if (exp !== undefined && Date.parse(exp) <= now) {
        d.db.run(
          "DELETE FROM leases WHERE namespace = ? AND id = ?",
          l.namespace as string,
          l.id as string,
        );
        d.log.debug("gc: lease expired", { namespace: String(l.namespace), lease: String(l.id) });
      } else live.add(key(String(l.namespace), String(l.id)));
    }
    return d.db.all("SELECT namespace, lease, type, id FROM lease_resources")
      .filter((r) => live.has(key(String(r.namespace), String(r.lease))))
      .filter((r) => r.type === "content" || String(r.type).startsWith("snapshots/"))
      .map((r) => ({ kind: String(r.type), namespace: String(r.namespace), id: String(r.id) }));
  });
  // Containers: their snapshots.
  gc.addRoots(() => d.containers.gcRoots());
  return gc;
}
