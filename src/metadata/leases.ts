/**
 * Leases: named holds on resources (content, ingests, snapshots) that keep
 * garbage collection away while a client works. A lease expires when its
 * `containerd.io/gc.expire` label (RFC 3339) is in the past.
 *
 * As in containerd 1.6: lease ids are free-form (ctr and Go clients make
 * them from a time and random base64), resource types are `content` (a
 * digest), `ingests` (a ref) and `snapshots/<snapshotter>` (a key); other
 * types are not implemented. containerd 1.6 does not lease images.
 */
import { alreadyExists, invalidArgument, notFound, notImplemented } from "../core/errdefs.ts";
import { type Adaptor, parseFilters } from "../core/filters.ts";
import { type Labels, labelsOf, type MetaDb, type Row } from "./db.ts";
import type { NamespaceStore } from "./namespaces.ts";
import { validateLabels } from "./namespaces.ts";
import { digestProblem } from "./images.ts";

export interface Lease {
  id: string;
  createdAt: Date;
  labels: Labels;
}

export interface LeaseResource {
  /** "content", "ingests" or "snapshots/<snapshotter>". */
  type: string;
  id: string;
}

export const EXPIRE_LABEL = "containerd.io/gc.expire";

/** Printable ASCII without spaces: a lease id travels in the `containerd-lease` header. */
const LEASE_ID = /^[\x21-\x7e]+$/;
const MAX_ID = 256;

/** Checks a lease id; containerd stores any non-empty id, berth keeps it header-safe. */
export function validateLeaseId(id: string): string {
  if (id === "") throw invalidArgument("lease id must not be empty");
  if (id.length > MAX_ID) throw invalidArgument(`lease id is longer than ${MAX_ID} characters`);
  if (!LEASE_ID.test(id)) {
    throw invalidArgument(`lease id ${JSON.stringify(id)} must be printable ASCII without spaces`);
  }
  return id;
}

/** A lease id like containerd's random ones: nanoseconds, a dash, random base64url. */
function randomLeaseId(): string {
  const b = crypto.getRandomValues(new Uint8Array(6));
  // Millisecond precision plus random sub-millisecond digits stand in for Go's nanoseconds.
  const ns = (Date.now() % 1000) * 1_000_000 + ((b[3]! << 16 | b[4]! << 8 | b[5]!) % 1_000_000);
  const rnd = btoa(String.fromCharCode(b[0]!, b[1]!, b[2]!)).replaceAll("+", "-").replaceAll(
    "/",
    "_",
  );
  return `${ns}-${rnd}`;
}

/** Validates a resource and returns it in its stored form. */
export function checkResource(lease: string, r: LeaseResource): LeaseResource {
  const [kind, ...rest] = r.type.split("/");
  if (kind === "content" || kind === "ingests") {
    if (rest.length !== 0) {
      throw invalidArgument(`lease "${lease}": invalid resource type "${r.type}"`);
    }
    if (kind === "content") {
      const problem = digestProblem(r.id);
      if (problem) {
        throw invalidArgument(
          `lease "${lease}": invalid content resource id "${r.id}": ${problem}`,
        );
      }
    }
  } else if (kind === "snapshots") {
    if (rest.length !== 1 || rest[0] === "") {
      throw invalidArgument(
        `lease "${lease}": invalid snapshot resource type "${r.type}" (want snapshots/<snapshotter>)`,
      );
    }
  } else {
    throw notImplemented(`lease "${lease}": resource type "${r.type}" not supported yet`);
  }
  if (r.id === "") throw invalidArgument(`lease "${lease}": resource id must not be empty`);
  return { type: r.type, id: r.id };
}

/** Field paths for List filters: `id` and `labels.<key>`, as containerd has them. */
export function adaptLease(l: Lease): Adaptor {
  return (path) => {
    const [head, ...rest] = path;
    if (head === "id") return l.id === "" ? undefined : l.id;
    if (head === "labels") return rest.length === 1 ? l.labels[rest[0]!] : undefined;
    return undefined;
  };
}

function fromRow(r: Row): Lease {
  return {
    id: String(r.id),
    createdAt: new Date(Number(r.created_at)),
    labels: labelsOf(r.labels),
  };
}

export class LeaseStore {
  #db: MetaDb;
  #namespaces: NamespaceStore;
  constructor(db: MetaDb, namespaces: NamespaceStore) {
    this.#db = db;
    this.#namespaces = namespaces;
  }

  /** Creates a lease; an empty id gets a random one. The namespace is created if needed. */
  create(ns: string, id: string, labels: Labels = {}): Lease {
    const generated = id === "";
    if (generated) id = randomLeaseId();
    validateLeaseId(id);
    labels = Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== ""));
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
      while (this.#db.get("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", ns, id)) {
        if (!generated) throw alreadyExists(`lease "${id}"`);
        id = randomLeaseId();
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
    return fromRow(r);
  }

  /** Leases in `ns` matching any of `filters` (containerd syntax), oldest first. */
  list(ns: string, filters: readonly string[] = []): Lease[] {
    const filter = parseFilters(filters);
    return this.#db.all("SELECT * FROM leases WHERE namespace = ? ORDER BY created_at, id", ns)
      .map(fromRow)
      .filter((l) => filter.match(adaptLease(l)));
  }

  /** Deletes the lease; its resources lose that protection (GC decides the rest). */
  delete(ns: string, id: string): void {
    if (this.#db.run("DELETE FROM leases WHERE namespace = ? AND id = ?", ns, id) === 0) {
      throw notFound(`lease "${id}"`);
    }
  }

  /** References a resource from the lease (idempotent). */
  addResource(ns: string, id: string, resource: LeaseResource): void {
    const r = checkResource(id, resource);
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

  /** Drops a resource from the lease; dropping one it does not hold is not an error. */
  deleteResource(ns: string, id: string, resource: LeaseResource): void {
    const r = checkResource(id, resource);
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
