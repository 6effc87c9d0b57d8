/**
 * Leases: named holds on resources (content, ingests, snapshots, images) that
 * keep garbage collection away while a client works. A lease expires when its
 * `containerd.io/gc.expire` label (RFC 3339) is in the past.
 */
import { alreadyExists, invalidArgument, notFound } from "../core/errdefs.ts";
import { validateIdentifier } from "../core/identifiers.ts";
import { type Labels, labelsOf, type MetaDb } from "./db.ts";
import type { NamespaceStore } from "./namespaces.ts";
import { validateLabels } from "./namespaces.ts";

export interface Lease {
  id: string;
  createdAt: Date;
  labels: Labels;
}

export interface LeaseResource {
  /** "content", "ingests", "images" or "snapshots/<snapshotter>". */
  type: string;
  id: string;
}

export const EXPIRE_LABEL = "containerd.io/gc.expire";

const RESOURCE_TYPE = /^(content|ingests|images|snapshots\/[A-Za-z0-9_.-]+)$/;

export class LeaseStore {
  #db: MetaDb;
  #namespaces: NamespaceStore;
  constructor(db: MetaDb, namespaces: NamespaceStore) {
    this.#db = db;
    this.#namespaces = namespaces;
  }

  create(ns: string, id: string, labels: Labels = {}): Lease {
    if (id === "") id = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
    validateIdentifier("lease", id);
    validateLabels(labels);
    const exp = labels[EXPIRE_LABEL];
    if (exp !== undefined && Number.isNaN(Date.parse(exp))) {
      throw invalidArgument(
        `lease "${id}": label ${EXPIRE_LABEL}="${exp}" is not an RFC 3339 time`,
      );
    }
    const now = Date.now();
    return this.#db.tx(() => {
      this.#namespaces.ensure(ns);
      if (this.#db.get("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", ns, id)) {
        throw alreadyExists(`lease "${id}"`);
      }
      this.#db.run(
        "INSERT INTO leases (namespace, id, labels, created_at) VALUES (?, ?, ?, ?)",
        ns,
        id,
        JSON.stringify(labels),
        now,
      );
      return { id, createdAt: new Date(now), labels };
    });
  }

  get(ns: string, id: string): Lease {
    const r = this.#db.get("SELECT * FROM leases WHERE namespace = ? AND id = ?", ns, id);
    if (!r) throw notFound(`lease "${id}"`);
    return { id, createdAt: new Date(Number(r.created_at)), labels: labelsOf(r.labels) };
  }

  list(ns: string): Lease[] {
    return this.#db.all("SELECT * FROM leases WHERE namespace = ? ORDER BY created_at, id", ns).map(
      (r) => ({
        id: String(r.id),
        createdAt: new Date(Number(r.created_at)),
        labels: labelsOf(r.labels),
      }),
    );
  }

  /** Deletes the lease; its resources lose that protection (GC decides the rest). */
  delete(ns: string, id: string): void {
    if (this.#db.run("DELETE FROM leases WHERE namespace = ? AND id = ?", ns, id) === 0) {
      throw notFound(`lease "${id}"`);
    }
  }

  addResource(ns: string, id: string, r: LeaseResource): void {
    if (!RESOURCE_TYPE.test(r.type)) {
      throw invalidArgument(`lease "${id}": unsupported resource type "${r.type}"`);
    }
    if (r.id === "") throw invalidArgument(`lease "${id}": resource id must not be empty`);
    this.#db.tx(() => {
      this.get(ns, id);
      this.#db.run(
        "INSERT OR IGNORE INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, ?, ?)",
        ns,
        id,
        r.type,
        r.id,
      );
    });
  }

  deleteResource(ns: string, id: string, r: LeaseResource): void {
    this.#db.tx(() => {
      this.get(ns, id);
      this.#db.run(
        "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?",
        ns,
        id,
        r.type,
        r.id,
      );
    });
  }

  listResources(ns: string, id: string): LeaseResource[] {
    this.get(ns, id);
    return this.#db.all(
      "SELECT type, id FROM lease_resources WHERE namespace = ? AND lease = ? ORDER BY type, id",
      ns,
      id,
    ).map((r) => ({ type: String(r.type), id: String(r.id) }));
  }

  /** True when an unexpired lease in `ns` holds the resource. */
  holds(ns: string, r: LeaseResource, now = Date.now()): boolean {
    for (
      const row of this.#db.all(
        `SELECT l.labels FROM lease_resources r JOIN leases l ON l.namespace = r.namespace AND l.id = r.lease
         WHERE r.namespace = ? AND r.type = ? AND r.id = ?`,
        ns,
        r.type,
        r.id,
      )
    ) {
      const exp = labelsOf(row.labels)[EXPIRE_LABEL];
      if (exp === undefined || Date.parse(exp) > now) return true;
    }
    return false;
  }
}
