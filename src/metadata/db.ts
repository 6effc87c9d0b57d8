/**
 * The metadata database: one SQLite file (`<root>/meta.db`) in WAL mode.
 * Each part of berth owns a schema module with its own list of migrations
 * (`db.migrate("content", [...])`); the `schema` table records how far each
 * module has come. Append migrations; never edit a released one.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { AsyncLocalStorage } from "node:async_hooks";

/**
 * Durability of commits. By default every commit is synced (synchronous =
 * FULL: one fsync of the WAL, ~5-20 ms on these disks): what a call has
 * answered survives power loss. Inside {@link relaxedDurability} commits are
 * not synced (NORMAL): still atomic and never corrupt (WAL), and a crash of
 * the process loses nothing, but power loss may take back the latest ones.
 * For multi-step operations such as a pull (16 commits for a one-layer image),
 * whose intermediate steps mean nothing to a client: they end with one
 * {@link durably} commit, and since the WAL is appended in order, its fsync
 * makes every earlier commit durable too.
 */
const relaxed = new AsyncLocalStorage<boolean>();
let forceDurable = 0;

/**
 * Runs `fn` with its commits (and, when it returns a promise, those of what
 * it awaits) unsynced; see above.
 */
export function relaxedDurability<T>(fn: () => T): T {
  return relaxed.run(true, fn);
}

/** Runs `fn` (synchronous) with its commits synced, even inside relaxedDurability. */
export function durably<T>(fn: () => T): T {
  forceDurable++;
  try {
    return fn();
  } finally {
    forceDurable--;
  }
}

export const CORE_MIGRATIONS: readonly string[] = [
  // 1: namespaces, images, content records, ingests, leases.
  `
  CREATE TABLE server (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE namespaces (
    name TEXT PRIMARY KEY,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE images (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    name TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    media_type TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    annotations TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
  );
  -- A blob is visible in a namespace only through a row here; the bytes live
  -- once on disk under content/blobs.
  CREATE TABLE content (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, digest)
  );
  CREATE INDEX content_digest ON content(digest);
  CREATE TABLE ingests (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    ref TEXT NOT NULL,
    expected TEXT NOT NULL DEFAULT '',
    total INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    started_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, ref)
  );
  CREATE TABLE leases (
    namespace TEXT NOT NULL REFERENCES namespaces(name),
    id TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
  );
  CREATE TABLE lease_resources (
    namespace TEXT NOT NULL,
    lease TEXT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (namespace, lease, type, id),
    FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE
  );
  `,
];

export type Row = Record<string, SQLInputValue>;
export type Labels = Record<string, string>;

/** Parses a labels column. */
export function labelsOf(s: unknown): Labels {
  return typeof s === "string" && s ? JSON.parse(s) as Labels : {};
}

export class MetaDb {
  readonly db: DatabaseSync;
  #depth = 0;
  #synchronous: "FULL" | "NORMAL" = "FULL";
  #statements = new Map<string, StatementSync>();

  constructor(path: string) {
    this.db = new DatabaseSync(path);
    this.db.exec("PRAGMA journal_mode = WAL");
    // FULL: a committed transaction survives power loss, not only a crash
    // (see relaxedDurability for the exception).
    this.db.exec("PRAGMA synchronous = FULL");
    this.db.exec("PRAGMA foreign_keys = ON");
    this.db.exec("PRAGMA busy_timeout = 5000");
    this.db.exec(
      "CREATE TABLE IF NOT EXISTS schema (module TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    );
    this.migrate("core", CORE_MIGRATIONS);
  }

  /** The schema version of `module` (0 when it never migrated). */
  schemaVersion(module: string): number {
    const row = this.get("SELECT version FROM schema WHERE module = ?", module);
    return row ? Number(row.version) : 0;
  }

  /** Brings `module`'s tables up to date, one transaction per migration. */
  migrate(module: string, migrations: readonly string[]): void {
    const from = this.schemaVersion(module);
    if (from > migrations.length) {
      throw new Error(
        `Cannot open metadata: schema "${module}" is at version ${from}, newer than this berth knows (${migrations.length})`,
      );
    }
    for (let v = from; v < migrations.length; v++) {
      this.tx(() => {
        this.db.exec(migrations[v]!);
        this.run(
          "INSERT INTO schema (module, version) VALUES (?, ?) ON CONFLICT(module) DO UPDATE SET version = excluded.version",
          module,
          v + 1,
        );
      });
    }
  }

  /** Runs `fn` in a transaction (nested calls join the outer one). */
  tx<T>(fn: () => T): T {
    if (this.#depth > 0) {
      this.#depth++;
      try {
        return fn();
      } finally {
        this.#depth--;
      }
    }
    this.#setSynchronous();
    this.db.exec("BEGIN IMMEDIATE");
    this.#depth = 1;
    try {
      const r = fn();
      this.db.exec("COMMIT");
      return r;
    } catch (e) {
      this.db.exec("ROLLBACK");
      throw e;
    } finally {
      this.#depth = 0;
    }
  }

  /** FULL or NORMAL for the next commit, by the caller's durability context. */
  #setSynchronous(): void {
    const want = relaxed.getStore() && forceDurable === 0 ? "NORMAL" : "FULL";
    if (want === this.#synchronous) return;
    this.db.exec(`PRAGMA synchronous = ${want}`);
    this.#synchronous = want;
  }

  /** A prepared statement, kept for the next call with the same SQL. */
  #statement(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      // Some SQL is built per call (IN lists): keep the cache bounded.
      if (this.#statements.size >= 256) this.#statements.clear();
      this.#statements.set(sql, st);
    }
    return st;
  }

  get(sql: string, ...params: SQLInputValue[]): Row | undefined {
    return this.#statement(sql).get(...params) as Row | undefined;
  }

  all(sql: string, ...params: SQLInputValue[]): Row[] {
    return this.#statement(sql).all(...params) as Row[];
  }

  run(sql: string, ...params: SQLInputValue[]): number {
    // Outside a transaction the statement commits by itself.
    if (this.#depth === 0) this.#setSynchronous();
    return Number(this.#statement(sql).run(...params).changes);
  }

  /** A value of the server table, created by `make` on first use. */
  serverValue(key: string, make: () => string): string {
    const row = this.get("SELECT value FROM server WHERE key = ?", key);
    if (row) return String(row.value);
    const v = make();
    this.run("INSERT INTO server (key, value) VALUES (?, ?)", key, v);
    return v;
  }

  close(): void {
    this.db.close();
  }
}
