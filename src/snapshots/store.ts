/**
 * The namespaced metadata of a snapshotter, in the shared SQLite database,
 * over a storage {@link Backend} that only knows global ids. This is
 * containerd's metadata snapshotter and its storage layer in one: keys,
 * parents, kinds, labels and times live here; directories and mounts in the
 * backend.
 *
 * Order of work: a new snapshot's row is written (reserving its key and id)
 * before its storage is made, and its storage is deleted after its row is
 * gone, so storage without a row is always garbage (see `cleanup`).
 */
import type { Mount } from "../mount/mod.ts";
import {
  alreadyExists,
  failedPrecondition,
  invalidArgument,
  isKind,
  notFound,
} from "../core/errdefs.ts";
import { type Filter, parseFilters } from "../core/filters.ts";
import { type Labels, labelsOf, type MetaDb, type Row } from "../metadata/db.ts";
import {
  addNamespaceHolder,
  applyLabelPaths,
  type NamespaceStore,
  validateLabels,
} from "../metadata/namespaces.ts";
import type { LeaseStore } from "../metadata/leases.ts";
import type { Logger } from "../util/log.ts";
import {
  type CreateOptions,
  type Info,
  type Kind,
  type Scope,
  type Snapshotter,
  TARGET_LABEL,
  type Usage,
} from "./snapshotter.ts";

export const SNAPSHOT_MIGRATIONS: readonly string[] = [
  // 1: one row per snapshot of every snapshotter. `id` names the storage
  // (global, never reused: AUTOINCREMENT); `key` is per namespace.
  `
  CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    snapshotter TEXT NOT NULL,
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    key TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
    parent_id INTEGER REFERENCES snapshots(id),
    labels TEXT NOT NULL DEFAULT '{}',
    size INTEGER NOT NULL DEFAULT -1,
    inodes INTEGER NOT NULL DEFAULT -1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (snapshotter, namespace, key)
  );
  CREATE INDEX snapshots_parent ON snapshots(parent_id);
  `,
];

/** Where and how a snapshotter keeps the trees themselves. */
export interface Backend {
  readonly root: string;
  /** Makes the storage of snapshot `id`; `parents` are ids, nearest first. */
  create(id: number, kind: "active" | "view", parents: readonly number[]): Promise<void>;
  mounts(id: number, kind: "active" | "view", parents: readonly number[]): Mount[];
  /** Usage of the snapshot's own storage. */
  usage(id: number): Promise<Usage>;
  remove(id: number): Promise<void>;
  /** The ids that have storage on disk. */
  list(): Promise<number[]>;
}

export interface StoreOptions {
  name: string;
  backend: Backend;
  db: MetaDb;
  namespaces: NamespaceStore;
  leases: LeaseStore;
  log: Logger;
}

function rowInfo(r: Row): Info {
  return {
    name: String(r.key),
    parent: r.parent_key == null ? "" : String(r.parent_key),
    kind: String(r.kind) as Kind,
    labels: labelsOf(r.labels),
    createdAt: new Date(Number(r.created_at)),
    updatedAt: new Date(Number(r.updated_at)),
  };
}

/** containerd's snapshot filter fields: kind, name, parent, labels.<key>. */
function matches(filter: Filter, info: Info): boolean {
  return filter.match((path) => {
    switch (path[0]) {
      case "kind":
        return info.kind;
      case "name":
        return info.name;
      case "parent":
        return info.parent;
      case "labels":
        return path.length > 1 ? info.labels[path.slice(1).join(".")] : undefined;
    }
    return undefined;
  });
}

const SELECT = `SELECT s.*, p.key AS parent_key FROM snapshots s
  LEFT JOIN snapshots p ON p.id = s.parent_id`;

/** A snapshotter: namespaced metadata over a backend. */
export class SnapshotStore implements Snapshotter {
  readonly name: string;
  readonly #backend: Backend;
  readonly #db: MetaDb;
  readonly #namespaces: NamespaceStore;
  readonly #leases: LeaseStore;
  readonly #log: Logger;

  constructor(opts: StoreOptions) {
    this.name = opts.name;
    this.#backend = opts.backend;
    this.#db = opts.db;
    this.#namespaces = opts.namespaces;
    this.#leases = opts.leases;
    this.#log = opts.log.with({ snapshotter: opts.name });
    this.#db.migrate("snapshots", SNAPSHOT_MIGRATIONS);
    addNamespaceHolder("snapshots", "snapshots");
  }

  get root(): string {
    return this.#backend.root;
  }

  get #leaseType(): string {
    return `snapshots/${this.name}`;
  }

  #row(ns: string, key: string): Row | undefined {
    return this.#db.get(
      `${SELECT} WHERE s.snapshotter = ? AND s.namespace = ? AND s.key = ?`,
      this.name,
      ns,
      key,
    );
  }

  #must(ns: string, key: string): Row {
    if (key === "") throw invalidArgument("snapshot key must not be empty");
    const r = this.#row(ns, key);
    if (!r) throw notFound(`snapshot "${key}"`);
    return r;
  }

  /** Drops `key` from the call's lease; a lease that is gone holds nothing to drop. */
  #release(scope: Scope, key: string): void {
    if (!scope.lease) return;
    try {
      this.#leases.deleteResource(scope.namespace, scope.lease, { type: this.#leaseType, id: key });
    } catch (e) {
      if (!isKind(e, "not_found")) throw e;
    }
  }

  /** Ids of the snapshot's ancestors, nearest first. */
  #parents(parentId: number | null): number[] {
    if (parentId === null) return [];
    return this.#db.all(
      `WITH RECURSIVE chain(id, parent_id, depth) AS (
         SELECT id, parent_id, 0 FROM snapshots WHERE id = ?
         UNION ALL
         SELECT s.id, s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent_id
       ) SELECT id FROM chain ORDER BY depth`,
      parentId,
    ).map((r) => Number(r.id));
  }

  // async: every refusal reaches the caller as a rejected promise.
  async stat(scope: Scope, key: string): Promise<Info> {
    return await Promise.resolve(rowInfo(this.#must(scope.namespace, key)));
  }

  async update(
    scope: Scope,
    info: { name: string; labels: Labels },
    paths: readonly string[] = [],
  ): Promise<Info> {
    if (info.name === "") throw invalidArgument("snapshot name must be given for an update");
    const ns = scope.namespace;
    return await Promise.resolve(this.#db.tx(() => {
      const r = this.#must(ns, info.name);
      const next = applyLabelPaths(
        labelsOf(r.labels),
        info.labels,
        paths,
        `snapshot "${info.name}"`,
      );
      validateLabels(next);
      this.#db.run(
        "UPDATE snapshots SET labels = ?, updated_at = ? WHERE id = ?",
        JSON.stringify(next),
        Date.now(),
        Number(r.id),
      );
      return rowInfo(this.#must(ns, info.name));
    }));
  }

  async usage(scope: Scope, key: string): Promise<Usage> {
    const r = this.#must(scope.namespace, key);
    if (r.kind === "committed" && Number(r.size) >= 0) {
      return { size: Number(r.size), inodes: Number(r.inodes) };
    }
    return await this.#backend.usage(Number(r.id));
  }

  async mounts(scope: Scope, key: string): Promise<Mount[]> {
    const r = this.#must(scope.namespace, key);
    const kind = String(r.kind) as Kind;
    if (kind === "committed") {
      throw failedPrecondition(
        `snapshot "${key}" is committed; only active snapshots and views have mounts`,
      );
    }
    const parents = this.#parents(r.parent_id == null ? null : Number(r.parent_id));
    return await Promise.resolve(this.#backend.mounts(Number(r.id), kind, parents));
  }

  async prepare(scope: Scope, key: string, opts: CreateOptions = {}): Promise<Mount[]> {
    return await this.#create(scope, key, "active", opts);
  }

  async view(scope: Scope, key: string, opts: CreateOptions = {}): Promise<Mount[]> {
    return await this.#create(scope, key, "view", opts);
  }

  async #create(
    scope: Scope,
    key: string,
    kind: "active" | "view",
    opts: CreateOptions,
  ): Promise<Mount[]> {
    const ns = scope.namespace;
    const parent = opts.parent ?? "";
    const labels = opts.labels ?? {};
    if (key === "") throw invalidArgument("snapshot key must not be empty");
    validateLabels(labels);
    const what = kind === "active" ? "prepare" : "create view";
    const { id, parents } = this.#db.tx(() => {
      this.#namespaces.ensure(ns);
      const target = labels[TARGET_LABEL];
      if (target && this.#row(ns, target)) throw alreadyExists(`target snapshot "${target}"`);
      if (this.#row(ns, key)) throw alreadyExists(`snapshot "${key}"`);
      let parentId: number | null = null;
      if (parent !== "") {
        const p = this.#row(ns, parent);
        if (!p) throw notFound(`cannot ${what} snapshot "${key}": parent snapshot "${parent}"`);
        if (p.kind !== "committed") {
          throw failedPrecondition(
            `cannot ${what} snapshot "${key}": parent "${parent}" is ${p.kind}, not committed`,
          );
        }
        parentId = Number(p.id);
      }
      const now = Date.now();
      const row = this.#db.get(
        `INSERT INTO snapshots (snapshotter, namespace, key, kind, parent_id, labels, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
        this.name,
        ns,
        key,
        kind,
        parentId,
        JSON.stringify(labels),
        now,
        now,
      );
      if (scope.lease) {
        this.#leases.addResource(ns, scope.lease, { type: this.#leaseType, id: key });
      }
      return { id: Number(row!.id), parents: this.#parents(parentId) };
    });
    try {
      await this.#backend.create(id, kind, parents);
    } catch (e) {
      this.#db.tx(() => {
        this.#db.run("DELETE FROM snapshots WHERE id = ?", id);
        this.#release(scope, key);
      });
      await this.#backend.remove(id).catch(() => {});
      throw e;
    }
    this.#log.debug("snapshot created", { namespace: ns, key, kind, id, parent });
    return this.#backend.mounts(id, kind, parents);
  }

  async commit(
    scope: Scope,
    name: string,
    key: string,
    opts: { labels?: Labels } = {},
  ): Promise<void> {
    const ns = scope.namespace;
    const labels = opts.labels ?? {};
    if (name === "") throw invalidArgument("committed snapshot name must not be empty");
    validateLabels(labels);
    const check = () => {
      const r = this.#must(ns, key);
      if (r.kind !== "active") {
        throw failedPrecondition(`cannot commit snapshot "${key}": it is ${r.kind}, not active`);
      }
      if (this.#row(ns, name)) throw alreadyExists(`snapshot "${name}"`);
      return r;
    };
    const id = Number(check().id);
    // Measured once now: a committed snapshot never changes again.
    const usage = await this.#backend.usage(id);
    this.#db.tx(() => {
      const r = check();
      if (Number(r.id) !== id) throw notFound(`snapshot "${key}"`);
      const now = Date.now();
      this.#db.run(
        `UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, size = ?, inodes = ?,
         created_at = ?, updated_at = ? WHERE id = ?`,
        name,
        JSON.stringify(labels),
        usage.size,
        usage.inodes,
        now,
        now,
        id,
      );
      if (scope.lease) {
        this.#leases.addResource(ns, scope.lease, { type: this.#leaseType, id: name });
        this.#release(scope, key);
      }
    });
    this.#log.debug("snapshot committed", { namespace: ns, key, name, id });
  }

  async remove(scope: Scope, key: string): Promise<void> {
    const ns = scope.namespace;
    const id = this.#db.tx(() => {
      const r = this.#must(ns, key);
      const children = this.#db.all(
        "SELECT key FROM snapshots WHERE parent_id = ? ORDER BY key LIMIT 4",
        Number(r.id),
      ).map((c) => `"${c.key}"`);
      if (children.length > 0) {
        throw failedPrecondition(
          `cannot remove snapshot "${key}": it is the parent of ${children.join(", ")}`,
        );
      }
      this.#db.run("DELETE FROM snapshots WHERE id = ?", Number(r.id));
      this.#release(scope, key);
      return Number(r.id);
    });
    try {
      await this.#backend.remove(id);
    } catch (e) {
      // The row is gone: cleanup() will find the storage again.
      this.#log.warn("cannot remove snapshot storage yet", { key, id, error: e });
    }
    this.#log.debug("snapshot removed", { namespace: ns, key, id });
  }

  async walk(scope: Scope, filters: readonly string[] = []): Promise<Info[]> {
    const filter = parseFilters(filters);
    const rows = this.#db.all(
      `${SELECT} WHERE s.snapshotter = ? AND s.namespace = ? ORDER BY s.key`,
      this.name,
      scope.namespace,
    );
    return await Promise.resolve(rows.map(rowInfo).filter((i) => matches(filter, i)));
  }

  async cleanup(): Promise<void> {
    const onDisk = await this.#backend.list();
    const known = new Set(
      this.#db.all("SELECT id FROM snapshots WHERE snapshotter = ?", this.name).map((r) =>
        Number(r.id)
      ),
    );
    for (const id of onDisk) {
      if (known.has(id)) continue;
      this.#log.info("removing orphaned snapshot storage", { id });
      await this.#backend.remove(id);
    }
  }
}
