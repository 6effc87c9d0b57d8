/**
 * Applies a layer onto a snapshot's mounts. The fast path (containerd's too):
 * an overlay's upper directory or a bind mount's source is written directly,
 * in overlay or native mode; anything else is mounted on a temporary
 * directory and written through the mount.
 */
import { applyLayer, type ApplyMode, type ApplyResult } from "../archive/apply.ts";
import { type Mount, splitLowerdirs, withTempMount } from "../mount/mod.ts";

export interface MountApplyOptions {
  expectedDiffId?: string;
  signal?: AbortSignal;
  onWarning?: (message: string) => void;
}

/** Where a layer can be applied without mounting, if anywhere. */
export function directTarget(
  mounts: readonly Mount[],
): { dir: string; mode: ApplyMode; parents: string[] } | undefined {
  if (mounts.length !== 1) return undefined;
  const m = mounts[0]!;
  const opts = m.options ?? [];
  if (m.type === "bind" && !opts.includes("ro")) {
    return { dir: m.source, mode: "native", parents: [] };
  }
  if (m.type === "overlay") {
    const upper = opts.find((o) => o.startsWith("upperdir="))?.slice("upperdir=".length);
    const lower = opts.find((o) => o.startsWith("lowerdir="))?.slice("lowerdir=".length);
    if (!upper) return undefined;
    return { dir: upper, mode: "overlay", parents: lower ? splitLowerdirs(lower) : [] };
  }
  return undefined;
}

/** Applies `stream` (a tar, tar+gzip or tar+zstd layer) onto `mounts`. */
export async function applyOnMounts(
  stream: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  mounts: readonly Mount[],
  opts: MountApplyOptions = {},
): Promise<ApplyResult> {
  const direct = directTarget(mounts);
  if (direct) {
    return await applyLayer(stream, direct.dir, {
      ...opts,
      mode: direct.mode,
      parents: direct.parents,
    });
  }
  return await withTempMount(
    [...mounts],
    (dir) => applyLayer(stream, dir, { ...opts, mode: "native" }),
  );
}
