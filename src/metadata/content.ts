/**
 * Namespaced content: which blobs each namespace sees, with labels and
 * times, over the local store that holds every blob once.
 *
 * containerd's rules (metadata/content.go, "shared" policy):
 * - a blob is visible in a namespace only when recorded there (`content` table);
 * - an ingest belongs to the namespace that opened it (`ingests` table); its
 *   bytes live in the local store under the ref `<namespace>/<ref>`, so two
 *   namespaces never write into one ingest;
 * - opening a writer that names an expected digest already on disk records the
 *   blob in the caller's namespace and answers already exists, so the bytes
 *   are neither sent nor stored twice;
 * - a lease named by the caller holds the ingest while it is written and the
 *   blob once committed.
 * Deleting a namespace's record removes the bytes when no namespace records
 * the blob any more (garbage collection proper comes later).
 */
import { alreadyExists, invalidArgument, isKind, notFound, unavailable } from "../core/errdefs.ts";
import { type Adaptor, parseFilters } from "../core/filters.ts";
import type { Logger } from "../util/log.ts";
import { validateDigest } from "../content/digest.ts";
import type { LocalContentStore, ReadOptions } from "../content/store.ts";
import type { IngestStatus, IngestWriter } from "../content/writer.ts";
import { type Labels, labelsOf, type MetaDb, type Row } from "./db.ts";
import type { LeaseStore } from "./leases.ts";
import { applyLabelPaths, type NamespaceStore, validateLabels } from "./namespaces.ts";

/** A blob as one namespace sees it. */
export interface ContentInfo {
  digest: string;
  size: number;
  createdAt: Date;
  updatedAt: Date;
  labels: Labels;
}

export interface ContentWriterOptions {
  /** Expected size; 0 or absent: unknown. */
  total?: number;
  /** Expected digest; "" or absent: unknown. */
  expected?: string;
  /** A lease (in the same namespace) to hold the ingest and then the blob. */
  lease?: string | undefined;
  /** Labels for a blob recorded because it was already on disk. */
  labels?: Labels;
}

export interface ContentCommitOptions {
  labels?: Labels;
}

function fromRow(r: Row): ContentInfo {
  return {
    digest: String(r.digest),
    size: Number(r.size),
    createdAt: new Date(Number(r.created_at)),
    updatedAt: new Date(Number(r.updated_at)),
    labels: labelsOf(r.labels),
  };
}

function dropEmpty(labels: Labels): Labels {
  return Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== ""));
}

/** Filter fields of a blob: `digest`, `size` and `labels.<key>`. */
export function adaptContent(info: ContentInfo): Adaptor {
  return (path) => {
    const [head, ...rest] = path;
    if (head === "digest" && rest.length === 0) return info.digest;
    if (head === "size" && rest.length === 0) return String(info.size);
    if (head === "labels" && rest.length === 1) return info.labels[rest[0]!];
    return undefined;
  };
}

/** Filter fields of an ingest: `ref` and `expected`. */
export function adaptStatus(st: IngestStatus): Adaptor {
  return (path) => {
    const [head, ...rest] = path;
    if (rest.length > 0) return undefined;
    if (head === "ref") return st.ref;
    if (head === "expected") return st.expected || undefined;
    return undefined;
  };
}

/** The local store's name for a namespace's ingest (namespaces cannot contain "/"). */
function backingRef(ns: string, ref: string): string {
  return `${ns}/${ref}`;
}

export class ContentStore {
  readonly local: LocalContentStore;
  #db: MetaDb;
  #namespaces: NamespaceStore;
  #leases: LeaseStore;
  #log: Logger;

  constructor(
    parts: {
      db: MetaDb;
      namespaces: NamespaceStore;
      leases: LeaseStore;
      local: LocalContentStore;
      log: Logger;
    },
  ) {
    this.#db = parts.db;
    this.#namespaces = parts.namespaces;
    this.#leases = parts.leases;
    this.local = parts.local;
    this.#log = parts.log;
  }

  #row(ns: string, digest: string): Row | undefined {
    return this.#db.get("SELECT * FROM content WHERE namespace = ? AND digest = ?", ns, digest);
  }

  /** True when `digest` is recorded in `ns`. */
  visible(ns: string, digest: string): boolean {
    return this.#row(ns, digest) !== undefined;
  }

  info(ns: string, digest: string): ContentInfo {
    validateDigest(digest);
    const r = this.#row(ns, digest);
    if (!r) throw notFound(`content digest ${digest}`);
    return fromRow(r);
  }

  /** The blobs of `ns` matching any of `filters`, by digest. */
  list(ns: string, filters: readonly string[] = []): ContentInfo[] {
    const filter = parseFilters(filters);
    return this.#db.all("SELECT * FROM content WHERE namespace = ? ORDER BY digest", ns)
      .map(fromRow)
      .filter((i) => filter.match(adaptContent(i)));
  }

  /**
   * Changes labels: all of them (no paths, or path "labels") or the keys
   * named by "labels.<key>" paths. Other fields are immutable.
   */
  update(ns: string, digest: string, labels: Labels, paths: readonly string[]): ContentInfo {
    validateDigest(digest);
    return this.#db.tx(() => {
      const cur = this.info(ns, digest);
      const next = dropEmpty(
        applyLabelPaths(cur.labels, labels, paths, `content info "${digest}"`),
      );
      validateLabels(next);
      const now = Date.now();
      this.#db.run(
        "UPDATE content SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?",
        JSON.stringify(next),
        now,
        ns,
        digest,
      );
      return { ...cur, labels: next, updatedAt: new Date(now) };
    });
  }

  /**
   * Removes the blob from `ns` (and from `lease`). The bytes go at once when
   * no other namespace records the blob.
   */
  delete(ns: string, digest: string, lease?: string): void {
    validateDigest(digest);
    const orphan = this.#db.tx(() => {
      const n = this.#db.run(
        "DELETE FROM content WHERE namespace = ? AND digest = ?",
        ns,
        digest,
      );
      if (n === 0) throw notFound(`content digest ${digest}`);
      if (lease) this.#dropFromLease(ns, lease, "content", digest);
      return !this.#db.get("SELECT 1 FROM content WHERE digest = ? LIMIT 1", digest);
    });
    if (!orphan) return;
    // Still synchronous with the transaction above: no commit can record the
    // digest between the check and the unlink.
    try {
      this.local.deleteSync(digest);
    } catch (e) {
      if (!isKind(e, "not_found")) {
        this.#log.warn("cannot remove blob", { digest, error: e });
      }
    }
  }

  /** Streams a visible blob's bytes. */
  read(ns: string, digest: string, opts: ReadOptions = {}): AsyncGenerator<Uint8Array> {
    this.info(ns, digest);
    return this.local.read(digest, opts);
  }

  #ingestRow(ns: string, ref: string): Row | undefined {
    return this.#db.get("SELECT * FROM ingests WHERE namespace = ? AND ref = ?", ns, ref);
  }

  /** The progress of an ingest of `ns`. */
  async status(ns: string, ref: string): Promise<IngestStatus> {
    if (!this.#ingestRow(ns, ref)) throw notFound(`ingest ref "${ref}"`);
    try {
      return { ...await this.local.status(backingRef(ns, ref)), ref };
    } catch (e) {
      if (isKind(e, "not_found")) throw notFound(`ingest ref "${ref}"`);
      throw e;
    }
  }

  /** The ingests of `ns` matching any of `filters` (fields `ref`, `expected`), by ref. */
  async listStatuses(ns: string, filters: readonly string[] = []): Promise<IngestStatus[]> {
    const filter = parseFilters(filters);
    const out: IngestStatus[] = [];
    for (const r of this.#db.all("SELECT ref FROM ingests WHERE namespace = ? ORDER BY ref", ns)) {
      const ref = String(r.ref);
      let st: IngestStatus;
      try {
        st = { ...await this.local.status(backingRef(ns, ref)), ref };
      } catch (e) {
        if (isKind(e, "not_found")) continue;
        throw e;
      }
      if (filter.match(adaptStatus(st))) out.push(st);
    }
    return out;
  }

  /** Drops an ingest of `ns` and its bytes. */
  async abort(ns: string, ref: string, lease?: string): Promise<void> {
    this.#db.tx(() => {
      if (this.#db.run("DELETE FROM ingests WHERE namespace = ? AND ref = ?", ns, ref) === 0) {
        throw notFound(`ingest ref "${ref}"`);
      }
      if (lease) this.#dropFromLease(ns, lease, "ingests", ref);
    });
    await this.local.abort(backingRef(ns, ref)).catch((e) => {
      if (!isKind(e, "not_found")) throw e;
    });
  }

  #dropFromLease(ns: string, lease: string, type: string, id: string): void {
    try {
      this.#leases.deleteResource(ns, lease, { type, id });
    } catch (e) {
      if (!isKind(e, "not_found")) throw e;
    }
  }

  /**
   * Opens (or resumes) the ingest `ref` in `ns`. Throws already exists when
   * `expected` is already visible in `ns`, or is on disk from another
   * namespace (with a matching size, when `total` is given): then the blob is
   * recorded in `ns` first, as containerd's shared policy does.
   */
  async writer(ns: string, ref: string, opts: ContentWriterOptions = {}): Promise<ContentWriter> {
    if (ref === "") throw invalidArgument("ref must not be empty");
    const total = opts.total ?? 0;
    if (!Number.isSafeInteger(total) || total < 0) {
      throw invalidArgument(`ingest "${ref}": total ${total} must be a size in bytes`);
    }
    const expected = opts.expected ?? "";
    if (expected) validateDigest(expected);
    const lease = opts.lease;
    if (lease) this.#leases.get(ns, lease);
    if (expected) {
      const shared = this.#db.tx(() => {
        this.#namespaces.ensure(ns);
        if (this.#row(ns, expected)) {
          if (lease) this.#leases.addResource(ns, lease, { type: "content", id: expected });
          return true;
        }
        const size = this.local.sizeOf(expected);
        if (size === undefined || (total > 0 && total !== size)) return false;
        this.#insert(ns, expected, size, dropEmpty(opts.labels ?? {}));
        if (lease) this.#leases.addResource(ns, lease, { type: "content", id: expected });
        this.#log.debug("content shared into namespace", { namespace: ns, digest: expected });
        return true;
      });
      if (shared) throw alreadyExists(`content ${expected}`);
    }
    let w: IngestWriter;
    try {
      w = await this.local.writer(backingRef(ns, ref), { total, expected });
    } catch (e) {
      if (isKind(e, "unavailable")) {
        throw unavailable(`ingest ref "${ref}" is locked by another writer`, { cause: e });
      }
      throw e;
    }
    try {
      this.#db.tx(() => {
        this.#namespaces.ensure(ns);
        this.#db.run(
          `INSERT INTO ingests (namespace, ref, expected, total, labels, started_at)
           VALUES (?, ?, ?, ?, '{}', ?)
           ON CONFLICT(namespace, ref) DO UPDATE SET
             expected = CASE WHEN excluded.expected != '' THEN excluded.expected ELSE expected END,
             total = CASE WHEN excluded.total > 0 THEN excluded.total ELSE total END`,
          ns,
          ref,
          expected,
          total,
          w.status().startedAt.getTime(),
        );
        if (lease) this.#leases.addResource(ns, lease, { type: "ingests", id: ref });
      });
    } catch (e) {
      w.close();
      throw e;
    }
    return new ContentWriter({
      ns,
      ref,
      writer: w,
      lease,
      link: (digest, size, labels) => this.#link(ns, ref, digest, size, labels, lease),
    });
  }

  #insert(ns: string, digest: string, size: number, labels: Labels): void {
    validateLabels(labels);
    const now = Date.now();
    this.#db.run(
      `INSERT INTO content (namespace, digest, size, labels, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
      ns,
      digest,
      size,
      JSON.stringify(labels),
      now,
      now,
    );
  }

  /** Records a committed blob in `ns`; false when `ns` had it already. */
  #link(
    ns: string,
    ref: string,
    digest: string,
    size: number,
    labels: Labels,
    lease: string | undefined,
  ): boolean {
    return this.#db.tx(() => {
      this.#namespaces.ensure(ns);
      this.#db.run("DELETE FROM ingests WHERE namespace = ? AND ref = ?", ns, ref);
      if (lease) this.#dropFromLease(ns, lease, "ingests", ref);
      const had = this.#row(ns, digest) !== undefined;
      if (!had) this.#insert(ns, digest, size, labels);
      if (lease) this.#leases.addResource(ns, lease, { type: "content", id: digest });
      return !had;
    });
  }
}

/**
 * A namespace's open ingest. Write chunks at the current offset, then
 * commit with the expected size and digest; close releases the ref so the
 * ingest can be resumed later (by this daemon or after a restart).
 */
export class ContentWriter {
  readonly namespace: string;
  readonly ref: string;
  readonly lease: string | undefined;
  #w: IngestWriter;
  #link: (digest: string, size: number, labels: Labels) => boolean;

  constructor(parts: {
    ns: string;
    ref: string;
    writer: IngestWriter;
    lease: string | undefined;
    link: (digest: string, size: number, labels: Labels) => boolean;
  }) {
    this.namespace = parts.ns;
    this.ref = parts.ref;
    this.lease = parts.lease;
    this.#w = parts.writer;
    this.#link = parts.link;
  }

  /** Where the next write goes (= bytes written so far). */
  get offset(): number {
    return this.#w.offset;
  }

  /** True until the writer commits, closes or its ingest is aborted. */
  get open(): boolean {
    return this.#w.open;
  }

  status(): IngestStatus {
    return { ...this.#w.status(), ref: this.ref };
  }

  /** The digest of the bytes so far (of the blob, after commit). */
  digest(): string {
    return this.#w.digest();
  }

  write(chunk: Uint8Array): Promise<number> {
    return this.#w.write(chunk);
  }

  /** Starts the ingest over at offset 0. */
  truncate(size = 0): Promise<void> {
    return this.#w.truncate(size);
  }

  /** Remembers a newly learnt expected size or digest in the ingest's status. */
  setExpectations(total: number, expected: string): Promise<void> {
    return this.#w.setExpectations(total, expected);
  }

  /**
   * Verifies size (when `size` > 0) and digest (when `expected` is given) and
   * records the blob in the namespace; returns its digest. A mismatch is a
   * failed precondition and commits nothing. When the namespace already had
   * the blob, throws already exists (the bytes are dropped).
   */
  async commit(size: number, expected: string, opts: ContentCommitOptions = {}): Promise<string> {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw invalidArgument(`ingest "${this.ref}": size ${size} must be a size in bytes`);
    }
    if (expected) validateDigest(expected);
    const labels = dropEmpty(opts.labels ?? {});
    validateLabels(labels);
    let added = true;
    const res = await this.#w.commit(size, expected, {
      link: (digest, sz) => {
        added = this.#link(digest, sz, labels);
      },
    });
    if (!added) throw alreadyExists(`content ${res.digest}`);
    return res.digest;
  }

  /** Releases the ref; the bytes written stay for a later resume. */
  close(): void {
    this.#w.close();
  }
}
