/**
 * Image export: an OCI image layout tar of named images, streamed, as
 * `ctr export` writes it: `oci-layout`, `index.json` with one entry per image
 * name (annotated with `io.containerd.image.name` and
 * `org.opencontainers.image.ref.name`), and `blobs/<alg>/<hex>` once for
 * every blob reachable from the images. Blobs are written byte for byte, so
 * importing the archive keeps every digest.
 *
 * The Docker format is the same layout plus a `manifest.json` (Config,
 * RepoTags, Layers as `blobs/sha256/<hex>` paths), which is what `docker save`
 * writes since Docker 25: `docker load` reads manifest.json, `ctr import`
 * reads index.json. It holds one platform per image.
 */
import { invalidArgument, isKind, notFound, wrap } from "../core/errdefs.ts";
import type { ContentStore } from "../metadata/content.ts";
import type { Image, ImageStore } from "../metadata/images.ts";
import {
  type Descriptor,
  isIndexType,
  isManifestType,
  MediaType,
  parseIndex,
  parseManifest,
} from "../oci/image.ts";
import {
  hostPlatform,
  matcherOf,
  parsePlatform,
  type PlatformMatcher,
  selectManifests,
} from "../oci/platforms.ts";
import {
  familiarReference,
  formatReference,
  parseReference,
  type Reference,
} from "../oci/reference.ts";
import {
  ANNOTATION_IMAGE_NAME,
  ANNOTATION_REF_NAME,
  blobPath,
  DOCKER_MANIFEST_FILE,
  type DockerManifestEntry,
  INDEX_FILE,
  mayBeAbsent,
  OCI_LAYOUT_FILE,
  OCI_LAYOUT_VERSION,
  tarFile,
  tarHeader,
  tarPadding,
} from "./layout.ts";

/** The stores an export reads. */
export interface ExportStores {
  content: ContentStore;
  images: ImageStore;
}

export interface ExportOptions {
  /** `oci` (default) or `docker` (adds manifest.json; one platform per image). */
  format?: "oci" | "docker";
  /**
   * Platforms (os/arch[/variant]) whose manifests go in. Default: every
   * platform whose manifest is in the content store (for `docker`: the host's).
   */
  platforms?: string[];
  /** Every platform; a manifest missing from the store is then an error. */
  allPlatforms?: boolean;
}

/** Largest manifest or index read from the store. */
const MAX_DOCUMENT = 8 << 20;

/**
 * Resolves the images and the blobs to write, then returns the archive as a
 * stream. Unknown images and missing blobs are reported before any byte is
 * streamed.
 *
 * ```ts
 * const tar = await exportImages({ content, images }, "default", ["docker.io/library/busybox:latest"]);
 * await tar.pipeTo((await Deno.create("busybox.tar")).writable);
 * ```
 */
export async function exportImages(
  stores: ExportStores,
  ns: string,
  names: readonly string[],
  opts: ExportOptions = {},
): Promise<ReadableStream<Uint8Array>> {
  const plan = await planExport(stores, ns, names, opts);
  return ReadableStream.from(writeArchive(stores.content, ns, plan));
}

/** What an export writes. */
export interface ExportPlan {
  index: { schemaVersion: 2; mediaType: string; manifests: Descriptor[] };
  dockerManifest?: DockerManifestEntry[];
  /** Every blob to write, by digest, with its size; each once. */
  blobs: Map<string, number>;
}

/** Works out the archive's index and blob list without writing anything. */
export async function planExport(
  stores: ExportStores,
  ns: string,
  names: readonly string[],
  opts: ExportOptions = {},
): Promise<ExportPlan> {
  if (names.length === 0) throw invalidArgument("Cannot export: no image names given");
  const format = opts.format ?? "oci";
  if (format !== "oci" && format !== "docker") {
    throw invalidArgument(`Cannot export: unknown format "${format}" (want oci or docker)`);
  }
  const docker = format === "docker";
  let matchers: PlatformMatcher[] | undefined;
  if (opts.platforms?.length && !opts.allPlatforms) {
    matchers = opts.platforms.map((p) => matcherOf(parsePlatform(p)));
  } else if (docker && !opts.allPlatforms) {
    matchers = [matcherOf(hostPlatform())];
  }
  const walker = new Walker(stores.content, ns, matchers, opts.allPlatforms ?? false);
  const index: ExportPlan["index"] = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [],
  };
  const dockerEntries = new Map<string, DockerManifestEntry>();
  const seen = new Set<string>();
  for (const name of names) {
    const image = findImage(stores.images, ns, name);
    if (seen.has(image.name)) continue;
    seen.add(image.name);
    const what = `Cannot export image "${image.name}"`;
    const t = image.target;
    const target: Descriptor = { mediaType: t.mediaType, digest: t.digest, size: t.size };
    try {
      await walker.walk(target, true);
      if (docker) {
        const m = await walker.resolveOne(target);
        const manifest = parseManifest(await walker.read(m), { mediaType: m.mediaType });
        let entry = dockerEntries.get(m.digest);
        if (!entry) {
          entry = {
            Config: blobPath(manifest.config.digest),
            RepoTags: [],
            Layers: manifest.layers.map((l) => blobPath(l.digest)),
          };
          dockerEntries.set(m.digest, entry);
        }
        const ref = tryParse(image.name);
        if (ref?.tag !== undefined) {
          entry.RepoTags!.push(
            familiarReference({ domain: ref.domain, path: ref.path, tag: ref.tag }),
          );
        }
      }
    } catch (e) {
      throw wrap(e, what);
    }
    const ref = tryParse(image.name);
    index.manifests.push({
      ...target,
      annotations: {
        [ANNOTATION_IMAGE_NAME]: image.name,
        // ctr export: the tag when the name has one, else the whole name.
        [ANNOTATION_REF_NAME]: ref?.tag ?? image.name,
      },
    });
  }
  const plan: ExportPlan = { index, blobs: walker.blobs };
  if (docker) plan.dockerManifest = [...dockerEntries.values()];
  return plan;
}

function tryParse(name: string): Reference | undefined {
  try {
    return parseReference(name);
  } catch {
    return undefined;
  }
}

/** The image `name`, or the image its normalized form names (`busybox` finds docker.io/library/busybox:latest). */
function findImage(images: ImageStore, ns: string, name: string): Image {
  try {
    return images.get(ns, name);
  } catch (e) {
    if (!isKind(e, "not_found")) throw e;
    const ref = tryParse(name);
    if (ref) {
      const full = formatReference(ref);
      if (full !== name) {
        try {
          return images.get(ns, full);
        } catch (e2) {
          if (!isKind(e2, "not_found")) throw e2;
        }
      }
    }
    throw e;
  }
}

/** Collects the blobs reachable from image targets. */
class Walker {
  readonly blobs = new Map<string, number>();
  #content: ContentStore;
  #ns: string;
  #matchers: PlatformMatcher[] | undefined;
  #all: boolean;

  constructor(
    content: ContentStore,
    ns: string,
    matchers: PlatformMatcher[] | undefined,
    all: boolean,
  ) {
    this.#content = content;
    this.#ns = ns;
    this.#matchers = matchers;
    this.#all = all;
  }

  #visible(d: Descriptor): boolean {
    try {
      const info = this.#content.info(this.#ns, d.digest);
      if (info.size !== d.size) {
        throw invalidArgument(
          `content ${d.digest} has ${info.size} bytes, its descriptor says ${d.size}`,
        );
      }
      return true;
    } catch (e) {
      if (isKind(e, "not_found")) return false;
      throw e;
    }
  }

  async read(d: Descriptor): Promise<Uint8Array> {
    if (d.size > MAX_DOCUMENT) {
      throw invalidArgument(`${d.mediaType} ${d.digest} is ${d.size} bytes, too large`);
    }
    const parts: Uint8Array[] = [];
    for await (const c of this.#content.read(this.#ns, d.digest)) parts.push(c);
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  #wanted(d: Descriptor): boolean {
    if (!this.#matchers || !d.platform) return true;
    return this.#matchers.some((m) => m.match(d.platform!));
  }

  /** Adds `d` and its children; returns false when `d` is absent and not `required`. */
  async walk(d: Descriptor, required: boolean): Promise<boolean> {
    if (this.blobs.has(d.digest)) return true;
    if (!this.#visible(d)) {
      if (required) throw notFound(`content digest ${d.digest}`);
      return false;
    }
    this.blobs.set(d.digest, d.size);
    if (isIndexType(d.mediaType)) {
      const index = parseIndex(await this.read(d), { mediaType: d.mediaType });
      const wanted = index.manifests.filter((m) => this.#wanted(m));
      let present = 0;
      // With allPlatforms every manifest must be there; otherwise the archive
      // holds the (wanted) platforms the store has, at least one.
      for (const m of wanted) if (await this.walk(m, this.#all)) present++;
      if (present === 0 && index.manifests.length > 0) {
        const which = this.#matchers ? " for the platforms asked for" : "";
        throw notFound(`no manifest of index ${d.digest}${which} in the content store`);
      }
    } else if (isManifestType(d.mediaType)) {
      const m = parseManifest(await this.read(d), { mediaType: d.mediaType });
      await this.walk(m.config, true);
      for (const l of m.layers) await this.walk(l, !mayBeAbsent(l));
    }
    return true;
  }

  /** The one platform manifest the Docker format holds for `d`. */
  async resolveOne(d: Descriptor): Promise<Descriptor> {
    if (isManifestType(d.mediaType)) return d;
    if (!isIndexType(d.mediaType)) {
      throw invalidArgument(`${d.mediaType} ${d.digest} is not a manifest or an index`);
    }
    const index = parseIndex(await this.read(d), { mediaType: d.mediaType });
    index.manifests = index.manifests.filter((m) => this.blobs.has(m.digest));
    const matcher = this.#matchers?.[0] ?? matcherOf(hostPlatform());
    const [m] = selectManifests(index, { platform: matcher });
    if (!m) {
      throw notFound(`manifest for platform ${matcher.describe()} in index ${d.digest}`);
    }
    return this.resolveOne(m);
  }
}

/** The archive's bytes: metadata files first, then each blob once, then the end blocks. */
async function* writeArchive(
  content: ContentStore,
  ns: string,
  plan: ExportPlan,
): AsyncGenerator<Uint8Array> {
  const json = (v: unknown) => JSON.stringify(v);
  yield tarFile(OCI_LAYOUT_FILE, json({ imageLayoutVersion: OCI_LAYOUT_VERSION }));
  yield tarFile(INDEX_FILE, json(plan.index));
  if (plan.dockerManifest) yield tarFile(DOCKER_MANIFEST_FILE, json(plan.dockerManifest));
  yield tarHeader("blobs/", { dir: true });
  const algorithms = new Set([...plan.blobs.keys()].map((d) => d.slice(0, d.indexOf(":"))));
  for (const alg of algorithms) yield tarHeader(`blobs/${alg}/`, { dir: true });
  for (const [digest, size] of plan.blobs) {
    yield tarHeader(blobPath(digest), { size });
    let n = 0;
    for await (const chunk of content.read(ns, digest)) {
      n += chunk.length;
      if (n > size) break;
      yield chunk;
    }
    if (n !== size) {
      // The header promised `size` bytes: a short or long blob would corrupt the tar.
      throw new Error(`Cannot export blob ${digest}: read ${n} bytes, expected ${size}`);
    }
    yield tarPadding(size);
  }
  yield new Uint8Array(1024);
}
