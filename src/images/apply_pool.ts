/**
 * A small pool of layer-apply workers (apply_worker.ts). Each job applies one
 * layer blob, read from its file in the content store, into a directory; a
 * pool of N workers applies up to N layers at once on N cores. Workers start
 * on first use and stop after a short idle time, so an idle daemon does not
 * keep their memory (each costs about 20 MB).
 *
 * Small layers (under 4 MiB compressed) are applied on the calling thread:
 * starting a worker would take longer. So are all layers when the worker
 * module cannot be found (a one-file bundle does not ship it): slower, same
 * result.
 */
import {
  applyLayer,
  type ApplyMode,
  type ApplyResult,
  LowersNeededError,
} from "../archive/apply.ts";
import { BerthError, type ErrorKind } from "../core/errdefs.ts";

/** One layer to apply (the message a worker receives). */
export interface ApplyJob {
  id: number;
  /** Path of the blob file (tar, tar+gzip or tar+zstd). */
  blob: string;
  /** The blob's size: how many bytes of it are read. */
  size: number;
  /**
   * An ingest file the blob's bytes are still being appended to: read from
   * it as it grows, waiting for more, until `size` bytes (or from `blob` if
   * it was committed meanwhile).
   */
  follow?: string;
  target: string;
  mode: ApplyMode;
  parents: string[];
  isolated: boolean;
  expectedDiffId?: string;
}

/** A worker's answer. */
export type ApplyReply =
  | { id: number; ok: true; diffId: string; size: number; warnings: string[] }
  | {
    id: number;
    ok: false;
    kind: ErrorKind;
    message: string;
    lowersNeeded: boolean;
    code: string | undefined;
    warnings: string[];
  };

/** What a caller gives {@link ApplyPool.apply}. */
export type ApplyRequest = Omit<ApplyJob, "id"> & {
  signal?: AbortSignal;
  onWarning?: (message: string) => void;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens `path`, or undefined when it is not there. */
async function openIf(path: string): Promise<Deno.FsFile | undefined> {
  try {
    return await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * The first `job.size` bytes of a layer blob: from the ingest file being
 * written (`job.follow`), waiting while it grows, or from the committed blob.
 * Stops when `signal` aborts (the download failed or the pull was canceled).
 */
export async function* readBlob(
  job: Pick<ApplyJob, "blob" | "size" | "follow">,
  signal: AbortSignal,
): AsyncGenerator<Uint8Array> {
  let file: Deno.FsFile | undefined;
  let wait = 1;
  const pause = async () => {
    if (signal.aborted) {
      throw new BerthError("canceled", "Cannot apply layer: canceled", { cause: signal.reason });
    }
    await sleep(wait);
    wait = Math.min(wait * 2, 20);
  };
  // The ingest is renamed to the blob on commit: one of the two is there.
  while (!file) {
    file = (job.follow ? await openIf(job.follow) : undefined) ?? await openIf(job.blob);
    if (!file && !job.follow) {
      throw new BerthError("not_found", `Cannot apply layer: blob file "${job.blob}": not found`);
    }
    if (!file) await pause();
  }
  try {
    let got = 0;
    while (got < job.size) {
      const buf = new Uint8Array(Math.min(READ_CHUNK, job.size - got));
      const n = await file.read(buf);
      if (!n) {
        if (!job.follow) {
          throw new BerthError(
            "data_loss",
            `Cannot apply layer: blob file "${job.blob}" ends at ${got} of ${job.size} bytes`,
          );
        }
        await pause();
        continue;
      }
      wait = 1;
      got += n;
      yield n === buf.length ? buf : buf.subarray(0, n);
    }
  } finally {
    file.close();
  }
}

const READ_CHUNK = 128 * 1024; // see CHUNK in src/archive/compression.ts
/** Layers smaller than this (compressed) are applied on the calling thread. */
const INLINE_MAX = 4 * 1024 * 1024;
/**
 * Never called: it makes a bundler emit the worker module as a chunk of its
 * own (`apply_worker-HASH.js` beside this code), which {@link workerUrl} finds.
 */
export const workerChunk = () => import("./apply_worker.ts");

/**
 * The worker module: apply_worker.ts beside this file (source), or the
 * bundle's chunk of it; undefined when neither is there.
 */
function workerUrl(): URL | undefined {
  const here = new URL(".", import.meta.url);
  const source = new URL("./apply_worker.ts", import.meta.url);
  if (source.protocol !== "file:") return source;
  try {
    if (Deno.statSync(source).isFile) return source;
  } catch { /* not a source tree: look for the bundle's chunk */ }
  try {
    for (const e of Deno.readDirSync(here)) {
      if (/^apply_worker-[A-Za-z0-9]+\.js$/.test(e.name)) return new URL(e.name, here);
    }
  } catch { /* unreadable: run inline */ }
  return undefined;
}
const IDLE_MS = 5_000;

interface Slot {
  worker: Worker;
  busy: boolean;
  /** The job it runs now. */
  job?: number;
  idle?: ReturnType<typeof setTimeout>;
}

/** Applies layers on worker threads, at most `size` at a time. */
export class ApplyPool {
  readonly size: number;
  #slots: Slot[] = [];
  #waiting: Array<() => void> = [];
  #replies = new Map<number, (r: ApplyReply) => void>();
  #nextId = 1;
  #url: URL | null | undefined;
  #inlineBelow: number;

  /**
   * `size`: workers at most (default: the cores, up to 2); `inlineBelow`:
   * compressed size under which a layer is applied on the calling thread.
   */
  constructor(opts: { size?: number; inlineBelow?: number } = {}) {
    this.size = opts.size ?? Math.max(1, Math.min(2, navigator.hardwareConcurrency || 1));
    this.#inlineBelow = opts.inlineBelow ?? INLINE_MAX;
  }

  /** Applies one layer; rejects with the apply's error (kind and message kept). */
  async apply(req: ApplyRequest): Promise<ApplyResult> {
    // A small layer is done sooner here than a worker would start (~0.1 s).
    if (req.size < this.#inlineBelow || !this.#workersUsable()) return await this.#inline(req);
    const slot = await this.#acquire();
    const id = this.#nextId++;
    const job: ApplyJob = {
      id,
      blob: req.blob,
      size: req.size,
      ...(req.follow ? { follow: req.follow } : {}),
      target: req.target,
      mode: req.mode,
      parents: req.parents,
      isolated: req.isolated,
      ...(req.expectedDiffId ? { expectedDiffId: req.expectedDiffId } : {}),
    };
    const onAbort = () => slot.worker.postMessage({ cancel: id });
    req.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const reply = await new Promise<ApplyReply>((resolve) => {
        this.#replies.set(id, resolve);
        slot.job = id;
        slot.worker.postMessage(job);
      });
      for (const w of reply.warnings) req.onWarning?.(w);
      if (reply.ok) return { diffId: reply.diffId, size: reply.size };
      if (reply.lowersNeeded) throw new LowersNeededError(reply.message);
      const err = new BerthError(reply.kind, reply.message);
      if (reply.code) (err as { code?: string }).code = reply.code;
      throw err;
    } finally {
      req.signal?.removeEventListener("abort", onAbort);
      this.#replies.delete(id);
      this.#release(slot);
    }
  }

  /** Stops every worker now (daemon shutdown). */
  close(): void {
    for (const s of this.#slots) {
      clearTimeout(s.idle);
      s.worker.terminate();
    }
    this.#slots = [];
  }

  #workersUsable(): boolean {
    if (this.#url === undefined) this.#url = workerUrl() ?? null;
    return this.#url !== null;
  }

  async #inline(req: ApplyRequest): Promise<ApplyResult> {
    const signal = req.signal ?? new AbortController().signal;
    return await applyLayer(readBlob(req, signal), req.target, {
      mode: req.mode,
      parents: req.parents,
      isolated: req.isolated,
      ...(req.expectedDiffId ? { expectedDiffId: req.expectedDiffId } : {}),
      ...(req.signal ? { signal: req.signal } : {}),
      ...(req.onWarning ? { onWarning: req.onWarning } : {}),
    });
  }

  async #acquire(): Promise<Slot> {
    for (;;) {
      const free = this.#slots.find((s) => !s.busy);
      if (free) {
        clearTimeout(free.idle);
        free.busy = true;
        return free;
      }
      if (this.#slots.length < this.size) {
        const slot: Slot = { worker: this.#spawn(), busy: true };
        this.#slots.push(slot);
        return slot;
      }
      await new Promise<void>((r) => this.#waiting.push(r));
    }
  }

  #release(slot: Slot): void {
    slot.busy = false;
    slot.job = undefined;
    if (!this.#slots.includes(slot)) {
      this.#waiting.shift()?.();
      return;
    }
    const idle = setTimeout(() => {
      if (slot.busy) return;
      slot.worker.terminate();
      this.#slots = this.#slots.filter((s) => s !== slot);
    }, IDLE_MS);
    // An idle worker must not keep the daemon alive.
    Deno.unrefTimer(idle);
    slot.idle = idle;
    this.#waiting.shift()?.();
  }

  #spawn(): Worker {
    const w = new Worker(this.#url!, { type: "module", name: "berth-apply" });
    w.onmessage = (e: MessageEvent) => {
      const r = e.data as ApplyReply;
      this.#replies.get(r.id)?.(r);
    };
    w.onerror = (e: ErrorEvent) => {
      // A worker that dies fails the jobs it had; the pool starts a new one.
      e.preventDefault();
      const slot = this.#slots.find((s) => s.worker === w);
      const id = slot?.job;
      const resolve = id === undefined ? undefined : this.#replies.get(id);
      if (id !== undefined && resolve) {
        resolve({
          id,
          ok: false,
          kind: "unknown",
          message: `Cannot apply layer: worker failed: ${e.message}`,
          lowersNeeded: false,
          code: undefined,
          warnings: [],
        });
      }
      this.#slots = this.#slots.filter((s) => s.worker !== w);
      w.terminate();
    };
    return w;
  }
}
