/**
 * Test fixtures for import and export: real stores on a temp dir, and small
 * real images (gzip layers built with the tar writer and node:zlib, configs,
 * manifests, indexes) written through the content store API.
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { isKind } from "../core/errdefs.ts";
import { buildTar, type TarWriteEntry } from "../archive/tar_writer.ts";
import { TarReader } from "../archive/tar_reader.ts";
import { LocalContentStore } from "../content/store.ts";
import { ContentStore } from "../metadata/content.ts";
import { MetaDb } from "../metadata/db.ts";
import { ImageStore } from "../metadata/images.ts";
import { LeaseStore } from "../metadata/leases.ts";
import { NamespaceStore } from "../metadata/namespaces.ts";
import { type Descriptor, MediaType } from "../oci/image.ts";
import { Logger } from "../util/log.ts";

/** A metadata database and content store on a temp dir. */
export interface TestStores extends AsyncDisposable {
  dir: string;
  db: MetaDb;
  content: ContentStore;
  images: ImageStore;
  leases: LeaseStore;
}

/** Opens fresh stores; `await using` removes them. */
export async function openStores(prefix = "berth-import-"): Promise<TestStores> {
  const dir = await Deno.makeTempDir({ prefix });
  const db = new MetaDb(`${dir}/meta.db`);
  const namespaces = new NamespaceStore(db);
  const leases = new LeaseStore(db, namespaces);
  const log = new Logger("error");
  const local = new LocalContentStore(`${dir}/content`, log);
  return {
    dir,
    db,
    leases,
    content: new ContentStore({ db, namespaces, leases, local, log }),
    images: new ImageStore(db, namespaces),
    async [Symbol.asyncDispose]() {
      db.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

export const enc = new TextEncoder();

export function sha256(bytes: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Writes `bytes` as a blob of `ns` and returns its descriptor. */
export async function putBlob(
  content: ContentStore,
  ns: string,
  mediaType: string,
  data: Uint8Array | string,
): Promise<Descriptor> {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  const digest = sha256(bytes);
  try {
    const w = await content.writer(ns, `test-${digest}`, { expected: digest, total: bytes.length });
    await w.write(bytes);
    await w.commit(bytes.length, digest);
  } catch (e) {
    if (!isKind(e, "already_exists")) throw e;
  }
  return { mediaType, digest, size: bytes.length };
}

/** A layer tar of `files` (path -> content). */
export function layerTar(files: Record<string, string>): Uint8Array {
  const entries: TarWriteEntry[] = Object.entries(files).map(([name, data]) => ({
    name,
    type: "file",
    data,
  }));
  return buildTar(entries);
}

/** One platform's image: config, layer and manifest, all in the store. */
export interface BuiltManifest {
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  /** The uncompressed layer tars (diff_ids are their digests). */
  tars: Uint8Array[];
  configBytes: Uint8Array;
}

/** Writes a one-or-two-layer image for `platform` (os/arch[/variant]). */
export async function buildManifest(
  content: ContentStore,
  ns: string,
  platform: string,
  opts: { gzip?: boolean; docker?: boolean; marker?: string } = {},
): Promise<BuiltManifest> {
  const [os, architecture, variant] = platform.split("/") as [string, string, string?];
  const marker = opts.marker ?? platform;
  const tars = [
    layerTar({ "etc/platform": `${marker}\n` }),
    layerTar({ "bin/hello": `#!/bin/sh\necho hello from ${marker}\n` }),
  ];
  const gzip = opts.gzip ?? true;
  const layerType = opts.docker
    ? (gzip ? MediaType.dockerLayerGzip : "application/vnd.docker.image.rootfs.diff.tar")
    : (gzip ? MediaType.ociLayerGzip : MediaType.ociLayer);
  const layers: Descriptor[] = [];
  for (const t of tars) {
    layers.push(await putBlob(content, ns, layerType, gzip ? gzipSync(t) : t));
  }
  const cfg: Record<string, unknown> = {
    architecture,
    os,
    config: { Cmd: ["/bin/hello"], Env: ["PATH=/bin"] },
    rootfs: { type: "layers", diff_ids: tars.map((t) => sha256(t)) },
    history: [{ created_by: "test" }, { created_by: "test" }],
  };
  if (variant) cfg.variant = variant;
  const configBytes = enc.encode(JSON.stringify(cfg));
  const config = await putBlob(
    content,
    ns,
    opts.docker ? MediaType.dockerConfig : MediaType.ociConfig,
    configBytes,
  );
  const mediaType = opts.docker ? MediaType.dockerManifest : MediaType.ociManifest;
  const manifest = await putBlob(
    content,
    ns,
    mediaType,
    JSON.stringify({ schemaVersion: 2, mediaType, config, layers }),
  );
  return { manifest, config, layers, tars, configBytes };
}

/** A multi-platform image: an index over per-platform manifests, recorded as `name`. */
export async function buildIndexImage(
  stores: { content: ContentStore; images: ImageStore },
  ns: string,
  name: string,
  platforms: string[],
): Promise<{ index: Descriptor; manifests: Map<string, BuiltManifest> }> {
  const manifests = new Map<string, BuiltManifest>();
  const entries: Descriptor[] = [];
  for (const p of platforms) {
    const m = await buildManifest(stores.content, ns, p);
    manifests.set(p, m);
    const [os, architecture, variant] = p.split("/") as [string, string, string?];
    entries.push({
      ...m.manifest,
      platform: variant ? { os, architecture, variant } : { os, architecture },
    });
  }
  const index = await putBlob(
    stores.content,
    ns,
    MediaType.ociIndex,
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: entries }),
  );
  stores.images.create(ns, { name, target: index });
  return { index, manifests };
}

/** Reads a whole stream. */
export async function collect(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of stream) parts.push(c);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The files of a tar, name -> content (directories with an empty value, links as "-> target"). */
export function readTar(tar: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  let name = "";
  let parts: Uint8Array[] = [];
  const r = new TarReader({
    entry: (e) => {
      name = e.name;
      parts = [];
      if (e.type === "symlink" || e.type === "link") parts.push(enc.encode(`-> ${e.linkname}`));
    },
    data: (b) => parts.push(b.slice()),
    end: () => {
      const n = parts.reduce((s, p) => s + p.length, 0);
      const buf = new Uint8Array(n);
      let o = 0;
      for (const p of parts) {
        buf.set(p, o);
        o += p.length;
      }
      out.set(name, buf);
    },
  });
  r.push(tar);
  r.finish();
  return out;
}

/** A stream of `bytes` in chunks of `size` (archives arrive in pieces). */
export function chunked(bytes: Uint8Array, size = 1000): ReadableStream<Uint8Array> {
  let o = 0;
  return new ReadableStream({
    pull(c) {
      if (o >= bytes.length) return c.close();
      c.enqueue(bytes.slice(o, o + size));
      o += size;
    },
  });
}

/** Every digest reachable from the images of `ns` plus their labels, for comparisons. */
export function contentSnapshot(content: ContentStore, ns: string): Map<string, number> {
  return new Map(content.list(ns).map((i) => [i.digest, i.size]));
}
