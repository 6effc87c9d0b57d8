/**
 * The layer-apply worker: applies one layer blob at a time from the content
 * store's file into a directory, off the daemon's main thread, so that
 * decompression, hashing, tar parsing and the syscalls of several layers run
 * on several cores while the main thread keeps serving. Started by
 * {@link ApplyPool} (apply_pool.ts); one job at a time per worker.
 */
import { applyLayer, LowersNeededError } from "../archive/apply.ts";
import { kindOf } from "../core/errdefs.ts";
import { type ApplyJob, type ApplyReply, readBlob } from "./apply_pool.ts";

/** Jobs running here, by id, so a cancel message can stop one. */
const running = new Map<number, AbortController>();

async function apply(job: ApplyJob): Promise<ApplyReply> {
  const abort = new AbortController();
  running.set(job.id, abort);
  const warnings: string[] = [];
  try {
    const r = await applyLayer(readBlob(job, abort.signal), job.target, {
      mode: job.mode,
      parents: job.parents,
      isolated: job.isolated,
      ...(job.expectedDiffId ? { expectedDiffId: job.expectedDiffId } : {}),
      signal: abort.signal,
      onWarning: (m) => warnings.push(m),
    });
    return { id: job.id, ok: true, diffId: r.diffId, size: r.size, warnings };
  } catch (e) {
    return {
      id: job.id,
      ok: false,
      kind: kindOf(e),
      message: e instanceof Error ? e.message : String(e),
      lowersNeeded: e instanceof LowersNeededError,
      code: (e as { code?: unknown })?.code === "ENOSPC" ? "ENOSPC" : undefined,
      warnings,
    };
  } finally {
    running.delete(job.id);
  }
}

const scope = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(m: unknown): void;
};
scope.onmessage = (e: MessageEvent) => {
  const msg = e.data as ApplyJob | { cancel: number };
  if ("cancel" in msg) {
    running.get(msg.cancel)?.abort();
    return;
  }
  apply(msg).then((r) => scope.postMessage(r));
};
