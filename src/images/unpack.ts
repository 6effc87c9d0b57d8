/**
 * Unpacks an image's layers into committed snapshots named by chainID, the
 * way containerd's unpacker does, with its fast path: when the snapshot to
 * fill is an overlay (or a plain bind), the layer is applied straight into
 * the upper (or bound) directory, without mounting anything. Each layer is
 * applied as soon as its blob is committed and its parent is unpacked;
 * snapshots that already exist are reused.
 */
import { createHash } from "node:crypto";
import { isKind, notFound } from "../core/errdefs.ts";
import type { ContentStore } from "../metadata/content.ts";
import type { LeaseStore } from "../metadata/leases.ts";
import type { Logger } from "../util/log.ts";
import { LowersNeededError } from "../archive/apply.ts";
import { applyOnMounts, directTarget } from "./apply.ts";
import { ApplyPool } from "./apply_pool.ts";
import { type Scope, type Snapshotter, TARGET_LABEL } from "../snapshots/mod.ts";
import type { Unpacker } from "./pull.ts";
import { type Descriptor, parseImageConfig, parseManifest } from "../oci/image.ts";

export const UNCOMPRESSED_LABEL = "containerd.io/uncompressed";
export const SNAPSHOT_REF_LABEL = (snapshotter: string) =>
  `containerd.io/gc.ref.snapshot.${snapshotter}`;

/** The chain IDs of a list of diffIDs (OCI image spec, "Layer ChainID"). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out.at(-1);
    out.push(
      prev === undefined
        ? d
        : `sha256:${createHash("sha256").update(`${prev} ${d}`).digest("hex")}`,
    );
  }
  return out;
}

type UnpackRequest = Parameters<Unpacker["unpack"]>[0];

function extractKey(chainId: string): string {
  return `extract-${crypto.randomUUID().slice(0, 8)}-${chainId}`;
}

/**
 * Moves a layer applied on its own into the (empty) upper dir of the snapshot
 * prepared for it: a rename within the snapshotter's root. The upper dir's
 * own owner and mode, which the snapshotter chose, are kept.
 */
function moveInto(dir: string, upper: string): void {
  const st = Deno.lstatSync(upper);
  Deno.removeSync(upper); // empty: fails otherwise
  Deno.renameSync(dir, upper);
  Deno.chownSync(upper, st.uid, st.gid);
  Deno.chmodSync(upper, (st.mode ?? 0o755) & 0o7777);
}

export class SnapshotUnpacker implements Unpacker {
  #pool = new ApplyPool();
  #snapshotters: ReadonlyMap<string, Snapshotter>;
  #content: ContentStore;
  #leases: LeaseStore;
  #log: Logger;

  constructor(deps: {
    snapshotters: ReadonlyMap<string, Snapshotter>;
    content: ContentStore;
    leases: LeaseStore;
    log: Logger;
  }) {
    this.#snapshotters = deps.snapshotters;
    this.#content = deps.content;
    this.#leases = deps.leases;
    this.#log = deps.log;
  }

  snapshotter(name: string): Snapshotter {
    const s = this.#snapshotters.get(name);
    if (!s) throw notFound(`snapshotter "${name}"`);
    return s;
  }

  async unpack(req: Parameters<Unpacker["unpack"]>[0]): Promise<void> {
    const sn = this.snapshotter(req.snapshotter);
    const scope = { namespace: req.namespace, lease: req.lease };
    const chain = chainIds(req.config.rootfs.diff_ids);
    // Snapshots that exist already are reused; the first missing one starts
    // the work (a committed snapshot implies all of its parents).
    let first = 0;
    for (; first < req.manifest.layers.length; first++) {
      const chainId = chain[first]!;
      if (!(await this.#exists(sn, scope, chainId))) break;
      // Hold it for the rest of the pull: GC may run before the image is recorded.
      this.#leases.addResource(req.namespace, req.lease, {
        type: `snapshots/${req.snapshotter}`,
        id: chainId,
      });
      req.onLayer(req.manifest.layers[first]!.digest, "unpacked");
    }
    if (first < req.manifest.layers.length) {
      if (sn.name === "overlayfs") await this.#unpackParallel(sn, scope, req, chain, first);
      else await this.#unpackSerial(sn, scope, req, chain, first);
    }
    const top = chain.at(-1);
    if (top) {
      const label = SNAPSHOT_REF_LABEL(req.snapshotter);
      this.#content.update(req.namespace, req.configDesc.digest, { [label]: top }, [
        `labels.${label}`,
      ]);
    }
  }

  /** Stops the apply workers (daemon shutdown). */
  close(): void {
    this.#pool.close();
  }

  /**
   * One layer after the other, each applied onto its parent's snapshot
   * through its mounts (any snapshotter).
   */
  async #unpackSerial(
    sn: Snapshotter,
    scope: Scope,
    req: UnpackRequest,
    chain: string[],
    first: number,
  ): Promise<void> {
    for (let i = first; i < req.manifest.layers.length; i++) {
      const layer = req.manifest.layers[i]!;
      await req.layerReady(i);
      req.onLayer(layer.digest, "unpacking");
      const key = extractKey(chain[i]!);
      const mounts = await sn.prepare(scope, key, {
        ...(i > 0 ? { parent: chain[i - 1]! } : {}),
        labels: { [TARGET_LABEL]: chain[i]! },
      });
      try {
        await applyOnMounts(this.#content.read(req.namespace, layer.digest), mounts, {
          expectedDiffId: req.config.rootfs.diff_ids[i]!,
          ...(req.signal ? { signal: req.signal } : {}),
          onWarning: this.#warn(layer.digest),
        });
        await this.#commit(sn, scope, chain[i]!, key);
      } catch (e) {
        await sn.remove(scope, key).catch(() => {});
        throw e;
      }
      this.#unpacked(req, i);
    }
  }

  /**
   * overlayfs: every layer is applied as soon as its blob is there, on the
   * apply workers, each into a directory of its own (a parentless snapshot),
   * without waiting for the layers below. They are then committed in chain
   * order: the directory is moved into the upper dir of a snapshot prepared on
   * the parent just committed. A layer whose result depends on its lowers
   * (see `isolated` in src/archive/apply.ts) is applied again there, on them.
   * Nothing is committed unless the layers below it were, and on any failure
   * every snapshot this unpack made is removed.
   */
  async #unpackParallel(
    sn: Snapshotter,
    scope: Scope,
    req: UnpackRequest,
    chain: string[],
    first: number,
  ): Promise<void> {
    const layers = req.manifest.layers;
    const diffIds = req.config.rootfs.diff_ids;
    const keys = new Set<string>(); // snapshots to remove if the unpack fails
    const stop = new AbortController();
    const onAbort = () => stop.abort(req.signal?.reason);
    req.signal?.addEventListener("abort", onAbort, { once: true });
    const signal = stop.signal;

    // Applies layer i into `target`; false when it needs its lowers. The
    // bytes are read as they arrive when this pull is downloading them; the
    // snapshot is committed only once the blob is verified (layerReady).
    const apply = async (
      i: number,
      target: string,
      mode: "overlay" | "native",
      parents: string[],
      isolated: boolean,
      committed = false,
    ) => {
      const layer = layers[i]!;
      const follow = committed ? undefined : await req.layerSource?.(i);
      if (!follow) {
        await req.layerReady(i);
        this.#content.info(req.namespace, layer.digest); // visible here, or not found
      }
      try {
        await this.#pool.apply({
          blob: this.#content.local.blobPath(layer.digest),
          size: layer.size,
          ...(follow ? { follow } : {}),
          target,
          mode,
          parents,
          isolated,
          expectedDiffId: diffIds[i]!,
          signal,
          onWarning: this.#warn(layer.digest),
        });
        return true;
      } catch (e) {
        if (isolated && e instanceof LowersNeededError) return false;
        throw e;
      }
    };
    // Prepares a snapshot on the committed parent and applies layer i onto it.
    const onParent = async (i: number, committed = false): Promise<string> => {
      const key = extractKey(chain[i]!);
      keys.add(key);
      const mounts = await sn.prepare(scope, key, {
        ...(i > 0 ? { parent: chain[i - 1]! } : {}),
        labels: { [TARGET_LABEL]: chain[i]! },
      });
      const direct = directTarget(mounts);
      if (direct?.mode === "overlay" || (direct && i === 0)) {
        // The bottom layer is a plain directory, applied natively (as the
        // serial path and containerd do): no whiteout devices in it.
        await apply(i, direct.dir, direct.mode, direct.parents, false, committed);
      } else {
        await applyOnMounts(this.#content.read(req.namespace, layers[i]!.digest), mounts, {
          expectedDiffId: diffIds[i]!,
          signal,
          onWarning: this.#warn(layers[i]!.digest),
        });
      }
      return key;
    };
    // Layer i (above the first) alone: its staging snapshot's key and directory.
    const staged = async (i: number): Promise<{ key: string; dir: string } | undefined> => {
      await (req.layerSource?.(i) ?? req.layerReady(i));
      if (signal.aborted) throw signal.reason;
      req.onLayer(layers[i]!.digest, "unpacking");
      const key = extractKey(chain[i]!);
      keys.add(key);
      const mounts = await sn.prepare(scope, key, { labels: { [TARGET_LABEL]: chain[i]! } });
      const direct = directTarget(mounts);
      if (!direct || direct.mode !== "native") return undefined; // not a plain directory
      if (await apply(i, direct.dir, "overlay", [], true)) return { key, dir: direct.dir };
      this.#log.debug("layer depends on its lowers: applied again on its parent", {
        digest: layers[i]!.digest,
      });
      return undefined;
    };

    const jobs: Promise<unknown>[] = [];
    try {
      const base = (async () => {
        await (req.layerSource?.(first) ?? req.layerReady(first));
        req.onLayer(layers[first]!.digest, "unpacking");
        return await onParent(first);
      })();
      const stages = layers.map((_, i) => i > first ? staged(i) : undefined);
      for (const p of [base, ...stages]) {
        if (!p) continue;
        jobs.push(p);
        p.catch(() => {}); // awaited below in order; a later failure must not go unhandled
      }

      await req.layerReady(first);
      const baseKey = await base;
      await this.#commit(sn, scope, chain[first]!, baseKey);
      keys.delete(baseKey);
      this.#unpacked(req, first);
      for (let i = first + 1; i < layers.length; i++) {
        await req.layerReady(i); // a download's error first: it explains the rest
        const stage = await stages[i]!;
        let key: string;
        if (stage) {
          key = extractKey(chain[i]!);
          keys.add(key);
          const mounts = await sn.prepare(scope, key, {
            parent: chain[i - 1]!,
            labels: { [TARGET_LABEL]: chain[i]! },
          });
          const upper = directTarget(mounts);
          if (upper?.mode !== "overlay") {
            throw new Error(`snapshot "${key}" has no overlay upper dir`);
          }
          moveInto(stage.dir, upper.dir);
        } else {
          req.onLayer(layers[i]!.digest, "unpacking");
          key = await onParent(i, true);
        }
        await this.#commit(sn, scope, chain[i]!, key);
        keys.delete(key);
        if (stage) {
          await sn.remove(scope, stage.key);
          keys.delete(stage.key);
        }
        this.#unpacked(req, i);
      }
      // Staging snapshots of layers that were applied again on their parent.
      for (const k of keys) await sn.remove(scope, k).catch(() => {});
      keys.clear();
    } catch (e) {
      stop.abort(e);
      await Promise.allSettled(jobs);
      for (const k of keys) await sn.remove(scope, k).catch(() => {});
      throw e;
    } finally {
      req.signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Commits `key` as `name`; another pull's commit of the same chain is as good. */
  async #commit(sn: Snapshotter, scope: Scope, name: string, key: string): Promise<void> {
    try {
      await sn.commit(scope, name, key);
    } catch (e) {
      if (!isKind(e, "already_exists")) throw e;
      await sn.remove(scope, key).catch(() => {});
    }
  }

  #unpacked(req: UnpackRequest, i: number): void {
    const layer = req.manifest.layers[i]!;
    const diffId = req.config.rootfs.diff_ids[i]!;
    this.#content.update(req.namespace, layer.digest, { [UNCOMPRESSED_LABEL]: diffId }, [
      `labels.${UNCOMPRESSED_LABEL}`,
    ]);
    req.onLayer(layer.digest, "unpacked");
  }

  #warn(digest: string): (message: string) => void {
    return (message) => this.#log.warn("layer apply", { digest, message });
  }

  async #exists(
    sn: Snapshotter,
    scope: { namespace: string; lease: string },
    name: string,
  ): Promise<boolean> {
    try {
      const info = await sn.stat(scope, name);
      return info.kind === "committed";
    } catch (e) {
      if (isKind(e, "not_found")) return false;
      throw e;
    }
  }
}

/** Reads a whole (small) blob: a manifest or config. */
async function readAll(content: ContentStore, ns: string, digest: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of content.read(ns, digest)) parts.push(c);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * Unpacks an image manifest whose blobs are all in the content store already
 * (after an import, or for `berth mount`).
 */
export async function unpackStored(
  unpacker: Unpacker,
  content: ContentStore,
  req: { namespace: string; snapshotter: string; manifest: Descriptor; lease: string },
): Promise<{ chainId: string }> {
  const m = parseManifest(await readAll(content, req.namespace, req.manifest.digest), {
    what: `manifest ${req.manifest.digest}`,
    mediaType: req.manifest.mediaType,
  });
  const config = parseImageConfig(
    await readAll(content, req.namespace, m.config.digest),
    `config ${m.config.digest}`,
  );
  await unpacker.unpack({
    namespace: req.namespace,
    snapshotter: req.snapshotter,
    manifest: m,
    config,
    configDesc: m.config,
    lease: req.lease,
    layerReady: () => Promise.resolve(),
    onLayer: () => {},
  });
  return { chainId: chainIds(config.rootfs.diff_ids).at(-1) ?? "" };
}
