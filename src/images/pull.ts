/**
 * The server-side pull: resolve → fetch the root → choose manifests by
 * platform → fetch configs and layers concurrently into the content store
 * (verified, resumable, each blob once even across concurrent pulls) → unpack
 * into snapshots → record the image. The image is recorded only when all of it
 * is there, so a failed pull leaves no half image; what it fetched stays under
 * an expiring lease, so a retry fetches only what is missing.
 */
import { BerthError, failedPrecondition, isKind, kindOf, notFound } from "../core/errdefs.ts";
import type { ContentStore } from "../metadata/content.ts";
import type { Image, ImageStore } from "../metadata/images.ts";
import type { LeaseStore } from "../metadata/leases.ts";
import { EXPIRE_LABEL } from "../metadata/leases.ts";
import { durably, relaxedDurability } from "../metadata/db.ts";
import type { Logger } from "../util/log.ts";
import {
  type Descriptor,
  type ImageConfig,
  isIndexType,
  isManifestType,
  type Manifest,
  parseImageConfig,
  parseIndex,
  parseManifest,
} from "../oci/image.ts";
import { formatReference, parseReference } from "../oci/reference.ts";
import { formatPlatform, hostPlatform, selectManifests } from "../oci/platforms.ts";
import type { Fetcher, RegistryClient, RegistryClientOptions } from "../remotes/mod.ts";
import { InFlight, Limiter } from "../remotes/mod.ts";

/** One blob's progress, as the Transfer service streams it. */
export interface BlobProgress {
  digest: string;
  mediaType: string;
  offset: number;
  total: number;
  state: "waiting" | "downloading" | "exists" | "done" | "unpacking" | "unpacked";
}

export interface PullOptions {
  reference: string;
  platforms?: string[];
  allPlatforms?: boolean;
  plainHttp?: boolean;
  user?: string;
  snapshotter?: string;
  skipUnpack?: boolean;
  maxConcurrentDownloads?: number;
  labels?: Record<string, string>;
  signal?: AbortSignal;
  /** Called whenever a blob changes state or makes progress. */
  onProgress?: (blobs: BlobProgress[], phase: string) => void;
}

export interface PullResult {
  image: Image;
  /** Bytes received from the registry (resumed bytes already on disk excluded). */
  fetchedBytes: number;
  manifests: Descriptor[];
}

/** Unpacks one image manifest's layers into a snapshotter; set by the daemon. */
export interface Unpacker {
  unpack(req: {
    namespace: string;
    snapshotter: string;
    manifest: Manifest;
    config: ImageConfig;
    configDesc: Descriptor;
    lease: string;
    /** Resolves when layer i's blob is committed (layers may arrive out of order). */
    layerReady(i: number): Promise<void>;
    /**
     * Where layer i's bytes can be read while they arrive: the ingest file
     * this pull writes them to, in order (its first `size` bytes are the
     * blob, once layerReady(i) resolves; until then they are unverified).
     * Undefined when the blob is only available once committed (already
     * there, or downloaded by another pull). Rejects as layerReady does.
     */
    layerSource?(i: number): Promise<string | undefined>;
    onLayer(digest: string, state: BlobProgress["state"]): void;
    signal?: AbortSignal;
  }): Promise<void>;
}

export interface PullerDeps {
  content: ContentStore;
  images: ImageStore;
  leases: LeaseStore;
  registry(opts: RegistryClientOptions): RegistryClient;
  unpacker?: Unpacker;
  defaultSnapshotter: string;
  maxConcurrentDownloads: number;
  log: Logger;
}

const PULL_LEASE_TTL_MS = 24 * 3600 * 1000;
const GC_REF = "containerd.io/gc.ref.content";

/** Labels a manifest carries so GC keeps its config and layers (containerd's names). */
function manifestLabels(layers: Descriptor[], config: Descriptor): Record<string, string> {
  const out: Record<string, string> = { [`${GC_REF}.config`]: config.digest };
  layers.forEach((d, i) => (out[`${GC_REF}.l.${i}`] = d.digest));
  return out;
}

function refFor(desc: Descriptor): string {
  const kind = isIndexType(desc.mediaType)
    ? "index"
    : isManifestType(desc.mediaType)
    ? "manifest"
    : desc.mediaType.includes("config")
    ? "config"
    : "layer";
  return `${kind}-${desc.digest}`;
}

/**
 * Makes sure a pull's error names the reference: errors from deeper layers
 * (a token server's refusal, a full disk) often name only a host or a path.
 * The kind is kept, so the gRPC code stays what it was.
 */
function namingReference(err: unknown, name: string, given: string): unknown {
  if (!(err instanceof Error)) return err;
  if (err.message.includes(name) || err.message.includes(given)) return err;
  let kind = kindOf(err);
  const code = (err as { code?: unknown }).code;
  if (kind === "unknown" && code === "ENOSPC") kind = "resource_exhausted";
  if (kind === "unknown" && code === "ENOENT") kind = "not_found";
  return new BerthError(kind, `Cannot pull "${name}": ${err.message}`, { cause: err });
}

export class Puller {
  #d: PullerDeps;
  /** Blobs being downloaded right now, daemon-wide: a second pull joins the first. */
  #inflight = new InFlight<string, number>();

  constructor(deps: PullerDeps) {
    this.#d = deps;
  }

  /**
   * Pulls an image. Its many intermediate commits (leases, ingests, content
   * records, snapshots) are not synced one by one; the commit that records the
   * image is, which makes all of them durable at once (relaxedDurability).
   */
  pull(ns: string, opts: PullOptions): Promise<PullResult> {
    return relaxedDurability(() => this.#pull(ns, opts));
  }

  async #pull(ns: string, opts: PullOptions): Promise<PullResult> {
    const d = this.#d;
    const ref = parseReference(opts.reference);
    const name = formatReference(ref);
    const client = d.registry({
      ...(opts.plainHttp ? { plainHttp: true } : {}),
      ...(opts.user ? { user: opts.user } : {}),
      log: d.log,
    });
    const progress = new Map<string, BlobProgress>();
    let phase = "resolving";
    let fetched = 0;
    const emit = () => opts.onProgress?.([...progress.values()], phase);
    const track = (desc: Descriptor, state: BlobProgress["state"], offset?: number) => {
      const p = progress.get(desc.digest) ??
        { digest: desc.digest, mediaType: desc.mediaType, offset: 0, total: desc.size, state };
      p.state = state;
      if (offset !== undefined) p.offset = offset;
      progress.set(desc.digest, p);
      emit();
    };

    // Every download and unpack of this pull; on failure they are stopped and
    // awaited, so nothing keeps writing after the error is reported.
    const pending: Promise<unknown>[] = [];
    const abort = new AbortController();
    const onAbort = () => abort.abort(opts.signal?.reason);
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const signal = abort.signal;
    const lease = d.leases.create(ns, "", {
      [EXPIRE_LABEL]: new Date(Date.now() + PULL_LEASE_TTL_MS).toISOString(),
      "berth.io/pull": name,
    }).id;
    try {
      emit();
      const resolved = await client.resolve(ref, { signal });
      const root = resolved.descriptor;
      phase = "resolved";
      emit();
      const fetcher = client.fetcher(ref);
      const limiter = new Limiter(opts.maxConcurrentDownloads || d.maxConcurrentDownloads);

      // Ingest files being written by this pull, by digest (see layerSource).
      const writing = new Map<string, (path: string) => void>();
      const fetchBlob = (desc: Descriptor, labels: Record<string, string> = {}) =>
        limiter.run(() =>
          this.#fetchBlob(
            ns,
            lease,
            fetcher,
            desc,
            labels,
            track,
            signal,
            (path) => writing.get(desc.digest)?.(path),
          )
        ).then((n) => (fetched += n));

      // Root: an index (choose manifests) or a manifest.
      phase = "fetching";
      let manifests: Descriptor[];
      const rootBytes = await fetcher.fetchBytes(root);
      if (isIndexType(root.mediaType)) {
        const index = parseIndex(rootBytes, {
          what: `index ${root.digest} of "${name}"`,
          mediaType: root.mediaType,
        });
        manifests = this.#choose(index, opts, name);
        // Label by position in the whole index, so pulling another platform
        // later adds a label instead of replacing this one.
        const labels: Record<string, string> = {};
        for (const m of manifests) {
          labels[`${GC_REF}.m.${index.manifests.findIndex((x) => x.digest === m.digest)}`] =
            m.digest;
        }
        await this.#store(ns, lease, root, rootBytes, labels);
      } else if (isManifestType(root.mediaType)) {
        manifests = [root];
      } else {
        throw new BerthError(
          "not_implemented",
          `Cannot pull "${name}": unsupported media type "${root.mediaType}" of ${root.digest}: not implemented`,
        );
      }
      track(root, "done", root.size);

      // Manifests, then their configs and layers, all concurrently.
      const host = hostPlatform();
      for (const md of manifests) {
        const bytes = await fetcher.fetchBytes(md);
        const m = parseManifest(bytes, {
          what: `manifest ${md.digest} of "${name}"`,
          mediaType: md.mediaType,
        });
        // Once the manifest is parsed, its commit, the config and the layers
        // proceed at once: each commit waits on fsyncs, and a small image's
        // pull is mostly those waits in a row.
        const storing = this.#store(ns, lease, md, bytes, manifestLabels(m.layers, m.config))
          .then(() => track(md, "done", md.size));
        // Failures are collected below (allSettled); until then the awaits in
        // between must not see them as unhandled rejections.
        storing.catch(() => {});
        pending.push(storing);
        const layerSources = m.layers.map((l) =>
          new Promise<string>((resolve) => {
            if (!writing.has(l.digest)) writing.set(l.digest, resolve);
          })
        );
        const layerDone = m.layers.map((l) => {
          if (!progress.has(l.digest)) track(l, "waiting");
          const p = fetchBlob(l);
          p.catch(() => {});
          pending.push(p);
          return p;
        });
        const cfgBytes = await fetcher.fetchBytes(m.config);
        const config = parseImageConfig(cfgBytes, `config ${m.config.digest} of "${name}"`);
        if (config.rootfs.diff_ids.length !== m.layers.length) {
          throw failedPrecondition(
            `Cannot pull "${name}": manifest ${md.digest} has ${m.layers.length} layers but its config lists ${config.rootfs.diff_ids.length} diff_ids`,
          );
        }
        await this.#store(ns, lease, m.config, cfgBytes, {});
        track(m.config, "done", m.config.size);
        // Unpack only the platform that runs here (as containerd does with --all-platforms).
        const runnable = manifests.length === 1 ||
          (md.platform && formatPlatform(md.platform) === formatPlatform(host));
        if (!opts.skipUnpack && d.unpacker && runnable) {
          pending.push(d.unpacker.unpack({
            namespace: ns,
            snapshotter: opts.snapshotter || d.defaultSnapshotter,
            manifest: m,
            config,
            configDesc: m.config,
            lease,
            layerReady: (i) => layerDone[i]!.then(() => {}),
            layerSource: (i) =>
              Promise.race([layerSources[i]!, layerDone[i]!.then(() => undefined)]),
            onLayer: (digest, state) => {
              const l = m.layers.find((x) => x.digest === digest);
              if (l) track(l, state);
            },
            signal,
          }));
        }
      }
      // Settle everything before deciding, so no job is left writing after a failure.
      const results = await Promise.allSettled(pending);
      const failed = results.find((r) => r.status === "rejected") as
        | PromiseRejectedResult
        | undefined;
      if (failed) throw failed.reason;
      phase = "done";

      const target = {
        mediaType: root.mediaType,
        digest: root.digest,
        size: root.size,
        annotations: root.annotations ?? {},
      };
      let image: Image;
      try {
        image = durably(() => d.images.create(ns, { name, labels: opts.labels ?? {}, target }));
      } catch (e) {
        if (!isKind(e, "already_exists")) throw e;
        image = durably(() =>
          d.images.update(ns, { name, labels: opts.labels ?? {}, target }, [
            "target",
            ...Object.keys(opts.labels ?? {}).map((k) => `labels.${k}`),
          ])
        );
      }
      d.leases.delete(ns, lease);
      emit();
      return { image, fetchedBytes: fetched, manifests };
    } catch (e) {
      abort.abort(e);
      await Promise.allSettled(pending);
      d.log.info("pull failed", { ref: name, namespace: ns, error: e });
      throw namingReference(e, name, opts.reference);
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      client.close();
    }
  }

  #choose(index: ReturnType<typeof parseIndex>, opts: PullOptions, name: string): Descriptor[] {
    if (opts.allPlatforms) return selectManifests(index, { all: true });
    const platforms = opts.platforms?.length ? opts.platforms : [undefined];
    const out: Descriptor[] = [];
    for (const p of platforms) {
      const hit = selectManifests(index, p === undefined ? {} : { platform: p });
      if (hit.length === 0) {
        throw notFound(
          `Cannot pull "${name}": no manifest for platform ${p ?? formatPlatform(hostPlatform())}`,
        );
      }
      for (const h of hit) if (!out.some((o) => o.digest === h.digest)) out.push(h);
    }
    return out;
  }

  /** Writes small, already verified bytes (manifests, configs) into the content store. */
  async #store(
    ns: string,
    lease: string,
    desc: Descriptor,
    bytes: Uint8Array,
    labels: Record<string, string>,
  ) {
    const c = this.#d.content;
    let w;
    try {
      w = await c.writer(ns, refFor(desc), {
        total: desc.size,
        expected: desc.digest,
        lease,
        labels,
      });
    } catch (e) {
      if (!isKind(e, "already_exists")) throw e;
      this.#label(ns, desc.digest, labels);
      return;
    }
    try {
      if (w.offset !== 0) await w.truncate(0);
      await w.write(bytes);
      await w.commit(desc.size, desc.digest, { labels });
    } catch (e) {
      if (!isKind(e, "already_exists")) throw e;
      this.#label(ns, desc.digest, labels);
    } finally {
      if (w.open) w.close();
    }
  }

  #label(ns: string, digest: string, labels: Record<string, string>) {
    const keys = Object.keys(labels);
    if (keys.length === 0) return;
    this.#d.content.update(ns, digest, labels, keys.map((k) => `labels.${k}`));
  }

  /** Streams one blob into the content store, resuming a partial ingest. Returns bytes fetched. */
  #fetchBlob(
    ns: string,
    lease: string,
    fetcher: Fetcher,
    desc: Descriptor,
    labels: Record<string, string>,
    track: (d: Descriptor, s: BlobProgress["state"], offset?: number) => void,
    signal?: AbortSignal,
    onWriting?: (dataPath: string) => void,
  ): Promise<number> {
    const c = this.#d.content;
    if (c.visible(ns, desc.digest)) {
      track(desc, "exists", desc.size);
      this.#label(ns, desc.digest, labels);
      return Promise.resolve(0);
    }
    const download = () =>
      this.#inflight.run(desc.digest, async () => {
        let w;
        try {
          w = await c.writer(ns, refFor(desc), {
            total: desc.size,
            expected: desc.digest,
            lease,
            labels,
          });
        } catch (e) {
          if (!isKind(e, "already_exists")) throw e;
          track(desc, "exists", desc.size);
          this.#label(ns, desc.digest, labels);
          return 0;
        }
        let got = 0;
        try {
          if (w.offset > desc.size) await w.truncate(0);
          const start = w.offset;
          track(desc, "downloading", start);
          if (start < desc.size) {
            // From here the ingest file only grows: readers may follow it.
            // (The local store names a namespace's ingest "<ns>/<ref>".)
            onWriting?.(c.local.ingestDataPath(`${ns}/${refFor(desc)}`));
            const stream = await fetcher.fetch(desc, {
              offset: start,
              ...(signal ? { signal } : {}),
            });
            let last = 0;
            for await (const chunk of stream) {
              await w.write(chunk);
              got += chunk.length;
              const now = performance.now();
              if (now - last > 100) {
                last = now;
                track(desc, "downloading", start + got);
              }
            }
          }
          try {
            await w.commit(desc.size, desc.digest, { labels });
          } catch (e) {
            if (!isKind(e, "already_exists")) throw e;
          }
          track(desc, "done", desc.size);
          return got;
        } finally {
          if (w.open) w.close();
        }
      });
    return download().then(async (n) => {
      // A concurrent pull in another namespace may have fetched it: make it
      // visible here too (stored once, recorded per namespace).
      if (!c.visible(ns, desc.digest)) {
        try {
          const w = await c.writer(ns, refFor(desc), {
            total: desc.size,
            expected: desc.digest,
            lease,
            labels,
          });
          w.close();
          return await download();
        } catch (e) {
          if (!isKind(e, "already_exists")) throw e;
        }
      }
      return n;
    });
  }
}
