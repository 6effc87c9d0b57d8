/**
 * Namespaces: created explicitly or implicitly by the first object stored in
 * them; removable only when empty.
 */
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from "../core/errdefs.ts";
import { type Labels, labelsOf, type MetaDb } from "./db.ts";
import { validateIdentifier } from "../core/identifiers.ts";

export interface Namespace {
  name: string;
  labels: Labels;
}

/** The tables whose rows keep a namespace from being removed, and what to call them. */
const HOLDERS: Array<[table: string, what: string]> = [
  ["images", "images"],
  ["content", "blobs"],
  ["ingests", "ingests"],
  ["leases", "leases"],
];

/** Registers more tables holding namespaced objects (containers, snapshots, ...). */
export function addNamespaceHolder(table: string, what: string): void {
  if (!HOLDERS.some(([t]) => t === table)) HOLDERS.push([table, what]);
}

export class NamespaceStore {
  #db: MetaDb;
  constructor(db: MetaDb) {
    this.#db = db;
  }

  get(name: string): Namespace {
    const row = this.#db.get("SELECT name, labels FROM namespaces WHERE name = ?", name);
    if (!row) throw notFound(`namespace "${name}"`);
    return { name: String(row.name), labels: labelsOf(row.labels) };
  }

  list(): Namespace[] {
    return this.#db.all("SELECT name, labels FROM namespaces ORDER BY name").map((r) => ({
      name: String(r.name),
      labels: labelsOf(r.labels),
    }));
  }

  create(name: string, labels: Labels = {}): Namespace {
    validateIdentifier("namespace", name);
    validateLabels(labels);
    const now = Date.now();
    try {
      this.#db.run(
        "INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES (?, ?, ?, ?)",
        name,
        JSON.stringify(labels),
        now,
        now,
      );
    } catch (e) {
      if (String(e).includes("UNIQUE")) throw alreadyExists(`namespace "${name}"`);
      throw e;
    }
    return { name, labels };
  }

  /** Creates the namespace if it does not exist; true when it was created. */
  ensure(name: string): boolean {
    validateIdentifier("namespace", name);
    const now = Date.now();
    return this.#db.run(
      "INSERT OR IGNORE INTO namespaces (name, labels, created_at, updated_at) VALUES (?, '{}', ?, ?)",
      name,
      now,
      now,
    ) > 0;
  }

  /** Sets labels: all of them, or only the `labels.<key>` paths given. */
  update(name: string, labels: Labels, paths: readonly string[]): Namespace {
    validateLabels(labels);
    return this.#db.tx(() => {
      const cur = this.get(name);
      const next = applyLabelPaths(cur.labels, labels, paths, `namespace "${name}"`);
      this.#db.run(
        "UPDATE namespaces SET labels = ?, updated_at = ? WHERE name = ?",
        JSON.stringify(next),
        Date.now(),
        name,
      );
      return { name, labels: next };
    });
  }

  delete(name: string): void {
    this.#db.tx(() => {
      this.get(name);
      const held: string[] = [];
      for (const [table, what] of HOLDERS) {
        const row = this.#db.get(`SELECT count(*) AS n FROM ${table} WHERE namespace = ?`, name);
        if (row && Number(row.n) > 0) held.push(`${row.n} ${what}`);
      }
      if (held.length > 0) {
        throw failedPrecondition(
          `namespace "${name}" must be empty, but it still holds ${held.join(", ")}`,
        );
      }
      this.#db.run("DELETE FROM namespaces WHERE name = ?", name);
    });
  }
}

const MAX_LABEL = 4096;

/** containerd's label rules: non-empty keys, key+value at most 4096 bytes. */
export function validateLabels(labels: Labels): void {
  for (const [k, v] of Object.entries(labels)) {
    if (k === "") throw invalidArgument("label key must not be empty");
    if (k.length + v.length > MAX_LABEL) {
      throw invalidArgument(`label "${k.slice(0, 64)}" is longer than ${MAX_LABEL} bytes`);
    }
  }
}

/**
 * Applies an update mask to a label set. No paths: replace all labels. Path
 * "labels": replace all. Path "labels.<key>": set (or remove when absent from
 * `update`) one key. Any other path is refused.
 */
export function applyLabelPaths(
  current: Labels,
  update: Labels,
  paths: readonly string[],
  what: string,
  allowed: readonly string[] = [],
): Labels {
  if (paths.length === 0) return { ...update };
  let next = { ...current };
  for (const p of paths) {
    if (p === "labels") next = { ...update };
    else if (p.startsWith("labels.")) {
      const key = p.slice("labels.".length);
      const v = update[key];
      if (v === undefined || v === "") delete next[key];
      else next[key] = v;
    } else if (!allowed.includes(p)) {
      throw invalidArgument(`cannot update ${p} field on ${what}`);
    }
  }
  return next;
}
