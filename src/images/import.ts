/**
 * Image import: reads an OCI image layout tar or a `docker save` tar (either
 * possibly gzip/zstd compressed) as a stream, writes every blob straight into
 * the content store as it passes by, then checks the whole graph and records
 * the images.
 *
 * Nothing in the archive is trusted: a blob stored under `blobs/sha256/<hex>`
 * must hash to that digest, descriptor sizes must match, entry names must stay
 * inside the archive. On any error the ingest in progress is aborted, blobs
 * this import added to the namespace are removed again and no image is
 * recorded.
 *
 * Names, as `ctr import` gives them: an index.json entry's
 * `io.containerd.image.name` annotation, else its
 * `org.opencontainers.image.ref.name` (a bare tag like `latest` is joined to
 * the caller's base name; without one the entry stays unnamed). For `docker
 * save` archives the RepoTags, normalized (`busybox:latest` becomes
 * `docker.io/library/busybox:latest`), and a Docker schema2 manifest is
 * synthesized so the image has a manifest digest, as containerd does.
 */
import { createHash } from "node:crypto";
import { BerthError, invalidArgument, isKind } from "../core/errdefs.ts";
import { decompress, detectCompression } from "../archive/compression.ts";
import { type TarEntry, TarFormatError, TarReader } from "../archive/tar_reader.ts";
import type { ContentStore, ContentWriter } from "../metadata/content.ts";
import type { Labels } from "../metadata/db.ts";
import type { Image, ImageStore } from "../metadata/images.ts";
import {
  type Descriptor,
  type Index,
  isIndexType,
  isManifestType,
  MediaType,
  parseImageConfig,
  parseIndex,
  parseManifest,
} from "../oci/image.ts";
import { matcherOf, selectManifests } from "../oci/platforms.ts";
import { formatReference, parseReference } from "../oci/reference.ts";
import type { Logger } from "../util/log.ts";
import {
  ANNOTATION_IMAGE_NAME,
  ANNOTATION_REF_NAME,
  childLabels,
  cleanEntryName,
  digestOfPath,
  DOCKER_LAYER,
  DOCKER_MANIFEST_FILE,
  DOCKER_REPOSITORIES_FILE,
  type DockerManifestEntry,
  INDEX_FILE,
  mayBeAbsent,
  OCI_LAYOUT_FILE,
} from "./layout.ts";

/** The stores an import writes to. */
export interface ImportStores {
  content: ContentStore;
  images: ImageStore;
  log?: Logger;
}

export interface ImportOptions {
  /** Name for index.json entries that carry only a tag: `<baseName>:<tag>`. */
  baseName?: string;
  /** A lease (in the namespace) holding the blobs while they are written. */
  lease?: string;
  /** Labels for the recorded images. */
  labels?: Labels;
  /** Platforms to unpack (os/arch[/variant]); default: the host's. */
  platforms?: string[];
  /** Unpack every platform the archive holds. */
  allPlatforms?: boolean;
  signal?: AbortSignal;
}

/** One recorded image and the manifests to unpack for it. */
export interface ImportedImage {
  image: Image;
  /** Platform manifests present in the archive that match the platforms asked for. */
  manifests: Descriptor[];
}

export interface ImportResult {
  format: "oci" | "docker";
  images: ImportedImage[];
  /** index.json entries without a usable name (no annotation, or a bare tag without base name). */
  unnamed: Descriptor[];
}

/** Metadata files are read into memory; they are small in any sane archive. */
const MAX_METADATA = 16 << 20;
/** Largest manifest or index read back from the store. */
const MAX_DOCUMENT = 8 << 20;

const METADATA_FILES = new Set([
  INDEX_FILE,
  OCI_LAYOUT_FILE,
  DOCKER_MANIFEST_FILE,
  DOCKER_REPOSITORIES_FILE,
]);

/** A file of the archive that went into the content store. */
interface StoredEntry {
  digest: string;
  size: number;
  /** Its first bytes, to tell a layer's compression. */
  head: Uint8Array;
}

type TarEvent = { kind: "entry"; entry: TarEntry } | { kind: "data"; bytes: Uint8Array } | {
  kind: "end";
};

/** The entry being read. */
interface Current {
  name: string;
  /** Where the data goes: the content store, memory, or nowhere. */
  sink: "store" | "memory" | "skip";
  expected: string;
  size: number;
  ref: string;
  writer?: ContentWriter;
  /** True when the namespace had the blob already: data is skipped. */
  exists: boolean;
  head: Uint8Array;
  headLen: number;
  chunks: Uint8Array[];
}

/**
 * Imports the images of an archive into `ns`. Throws invalid_argument (naming
 * the entry or blob) for malformed archives, having recorded nothing.
 *
 * ```ts
 * const file = await Deno.open("busybox.tar");
 * const { images } = await importImages({ content, images }, "default", file.readable);
 * ```
 */
export async function importImages(
  stores: ImportStores,
  ns: string,
  input: AsyncIterable<Uint8Array>,
  opts: ImportOptions = {},
): Promise<ImportResult> {
  const imp = new Importer(stores, ns, opts);
  try {
    await imp.read(input);
    return await imp.record();
  } catch (e) {
    await imp.rollback();
    throw e;
  }
}

class Importer {
  #content: ContentStore;
  #images: ImageStore;
  #log: Logger | undefined;
  #ns: string;
  #opts: ImportOptions;
  #id = crypto.randomUUID();
  #seq = 0;
  #cur: Current | undefined;
  /** Files stored in the content store, by clean archive path. */
  #stored = new Map<string, StoredEntry>();
  /** Small metadata files, by name. */
  #metadata = new Map<string, Uint8Array>();
  /** Symlinks and hard links: clean path -> clean target path. */
  #links = new Map<string, string>();
  /** Digests this import recorded in the namespace (removed again on failure). */
  #added = new Set<string>();
  /** Blobs whose gc labels are set, and the images' unpack candidates. */
  #walked = new Map<string, Descriptor>();
  #infos = new Map<string, number | undefined>();
  /** Digests the recorded images reference (other stored files are dropped). */
  #referenced = new Set<string>();

  constructor(stores: ImportStores, ns: string, opts: ImportOptions) {
    this.#content = stores.content;
    this.#images = stores.images;
    this.#log = stores.log;
    this.#ns = ns;
    this.#opts = opts;
  }

  /** Reads the whole tar, storing blobs as they come. */
  async read(input: AsyncIterable<Uint8Array>): Promise<void> {
    const events: TarEvent[] = [];
    const reader = new TarReader({
      entry: (entry) => events.push({ kind: "entry", entry }),
      data: (bytes) => events.push({ kind: "data", bytes }),
      end: () => events.push({ kind: "end" }),
    });
    const tarError = (e: unknown): never => {
      if (e instanceof TarFormatError) {
        throw invalidArgument(`Malformed image archive: ${e.message}`, { cause: e });
      }
      throw e;
    };
    let any = false;
    for await (const chunk of decompressed(input)) {
      this.#opts.signal?.throwIfAborted();
      if (chunk.length) any = true;
      try {
        reader.push(chunk);
      } catch (e) {
        // Entries read before the bad block are still handled, so their
        // ingests end up in #added and get rolled back.
        await this.#drain(events);
        tarError(e);
      }
      await this.#drain(events);
    }
    if (!any) throw invalidArgument("Malformed image archive: the archive is empty");
    try {
      reader.finish();
    } catch (e) {
      tarError(e);
    }
  }

  async #drain(events: TarEvent[]): Promise<void> {
    // The data views point into the chunk just pushed, which nothing reuses,
    // so they stay valid while the writes are awaited.
    for (const ev of events) {
      if (ev.kind === "entry") await this.#entry(ev.entry);
      else if (ev.kind === "data") await this.#data(ev.bytes);
      else await this.#end();
    }
    events.length = 0;
  }

  async #entry(e: TarEntry): Promise<void> {
    this.#cur = undefined;
    const name = cleanEntryName(e.name);
    if (e.type === "symlink" || e.type === "link") {
      // `docker save` links layer.tar files that several images share.
      const base = e.type === "symlink" ? name.split("/").slice(0, -1).join("/") : "";
      if (e.linkname.startsWith("/")) {
        throw invalidArgument(`Invalid archive entry "${e.name}": link to an absolute path`);
      }
      const parts: string[] = [];
      for (const p of `${base}/${e.linkname}`.split("/")) {
        if (p === "" || p === ".") continue;
        if (p !== "..") parts.push(p);
        else if (parts.pop() === undefined) {
          throw invalidArgument(
            `Invalid archive entry "${e.name}": link target "${e.linkname}" escapes the archive`,
          );
        }
      }
      this.#links.set(name, parts.join("/"));
      return;
    }
    if (e.type !== "file") return; // directories; devices have no place here and are ignored
    const cur: Current = {
      name,
      sink: "store",
      expected: digestOfPath(name) ?? "",
      size: e.size,
      ref: `import-${this.#id}-${this.#seq++}`,
      exists: false,
      head: new Uint8Array(4),
      headLen: 0,
      chunks: [],
    };
    if (METADATA_FILES.has(name)) {
      if (e.size > MAX_METADATA) {
        throw invalidArgument(
          `Invalid archive entry "${name}": ${e.size} bytes is too large for a metadata file`,
        );
      }
      cur.sink = "memory";
    } else if (!cur.expected && /^[^/]+\/(json|VERSION)$/.test(name)) {
      cur.sink = "skip"; // `docker save`'s legacy v1 layer metadata: unused
    }
    this.#cur = cur;
    if (cur.sink !== "store") return;
    try {
      cur.writer = await this.#content.writer(this.#ns, cur.ref, {
        expected: cur.expected,
        total: e.size,
        lease: this.#opts.lease,
      });
    } catch (err) {
      if (!isKind(err, "already_exists")) throw err;
      cur.exists = true;
    }
  }

  async #data(bytes: Uint8Array): Promise<void> {
    const cur = this.#cur;
    if (!cur) return;
    if (cur.headLen < 4) {
      const n = Math.min(4 - cur.headLen, bytes.length);
      cur.head.set(bytes.subarray(0, n), cur.headLen);
      cur.headLen += n;
    }
    if (cur.sink === "memory") cur.chunks.push(bytes.slice());
    else if (cur.writer) await cur.writer.write(bytes);
  }

  async #end(): Promise<void> {
    const cur = this.#cur;
    if (!cur) return; // directories and links have no data
    const head = cur.head.subarray(0, cur.headLen);
    if (cur.sink === "memory") {
      this.#metadata.set(cur.name, concat(cur.chunks));
    } else if (cur.sink === "store") {
      if (cur.exists) {
        // The namespace's copy counts, not the archive's unread bytes.
        const size = this.#content.info(this.#ns, cur.expected).size;
        this.#stored.set(cur.name, { digest: cur.expected, size, head });
      } else {
        const w = cur.writer!;
        let digest: string;
        try {
          digest = await w.commit(cur.size, cur.expected);
          this.#added.add(digest);
        } catch (e) {
          if (isKind(e, "already_exists")) digest = w.digest();
          else if (isKind(e, "failed_precondition")) {
            throw invalidArgument(
              `Invalid archive entry "${cur.name}": its content does not match its digest ` +
                `(the bytes hash to ${w.digest()})`,
              { cause: e },
            );
          } else throw e;
        }
        this.#stored.set(cur.name, { digest, size: cur.size, head });
      }
    }
    this.#cur = undefined;
  }

  /** Undoes what a failed import did in the namespace. */
  async rollback(): Promise<void> {
    const cur = this.#cur;
    if (cur?.writer) {
      if (cur.writer.open) cur.writer.close();
      await this.#content.abort(this.#ns, cur.ref, this.#opts.lease).catch(() => {});
    }
    for (const digest of this.#added) {
      try {
        this.#content.delete(this.#ns, digest, this.#opts.lease);
      } catch (e) {
        this.#log?.warn("cannot remove blob of a failed import", { digest, error: e });
      }
    }
    this.#added.clear();
  }

  /** Checks the archive's images and records them. */
  async record(): Promise<ImportResult> {
    let result: { format: "oci" | "docker"; images: Pending[]; unnamed: Descriptor[] };
    if (this.#metadata.has(INDEX_FILE)) result = await this.#oci();
    else if (this.#metadata.has(DOCKER_MANIFEST_FILE)) result = await this.#docker();
    else {
      throw invalidArgument(
        "Invalid image archive: it has neither index.json (OCI image layout) " +
          "nor manifest.json (docker save)",
      );
    }
    if (result.images.length === 0) {
      throw invalidArgument(
        "Invalid image archive: it names no image (index.json entries need an " +
          `"${ANNOTATION_IMAGE_NAME}" or "${ANNOTATION_REF_NAME}" annotation; ` +
          "give a base name for entries named only by a tag)",
      );
    }
    // Later entries with the same name win, as they would one after the other.
    const byName = new Map<string, Pending>();
    for (const p of result.images) byName.set(p.name, p);
    const images: ImportedImage[] = [];
    for (const p of byName.values()) {
      const input = { name: p.name, labels: this.#opts.labels ?? {}, target: p.target };
      let image: Image;
      try {
        image = this.#images.create(this.#ns, input);
      } catch (e) {
        if (!isKind(e, "already_exists")) throw e;
        const paths = this.#opts.labels ? ["target", "labels"] : ["target"];
        image = this.#images.update(this.#ns, input, paths);
      }
      images.push({ image, manifests: p.manifests });
    }
    // Files that are no blob of any image (stray entries) are not kept.
    for (const digest of this.#added) {
      if (!this.#referenced.has(digest)) this.#content.delete(this.#ns, digest, this.#opts.lease);
    }
    // From here on the blobs belong to the images.
    this.#added.clear();
    this.#log?.info("images imported", {
      namespace: this.#ns,
      format: result.format,
      images: images.map((i) => i.image.name),
    });
    return { format: result.format, images, unnamed: result.unnamed };
  }

  // ---------------------------------------------------------------- OCI layout

  async #oci(): Promise<{ format: "oci"; images: Pending[]; unnamed: Descriptor[] }> {
    const layout = this.#metadata.get(OCI_LAYOUT_FILE);
    if (layout) {
      let version: unknown;
      try {
        version = (JSON.parse(new TextDecoder().decode(layout)) as Record<string, unknown>)
          .imageLayoutVersion;
      } catch {
        throw invalidArgument(`Invalid archive entry "${OCI_LAYOUT_FILE}": not valid JSON`);
      }
      if (typeof version !== "string" || !version.startsWith("1.")) {
        throw invalidArgument(
          `Invalid archive entry "${OCI_LAYOUT_FILE}": unsupported imageLayoutVersion ${
            JSON.stringify(version)
          }, expected "1.0.0"`,
        );
      }
    }
    const index = parseIndex(this.#metadata.get(INDEX_FILE)!, { what: INDEX_FILE });
    const images: Pending[] = [];
    const unnamed: Descriptor[] = [];
    for (const [i, desc] of index.manifests.entries()) {
      const what = `${INDEX_FILE} manifests[${i}]`;
      await this.#walk(desc, what, true);
      const name = this.#nameOf(desc, what);
      if (name === undefined) {
        unnamed.push(desc);
        continue;
      }
      images.push({
        name,
        target: {
          mediaType: desc.mediaType,
          digest: desc.digest,
          size: desc.size,
          annotations: desc.annotations ?? {},
        },
        manifests: await this.#unpackable(desc),
      });
    }
    return { format: "oci", images, unnamed };
  }

  #nameOf(desc: Descriptor, what: string): string | undefined {
    const full = desc.annotations?.[ANNOTATION_IMAGE_NAME];
    if (full) return normalizeName(full, `${what} annotation ${ANNOTATION_IMAGE_NAME}`);
    const ref = desc.annotations?.[ANNOTATION_REF_NAME];
    if (!ref) return undefined;
    const annotation = `${what} annotation ${ANNOTATION_REF_NAME}`;
    // Like ctr's ref translator: anything with / : @ is a whole reference.
    if (/[/:@]/.test(ref)) return normalizeName(ref, annotation);
    const base = this.#opts.baseName;
    if (!base) return undefined;
    return normalizeName(`${base}:${ref}`, annotation);
  }

  /** The size of a visible blob, or undefined. */
  #sizeOf(digest: string): number | undefined {
    if (this.#infos.has(digest)) return this.#infos.get(digest);
    let size: number | undefined;
    try {
      size = this.#content.info(this.#ns, digest).size;
    } catch (e) {
      if (!isKind(e, "not_found")) throw e;
    }
    this.#infos.set(digest, size);
    return size;
  }

  /**
   * Checks that `desc` and what it references are in the store with the
   * sizes the descriptors give, and labels indexes and manifests so GC keeps
   * their children. Manifests of an index may be absent (an archive exported
   * for some platforms only); a manifest's config and layers may not.
   */
  async #walk(desc: Descriptor, what: string, required: boolean): Promise<boolean> {
    if (this.#walked.has(desc.digest)) return true;
    const size = this.#sizeOf(desc.digest);
    if (size === undefined) {
      if (!required) return false;
      throw invalidArgument(
        `Invalid image archive: ${what} (${desc.digest}) is not in the archive`,
      );
    }
    if (size !== desc.size) {
      throw invalidArgument(
        `Invalid image archive: ${what} (${desc.digest}) has ${size} bytes, its descriptor says ${desc.size}`,
      );
    }
    this.#walked.set(desc.digest, desc);
    this.#referenced.add(desc.digest);
    if (isIndexType(desc.mediaType)) {
      const index = parseIndex(await this.#readDoc(desc, what), {
        what: `${what} (${desc.digest})`,
        mediaType: desc.mediaType,
      });
      let present = 0;
      for (const [i, m] of index.manifests.entries()) {
        if (await this.#walk(m, `manifest ${i} of ${what}`, false)) present++;
      }
      if (present === 0 && index.manifests.length > 0) {
        throw invalidArgument(
          `Invalid image archive: none of the manifests of ${what} (${desc.digest}) is in the archive`,
        );
      }
      this.#label(desc.digest, childLabels(desc.mediaType, index));
    } else if (isManifestType(desc.mediaType)) {
      const manifest = parseManifest(await this.#readDoc(desc, what), {
        what: `${what} (${desc.digest})`,
        mediaType: desc.mediaType,
      });
      await this.#walk(manifest.config, `config of ${what}`, true);
      for (const [i, l] of manifest.layers.entries()) {
        await this.#walk(l, `layer ${i} of ${what}`, !mayBeAbsent(l));
      }
      this.#label(desc.digest, childLabels(desc.mediaType, manifest));
    } else if (what.startsWith(INDEX_FILE)) {
      throw invalidArgument(
        `Invalid image archive: ${what} has media type "${desc.mediaType}", not a manifest or an index`,
      );
    }
    return true;
  }

  async #readDoc(desc: Descriptor, what: string): Promise<Uint8Array> {
    if (desc.size > MAX_DOCUMENT) {
      throw invalidArgument(
        `Invalid image archive: ${what} (${desc.digest}) is ${desc.size} bytes, too large for a manifest`,
      );
    }
    const parts: Uint8Array[] = [];
    for await (const c of this.#content.read(this.#ns, desc.digest)) parts.push(c);
    return concat(parts);
  }

  #label(digest: string, labels: Record<string, string>): void {
    const keys = Object.keys(labels);
    if (keys.length === 0) return;
    this.#content.update(this.#ns, digest, labels, keys.map((k) => `labels.${k}`));
  }

  /** The platform manifests to unpack under `desc`, among those present. */
  async #unpackable(desc: Descriptor): Promise<Descriptor[]> {
    if (isManifestType(desc.mediaType)) return [desc];
    if (!isIndexType(desc.mediaType)) return [];
    const index = parseIndex(await this.#readDoc(desc, desc.digest), {
      mediaType: desc.mediaType,
    });
    const present: Index = {
      ...index,
      manifests: index.manifests.filter((m) => this.#walked.has(m.digest)),
    };
    const chosen = new Map<string, Descriptor>();
    if (this.#opts.allPlatforms) {
      for (const m of selectManifests(present, { all: true })) chosen.set(m.digest, m);
    } else {
      const platforms = this.#opts.platforms?.length ? this.#opts.platforms : [undefined];
      for (const p of platforms) {
        for (const m of selectManifests(present, { platform: matcherOf(p) })) {
          chosen.set(m.digest, m);
        }
      }
    }
    const out: Descriptor[] = [];
    for (const m of chosen.values()) out.push(...await this.#unpackable(m));
    return out;
  }

  // --------------------------------------------------------------- docker save

  async #docker(): Promise<{ format: "docker"; images: Pending[]; unnamed: Descriptor[] }> {
    const entries = parseDockerManifest(this.#metadata.get(DOCKER_MANIFEST_FILE)!);
    const images: Pending[] = [];
    const unnamed: Descriptor[] = [];
    for (const [i, e] of entries.entries()) {
      const what = `${DOCKER_MANIFEST_FILE} entry ${i}`;
      const config = this.#file(e.Config, `${what} Config`);
      const configName = cleanEntryName(e.Config);
      const m = /^([a-f0-9]{64})\.json$/.exec(configName);
      if (m && config.digest !== `sha256:${m[1]}`) {
        throw invalidArgument(
          `Invalid archive entry "${configName}": its content does not match its digest ` +
            `(the bytes hash to ${config.digest})`,
        );
      }
      const configDesc: Descriptor = {
        mediaType: MediaType.dockerConfig,
        digest: config.digest,
        size: config.size,
      };
      const cfg = parseImageConfig(
        await this.#readDoc(configDesc, `${what} Config`),
        `image config "${configName}"`,
      );
      const diffIds = cfg.rootfs.diff_ids;
      if (diffIds.length !== e.Layers.length) {
        throw invalidArgument(
          `Invalid image archive: ${what} lists ${e.Layers.length} layers but its config has ${diffIds.length} diff_ids`,
        );
      }
      const layers: Descriptor[] = e.Layers.map((path, j) => {
        const l = this.#file(path, `${what} Layers[${j}]`);
        const compression = detectCompression(l.head);
        // An uncompressed layer's digest is its diff_id: check it here, since
        // the classic layout names layers by v1 ids, not by digest.
        if (compression === "none" && l.digest !== diffIds[j]) {
          throw invalidArgument(
            `Invalid archive entry "${cleanEntryName(path)}": its content (${l.digest}) ` +
              `does not match diff_id ${diffIds[j]} of the image config`,
          );
        }
        const mediaType = compression === "gzip"
          ? MediaType.dockerLayerGzip
          : compression === "zstd"
          ? "application/vnd.docker.image.rootfs.diff.tar.zstd"
          : DOCKER_LAYER;
        return { mediaType, digest: l.digest, size: l.size };
      });
      // Key order as Go marshals containerd's struct, so the digest matches ctr import's.
      const manifest = {
        schemaVersion: 2,
        mediaType: MediaType.dockerManifest,
        config: configDesc,
        layers,
      };
      this.#referenced.add(config.digest);
      for (const l of layers) this.#referenced.add(l.digest);
      const desc = await this.#putDoc(
        MediaType.dockerManifest,
        new TextEncoder().encode(JSON.stringify(manifest)),
        childLabels(MediaType.dockerManifest, manifest),
      );
      const tags = e.RepoTags ?? [];
      if (tags.length === 0) unnamed.push(desc);
      for (const [j, tag] of tags.entries()) {
        images.push({
          name: normalizeName(tag, `${what} RepoTags[${j}]`),
          target: {
            mediaType: desc.mediaType,
            digest: desc.digest,
            size: desc.size,
            annotations: {},
          },
          manifests: [desc],
        });
      }
    }
    return { format: "docker", images, unnamed };
  }

  /** The stored file an archive path names, following links. */
  #file(path: string, what: string): StoredEntry {
    let name = cleanEntryName(path);
    for (let hops = 0; hops < 16 && !this.#stored.has(name); hops++) {
      const next = this.#links.get(name);
      if (next === undefined) break;
      name = next;
    }
    const f = this.#stored.get(name);
    if (!f) {
      throw invalidArgument(`Invalid image archive: ${what} "${path}" is not in the archive`);
    }
    return f;
  }

  /** Writes a small document to the store with `labels`. */
  async #putDoc(mediaType: string, bytes: Uint8Array, labels: Labels): Promise<Descriptor> {
    const digest = `sha256:${sha256Hex(bytes)}`;
    const desc = { mediaType, digest, size: bytes.length };
    this.#referenced.add(digest);
    let w: ContentWriter;
    try {
      w = await this.#content.writer(this.#ns, `import-${this.#id}-${this.#seq++}`, {
        expected: digest,
        total: bytes.length,
        lease: this.#opts.lease,
      });
    } catch (e) {
      if (!isKind(e, "already_exists")) throw e;
      this.#label(digest, labels);
      return desc;
    }
    try {
      await w.write(bytes);
      await w.commit(bytes.length, digest, { labels });
      this.#added.add(digest);
    } catch (e) {
      if (!isKind(e, "already_exists")) {
        if (w.open) w.close();
        await this.#content.abort(this.#ns, w.ref, this.#opts.lease).catch(() => {});
        throw e;
      }
      this.#label(digest, labels);
    }
    return desc;
  }
}

/** An image about to be recorded. */
interface Pending {
  name: string;
  target: { mediaType: string; digest: string; size: number; annotations: Labels };
  manifests: Descriptor[];
}

/** Parses `docker save`'s manifest.json, checking the fields import uses. */
export function parseDockerManifest(bytes: Uint8Array): DockerManifestEntry[] {
  const bad = (why: string) =>
    invalidArgument(`Invalid archive entry "${DOCKER_MANIFEST_FILE}": ${why}`);
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw bad(`not valid JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(v)) throw bad("not a JSON array");
  v.forEach((e, i) => {
    if (e === null || typeof e !== "object") throw bad(`entry ${i} is not an object`);
    const o = e as Record<string, unknown>;
    if (typeof o.Config !== "string") throw bad(`entry ${i}: "Config" must be a string`);
    if (!Array.isArray(o.Layers) || !o.Layers.every((l) => typeof l === "string")) {
      throw bad(`entry ${i}: "Layers" must be an array of strings`);
    }
    if (
      o.RepoTags !== undefined && o.RepoTags !== null &&
      (!Array.isArray(o.RepoTags) || !o.RepoTags.every((t) => typeof t === "string"))
    ) {
      throw bad(`entry ${i}: "RepoTags" must be an array of strings`);
    }
  });
  return v as DockerManifestEntry[];
}

/** A full image name; `what` says where it came from for the error. */
function normalizeName(name: string, what: string): string {
  try {
    return formatReference(parseReference(name));
  } catch (e) {
    if (e instanceof BerthError) {
      throw invalidArgument(`Invalid image archive: ${what}: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

async function* decompressed(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  try {
    yield* decompress(input);
  } catch (e) {
    if (e instanceof BerthError) throw e;
    // zlib errors: a corrupt or truncated compressed archive.
    if (e instanceof Error && "code" in e && String(e.code).startsWith("Z_")) {
      throw invalidArgument(`Malformed image archive: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
