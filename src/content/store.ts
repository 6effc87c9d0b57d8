/**
 * The local content store: immutable blobs on disk addressed by digest, and
 * resumable ingests addressed by ref.
 *
 * ```
 * <root>/blobs/sha256/<hex>            committed blobs, mode 0444
 * <root>/ingest/<sha256(ref)>/data     the bytes written so far
 * <root>/ingest/<sha256(ref)>/state.json  {ref, total, expected, startedAt}
 * ```
 *
 * It knows nothing of namespaces: src/metadata/content.ts decides what is
 * visible where and names its ingests so that namespaces never share one.
 */
import { createHash } from "node:crypto";
import { invalidArgument, notFound, unavailable } from "../core/errdefs.ts";
import type { Logger } from "../util/log.ts";
import { CANONICAL, splitDigest } from "./digest.ts";
import { type IngestState, type IngestStatus, IngestWriter, writeIngestState } from "./writer.ts";

/** A blob as the disk knows it. */
export interface BlobInfo {
  digest: string;
  size: number;
  /** The file's modification time: when it was committed. */
  committedAt: Date;
}

export interface WriterOptions {
  /** Expected size (0: unknown). A resumed ingest with another total starts over. */
  total?: number;
  /** Expected digest, kept in the ingest's status. */
  expected?: string;
}

export interface ReadOptions {
  offset?: number;
  /** Bytes to read; 0 or absent means to the end. */
  size?: number;
  /** Largest chunk yielded. */
  chunkSize?: number;
}

const READ_CHUNK = 1 << 20;

function sha256Hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

async function readState(dir: string): Promise<IngestState | undefined> {
  try {
    const s = JSON.parse(await Deno.readTextFile(`${dir}/state.json`)) as Partial<IngestState>;
    if (typeof s.ref !== "string" || typeof s.startedAt !== "string") return undefined;
    return {
      ref: s.ref,
      total: typeof s.total === "number" ? s.total : 0,
      expected: typeof s.expected === "string" ? s.expected : "",
      startedAt: s.startedAt,
    };
  } catch {
    return undefined;
  }
}

export class LocalContentStore {
  readonly root: string;
  #log: Logger | undefined;
  /** Open writers by ref: the lock that keeps two writers off one ingest. */
  #active = new Map<string, { writer?: IngestWriter; since: Date }>();

  constructor(root: string, log?: Logger) {
    this.root = root;
    this.#log = log;
    Deno.mkdirSync(`${root}/blobs/${CANONICAL}`, { recursive: true, mode: 0o755 });
    Deno.mkdirSync(`${root}/ingest`, { recursive: true, mode: 0o755 });
  }

  /** The file holding `digest`'s bytes (which may not exist). */
  blobPath(digest: string): string {
    const { algorithm, hex } = splitDigest(digest);
    return `${this.root}/blobs/${algorithm}/${hex}`;
  }

  /**
   * The file an ingest's bytes are written to, in order, while it is open
   * (the pull's unpacker reads a layer from it as it grows). Committing
   * renames it to the blob's path, so an open descriptor keeps reading the
   * same bytes.
   */
  ingestDataPath(ref: string): string {
    return `${this.#ingestDir(ref)}/data`;
  }

  #ingestDir(ref: string): string {
    return `${this.root}/ingest/${sha256Hex(ref)}`;
  }

  /** Size and commit time of a blob on disk. */
  async info(digest: string): Promise<BlobInfo> {
    try {
      const st = await Deno.stat(this.blobPath(digest));
      return { digest, size: st.size, committedAt: st.mtime ?? new Date(0) };
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw notFound(`content digest ${digest}`);
      throw e;
    }
  }

  /** True when the blob is on disk (synchronous, for use inside transactions). */
  has(digest: string): boolean {
    try {
      return Deno.statSync(this.blobPath(digest)).isFile;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
      throw e;
    }
  }

  /** The blob's size on disk, or undefined when it is absent. */
  sizeOf(digest: string): number | undefined {
    try {
      return Deno.statSync(this.blobPath(digest)).size;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
  }

  /** Streams `size` bytes of a blob from `offset`, in fresh chunks. */
  async *read(digest: string, opts: ReadOptions = {}): AsyncGenerator<Uint8Array> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.blobPath(digest), { read: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw notFound(`content digest ${digest}`);
      throw e;
    }
    try {
      const chunk = opts.chunkSize ?? READ_CHUNK;
      let left = opts.size && opts.size > 0 ? opts.size : Infinity;
      if (opts.offset) await file.seek(opts.offset, Deno.SeekMode.Start);
      while (left > 0) {
        const buf = new Uint8Array(Math.min(chunk, left));
        let filled = 0;
        while (filled < buf.length) {
          const n = await file.read(buf.subarray(filled));
          if (n === null) break;
          filled += n;
        }
        if (filled === 0) return;
        left -= filled;
        yield filled === buf.length ? buf : buf.subarray(0, filled);
        if (filled < buf.length) return;
      }
    } finally {
      file.close();
    }
  }

  /** Removes a blob's bytes. Synchronous so callers can pair it with a metadata change. */
  deleteSync(digest: string): void {
    try {
      Deno.removeSync(this.blobPath(digest));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw notFound(`content digest ${digest}`);
      throw e;
    }
  }

  /** Every blob on disk. */
  async *walk(): AsyncGenerator<BlobInfo> {
    for await (const alg of Deno.readDir(`${this.root}/blobs`)) {
      if (!alg.isDirectory) continue;
      for await (const e of Deno.readDir(`${this.root}/blobs/${alg.name}`)) {
        if (!e.isFile) continue;
        const digest = `${alg.name}:${e.name}`;
        try {
          yield await this.info(digest);
        } catch { /* removed meanwhile, or not a blob name */ }
      }
    }
  }

  /**
   * Opens the ingest `ref` for writing, resuming it at the end of the bytes
   * already on disk (re-hashed on open). Only one writer per ref: a second
   * one gets unavailable until the first commits or closes.
   */
  async writer(ref: string, opts: WriterOptions = {}): Promise<IngestWriter> {
    if (ref === "") throw invalidArgument("ref must not be empty");
    const held = this.#active.get(ref);
    if (held) {
      throw unavailable(`ref ${ref} locked since ${held.since.toISOString()}`);
    }
    const lock: { writer?: IngestWriter; since: Date } = { since: new Date() };
    this.#active.set(ref, lock);
    const release = () => {
      if (this.#active.get(ref) === lock) this.#active.delete(ref);
    };
    try {
      const w = await this.#open(ref, opts.total ?? 0, opts.expected ?? "", release);
      lock.writer = w;
      return w;
    } catch (e) {
      release();
      throw e;
    }
  }

  async #open(
    ref: string,
    total: number,
    expected: string,
    release: () => void,
  ): Promise<IngestWriter> {
    const dir = this.#ingestDir(ref);
    await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
    let state = await readState(dir);
    if (state && state.ref !== ref) {
      this.#log?.warn("ingest state names another ref; starting over", {
        ref,
        found: state.ref,
      });
      state = undefined;
    } else if (state && total > 0 && state.total > 0 && total !== state.total) {
      // containerd's local store does the same: the old bytes were meant for
      // another blob, so the ingest starts over.
      this.#log?.info("ingest resumed with another total; starting over", {
        ref,
        total,
        was: state.total,
      });
      state = undefined;
    }
    const hash = createHash("sha256");
    let file: Deno.FsFile;
    let offset = 0;
    if (state) {
      file = await Deno.open(`${dir}/data`, { read: true, write: true, create: true });
      try {
        const buf = new Uint8Array(READ_CHUNK);
        for (;;) {
          const n = await file.read(buf);
          if (n === null) break;
          hash.update(buf.subarray(0, n));
          offset += n;
        }
        await file.seek(offset, Deno.SeekMode.Start);
      } catch (e) {
        file.close();
        throw e;
      }
      if ((total > 0 && state.total !== total) || (expected && state.expected !== expected)) {
        state = { ...state, total: total || state.total, expected: expected || state.expected };
        await writeIngestState(dir, state);
      }
    } else {
      state = { ref, total, expected, startedAt: new Date().toISOString() };
      await writeIngestState(dir, state);
      file = await Deno.open(`${dir}/data`, {
        read: true,
        write: true,
        create: true,
        truncate: true,
      });
    }
    return new IngestWriter({
      ref,
      dir,
      file,
      hash,
      offset,
      state,
      blobPath: (d) => this.blobPath(d),
      release,
    });
  }

  /** True when a writer holds `ref` right now. */
  isActive(ref: string): boolean {
    return this.#active.has(ref);
  }

  /** The progress of an ingest, whether a writer holds it or not. */
  async status(ref: string): Promise<IngestStatus> {
    const live = this.#active.get(ref)?.writer;
    if (live?.open) return live.status();
    const dir = this.#ingestDir(ref);
    const state = await readState(dir);
    if (!state || state.ref !== ref) throw notFound(`ingest ref "${ref}"`);
    let st: Deno.FileInfo;
    try {
      st = await Deno.stat(`${dir}/data`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw notFound(`ingest ref "${ref}"`);
      throw e;
    }
    return {
      ref,
      offset: st.size,
      total: state.total,
      expected: state.expected,
      startedAt: new Date(state.startedAt),
      updatedAt: st.mtime ?? new Date(state.startedAt),
    };
  }

  /** Every ingest on disk with readable state. */
  async listStatuses(): Promise<IngestStatus[]> {
    const out: IngestStatus[] = [];
    for await (const e of Deno.readDir(`${this.root}/ingest`)) {
      if (!e.isDirectory) continue;
      const state = await readState(`${this.root}/ingest/${e.name}`);
      if (!state) continue;
      try {
        out.push(await this.status(state.ref));
      } catch { /* committed or aborted meanwhile */ }
    }
    return out;
  }

  /** Drops an ingest and its bytes; a writer holding it stops working. */
  async abort(ref: string): Promise<void> {
    const lock = this.#active.get(ref);
    lock?.writer?.abandon();
    const dir = this.#ingestDir(ref);
    try {
      await Deno.remove(dir, { recursive: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw notFound(`ingest ref "${ref}"`);
      throw e;
    }
  }
}
