/**
 * Container records: per namespace, keyed by id. The record is kept as the
 * containerd API message (binary) so every field round-trips exactly,
 * including the packed spec, runtime options and extensions; the columns
 * beside it exist for filtering, GC and namespace accounting.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type Container,
  ContainerSchema,
} from "../gen/containerd/services/containers/v1/containers_pb.ts";
import { alreadyExists, invalidArgument, notFound } from "../core/errdefs.ts";
import { validateIdentifier } from "../core/identifiers.ts";
import { adaptObject, parseFilters } from "../core/filters.ts";
import type { MetaDb } from "./db.ts";
import { addNamespaceHolder, type NamespaceStore, validateLabels } from "./namespaces.ts";
import type { GcNode } from "../gc/gc.ts";

export const CONTAINER_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE containers (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    id TEXT NOT NULL,
    image TEXT NOT NULL DEFAULT '',
    runtime TEXT NOT NULL,
    snapshotter TEXT NOT NULL DEFAULT '',
    snapshot_key TEXT NOT NULL DEFAULT '',
    record BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
  );
  `,
];

export class ContainerStore {
  #db: MetaDb;
  #namespaces: NamespaceStore;

  constructor(db: MetaDb, namespaces: NamespaceStore) {
    this.#db = db;
    this.#namespaces = namespaces;
    db.migrate("containers", CONTAINER_MIGRATIONS);
    addNamespaceHolder("containers", "containers");
  }

  get(ns: string, id: string): Container {
    const row = this.#db.get(
      "SELECT record FROM containers WHERE namespace = ? AND id = ?",
      ns,
      id,
    );
    if (!row) throw notFound(`container "${id}"`);
    return fromBinary(ContainerSchema, row.record as Uint8Array);
  }

  list(ns: string, filters: readonly string[] = []): Container[] {
    const filter = parseFilters(filters);
    return this.#db.all(
      "SELECT record FROM containers WHERE namespace = ? ORDER BY created_at, id",
      ns,
    )
      .map((r) => fromBinary(ContainerSchema, r.record as Uint8Array))
      .filter((c) =>
        filter.match(adaptObject({
          id: c.id,
          image: c.image,
          labels: c.labels,
          runtime: { name: c.runtime?.name ?? "" },
          snapshotter: c.snapshotter,
          snapshot_key: c.snapshotKey,
        }))
      );
  }

  create(ns: string, c: Container): Container {
    validate(c);
    const now = Date.now();
    const rec = create(ContainerSchema, {
      ...c,
      createdAt: timestampFromMs(now),
      updatedAt: timestampFromMs(now),
    });
    return this.#db.tx(() => {
      this.#namespaces.ensure(ns);
      if (this.#db.get("SELECT 1 FROM containers WHERE namespace = ? AND id = ?", ns, c.id)) {
        throw alreadyExists(`container "${c.id}"`);
      }
      this.#write(ns, rec, "INSERT");
      return rec;
    });
  }

  /** Applies an update mask the way containerd does (see the proto). */
  update(ns: string, c: Container, paths: readonly string[]): Container {
    return this.#db.tx(() => {
      const cur = this.get(ns, c.id);
      const next = create(ContainerSchema, cur);
      if (paths.length === 0) {
        if (c.runtime?.name && c.runtime.name !== cur.runtime?.name) {
          throw invalidArgument(`container "${c.id}": runtime field is immutable`);
        }
        if (c.snapshotter && c.snapshotter !== cur.snapshotter) {
          throw invalidArgument(`container "${c.id}": snapshotter field is immutable`);
        }
        next.labels = c.labels;
        next.spec = c.spec;
        next.extensions = c.extensions;
        next.image = c.image;
        next.snapshotKey = c.snapshotKey;
      }
      for (const p of paths) {
        if (p.startsWith("labels.")) {
          const k = p.slice(7);
          const v = c.labels[k];
          if (v === undefined || v === "") delete next.labels[k];
          else next.labels[k] = v;
          continue;
        }
        if (p.startsWith("extensions.")) {
          const k = p.slice(11);
          const v = c.extensions[k];
          if (v === undefined) delete next.extensions[k];
          else next.extensions[k] = v;
          continue;
        }
        switch (p) {
          case "labels":
            next.labels = c.labels;
            break;
          case "spec":
            next.spec = c.spec;
            break;
          case "extensions":
            next.extensions = c.extensions;
            break;
          case "image":
            next.image = c.image;
            break;
          case "snapshotkey":
          case "snapshot_key":
            next.snapshotKey = c.snapshotKey;
            break;
          default:
            throw invalidArgument(`cannot update "${p}" field on container "${c.id}"`);
        }
      }
      validate(next);
      next.updatedAt = timestampFromMs(Date.now());
      this.#write(ns, next, "UPDATE");
      return next;
    });
  }

  delete(ns: string, id: string): void {
    if (this.#db.run("DELETE FROM containers WHERE namespace = ? AND id = ?", ns, id) === 0) {
      throw notFound(`container "${id}"`);
    }
  }

  /** GC roots: each container keeps its snapshot (and its image's content via the image). */
  gcRoots(): GcNode[] {
    return this.#db.all(
      "SELECT namespace, snapshotter, snapshot_key FROM containers WHERE snapshot_key != ''",
    ).map((r) => ({
      kind: `snapshots/${r.snapshotter}`,
      namespace: String(r.namespace),
      id: String(r.snapshot_key),
    }));
  }

  #write(ns: string, c: Container, how: "INSERT" | "UPDATE") {
    const args = [
      c.image,
      c.runtime?.name ?? "",
      c.snapshotter,
      c.snapshotKey,
      toBinary(ContainerSchema, c),
      Number(c.createdAt?.seconds ?? 0n) * 1000,
      Number(c.updatedAt?.seconds ?? 0n) * 1000,
    ] as const;
    if (how === "INSERT") {
      this.#db.run(
        `INSERT INTO containers (image, runtime, snapshotter, snapshot_key, record, created_at, updated_at, namespace, id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ...args,
        ns,
        c.id,
      );
    } else {
      this.#db.run(
        `UPDATE containers SET image = ?, runtime = ?, snapshotter = ?, snapshot_key = ?, record = ?,
         created_at = ?, updated_at = ? WHERE namespace = ? AND id = ?`,
        ...args,
        ns,
        c.id,
      );
    }
  }
}

function validate(c: Container): void {
  validateIdentifier("container", c.id);
  validateLabels(c.labels);
  if (!c.runtime?.name) throw invalidArgument(`container "${c.id}": runtime name must be set`);
  if (!c.spec) throw invalidArgument(`container "${c.id}": spec must be set`);
  if (c.snapshotKey && !c.snapshotter) {
    throw invalidArgument(`container "${c.id}": snapshotter must be set when snapshot key is set`);
  }
}
