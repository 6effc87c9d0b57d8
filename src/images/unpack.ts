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
import { applyOnMounts } from "./apply.ts";
import { type Snapshotter, TARGET_LABEL } from "../snapshots/mod.ts";
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

export class SnapshotUnpacker implements Unpacker {
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
    const diffIds = req.config.rootfs.diff_ids;
    const chain = chainIds(diffIds);
    let parent = "";
    for (let i = 0; i < req.manifest.layers.length; i++) {
      const layer = req.manifest.layers[i]!;
      const chainId = chain[i]!;
      if (await this.#exists(sn, scope, chainId)) {
        // Hold it for the rest of the pull: GC may run before the image is recorded.
        this.#leases.addResource(req.namespace, req.lease, {
          type: `snapshots/${req.snapshotter}`,
          id: chainId,
        });
        req.onLayer(layer.digest, "unpacked");
        parent = chainId;
        continue;
      }
      await req.layerReady(i);
      req.onLayer(layer.digest, "unpacking");
      const key = `extract-${crypto.randomUUID().slice(0, 8)}-${chainId}`;
      const mounts = await sn.prepare(scope, key, {
        ...(parent ? { parent } : {}),
        labels: { [TARGET_LABEL]: chainId },
      });
      try {
        await applyOnMounts(this.#content.read(req.namespace, layer.digest), mounts, {
          expectedDiffId: diffIds[i]!,
          ...(req.signal ? { signal: req.signal } : {}),
          onWarning: (message) => this.#log.warn("layer apply", { digest: layer.digest, message }),
        });
        try {
          await sn.commit(scope, chainId, key);
        } catch (e) {
          // Another pull committed the same chain meanwhile: theirs is as good.
          if (!isKind(e, "already_exists")) throw e;
          await sn.remove(scope, key).catch(() => {});
        }
      } catch (e) {
        await sn.remove(scope, key).catch(() => {});
        throw e;
      }
      this.#content.update(req.namespace, layer.digest, { [UNCOMPRESSED_LABEL]: diffIds[i]! }, [
        `labels.${UNCOMPRESSED_LABEL}`,
      ]);
      req.onLayer(layer.digest, "unpacked");
      parent = chainId;
    }
    if (parent) {
      const label = SNAPSHOT_REF_LABEL(req.snapshotter);
      this.#content.update(req.namespace, req.configDesc.digest, { [label]: parent }, [
        `labels.${label}`,
      ]);
    }
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
