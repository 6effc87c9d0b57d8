/**
 * One ingest being written: bytes go straight to `ingest/<sha256(ref)>/data`
 * while a sha256 runs over them; `commit` checks size and digest and renames
 * the file into `blobs/sha256/<hex>`. The same writer serves the gRPC Write
 * stream and (later) the image pull, which streams registry bodies into it.
 */
import { createHash, type Hash } from "node:crypto";
import { failedPrecondition, notFound } from "../core/errdefs.ts";
import { CANONICAL } from "./digest.ts";

/** Progress of an ingest, as containerd's content.Status has it. */
export interface IngestStatus {
  ref: string;
  /** Bytes written so far: where the next write goes. */
  offset: number;
  /** Expected total size, 0 when unknown. */
  total: number;
  /** Expected digest, "" when unknown. */
  expected: string;
  startedAt: Date;
  updatedAt: Date;
}

/** What `commit` did. */
export interface CommitResult {
  digest: string;
  size: number;
  /** True when the blob was already on disk (the ingest's bytes were dropped). */
  existed: boolean;
}

export interface CommitOptions {
  /**
   * Called synchronously once the blob is in place under its digest (renamed
   * or found already there), before any other task can run: the metadata
   * layer records the blob here so that a concurrent delete cannot slip in
   * between the rename and the record. If it throws, commit rethrows.
   */
  link?(digest: string, size: number, existed: boolean): void;
}

/** The ingest's small state file, rewritten atomically when it changes. */
export interface IngestState {
  ref: string;
  total: number;
  expected: string;
  startedAt: string;
}

/** Where a writer lives and how it hands its lock back; given by the store. */
export interface WriterParts {
  ref: string;
  dir: string;
  file: Deno.FsFile;
  hash: Hash;
  offset: number;
  state: IngestState;
  blobPath(digest: string): string;
  /** Called once when the writer stops holding the ingest. */
  release(): void;
}

/** Writes `state` to `<dir>/state.json` through a temporary file and a rename. */
export async function writeIngestState(dir: string, state: IngestState): Promise<void> {
  const tmp = `${dir}/state.json.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(state));
  await Deno.rename(tmp, `${dir}/state.json`);
}

type Phase = "open" | "committed" | "closed" | "aborted";

/**
 * An open ingest. Holds the ref's lock until `commit`, `close` or an abort;
 * only one writer per ref exists at a time.
 */
export class IngestWriter {
  readonly ref: string;
  #parts: WriterParts;
  #file: Deno.FsFile | undefined;
  #hash: Hash;
  #offset: number;
  #state: IngestState;
  #updatedAt = new Date();
  #phase: Phase = "open";
  #final: string | undefined;

  constructor(parts: WriterParts) {
    this.ref = parts.ref;
    this.#parts = parts;
    this.#file = parts.file;
    this.#hash = parts.hash;
    this.#offset = parts.offset;
    this.#state = parts.state;
  }

  /** Where the next write goes (= bytes written). */
  get offset(): number {
    return this.#offset;
  }

  /** True until the writer commits, closes or is aborted. */
  get open(): boolean {
    return this.#phase === "open";
  }

  status(): IngestStatus {
    return {
      ref: this.ref,
      offset: this.#offset,
      total: this.#state.total,
      expected: this.#state.expected,
      startedAt: new Date(this.#state.startedAt),
      updatedAt: this.#updatedAt,
    };
  }

  /** The digest of the bytes written so far (of the blob, once committed). */
  digest(): string {
    if (this.#final) return this.#final;
    return `${CANONICAL}:${this.#hash.copy().digest("hex")}`;
  }

  #need(what: string): Deno.FsFile {
    if (this.#phase === "open" && this.#file) return this.#file;
    if (this.#phase === "aborted") throw notFound(`ingest "${this.ref}" was aborted`);
    throw failedPrecondition(`cannot ${what} ingest "${this.ref}": writer is ${this.#phase}`);
  }

  /** Appends `chunk` at the current offset; returns the bytes written. */
  async write(chunk: Uint8Array): Promise<number> {
    const file = this.#need("write to");
    let done = 0;
    while (done < chunk.length) done += await file.write(chunk.subarray(done));
    this.#hash.update(chunk);
    this.#offset += chunk.length;
    this.#updatedAt = new Date();
    return chunk.length;
  }

  /** Throws away the bytes written so far; only a restart at 0 is supported. */
  async truncate(size = 0): Promise<void> {
    const file = this.#need("truncate");
    if (size !== 0) throw failedPrecondition(`cannot truncate ingest "${this.ref}" to ${size}`);
    await file.truncate(0);
    await file.seek(0, Deno.SeekMode.Start);
    this.#hash = createHash("sha256");
    this.#offset = 0;
    this.#updatedAt = new Date();
  }

  /** Records a new expected size or digest in the ingest's state. */
  async setExpectations(total: number, expected: string): Promise<void> {
    this.#need("update");
    if (
      (total > 0 && total !== this.#state.total) ||
      (expected !== "" && expected !== this.#state.expected)
    ) {
      this.#state = {
        ...this.#state,
        total: total > 0 ? total : this.#state.total,
        expected: expected || this.#state.expected,
      };
      await writeIngestState(this.#parts.dir, this.#state);
    }
  }

  /**
   * Verifies the size (when `size` > 0) and the digest (when `expected` is
   * given), then moves the bytes into the blob store. A mismatch is a failed
   * precondition: nothing is committed and the ingest stays on disk as it
   * was, as containerd's local store leaves it. A blob already on disk makes
   * the ingest's bytes redundant: they are dropped and `existed` is true.
   */
  async commit(size: number, expected: string, opts: CommitOptions = {}): Promise<CommitResult> {
    const file = this.#need("commit");
    this.#file = undefined;
    let actual: number;
    try {
      await file.sync();
      actual = (await file.stat()).size;
    } finally {
      file.close();
    }
    if (size > 0 && size !== actual) {
      this.#finish("closed");
      throw failedPrecondition(`unexpected commit size ${actual}, expected ${size}`);
    }
    const digest = `${CANONICAL}:${this.#hash.digest("hex")}`;
    this.#final = digest;
    if (expected && expected !== digest) {
      this.#finish("closed");
      throw failedPrecondition(`unexpected commit digest ${digest}, expected ${expected}`);
    }
    const target = this.#parts.blobPath(digest);
    const data = `${this.#parts.dir}/data`;
    let existed: boolean;
    try {
      // From the existence check to link() nothing awaits: no other task can
      // delete or publish this digest in between.
      existed = exists(target);
      if (!existed) {
        Deno.chmodSync(data, 0o444);
        Deno.renameSync(data, target);
      }
      opts.link?.(digest, actual, existed);
    } finally {
      this.#finish("committed");
      await Deno.remove(this.#parts.dir, { recursive: true }).catch(() => {});
    }
    if (!existed) {
      // The rename is durable once its directory is.
      const dir = await Deno.open(target.slice(0, target.lastIndexOf("/")), { read: true });
      try {
        await dir.sync();
      } finally {
        dir.close();
      }
    }
    return { digest, size: actual, existed };
  }

  /** Stops writing and releases the ref; the ingest stays resumable on disk. */
  close(): void {
    if (this.#phase !== "open") return;
    // No fsync: a resumed ingest re-hashes whatever bytes survived.
    this.#file?.close();
    this.#file = undefined;
    this.#finish("closed");
  }

  /** Called by the store when the ingest is aborted under this writer. */
  abandon(): void {
    if (this.#phase !== "open") return;
    this.#file?.close();
    this.#file = undefined;
    this.#finish("aborted");
  }

  #finish(phase: Phase): void {
    if (this.#phase !== "open") return;
    this.#phase = phase;
    this.#parts.release();
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
