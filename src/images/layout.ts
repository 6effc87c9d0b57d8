/**
 * What image archives share, for import and export: the OCI image layout's
 * file names and annotations, `docker save`'s manifest.json, the gc.ref
 * labels a parent blob carries for its children, archive entry name checks,
 * and a ustar header writer for streamed blobs.
 *
 * OCI image layout: https://github.com/opencontainers/image-spec/blob/v1.1.0/image-layout.md
 * `docker save`: https://github.com/moby/moby/blob/master/image/spec/v1.2.md (manifest.json)
 */
import { invalidArgument } from "../core/errdefs.ts";
import { type Descriptor, isIndexType, isManifestType, MediaType } from "../oci/image.ts";

/** The file marking an OCI image layout, and its only version. */
export const OCI_LAYOUT_FILE = "oci-layout";
export const OCI_LAYOUT_VERSION = "1.0.0";
export const INDEX_FILE = "index.json";
/** `docker save`'s list of images. */
export const DOCKER_MANIFEST_FILE = "manifest.json";
/** `docker save`'s legacy repository -> tag -> image id map. */
export const DOCKER_REPOSITORIES_FILE = "repositories";

/** The full image name containerd (and Docker 25+) put on index.json entries. */
export const ANNOTATION_IMAGE_NAME = "io.containerd.image.name";
/** The OCI tag (or full reference) of an index.json entry. */
export const ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name";

/** Media type of an uncompressed Docker schema2 layer (absent from MediaType). */
export const DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar";

/** containerd's prefix for the labels through which GC finds a blob's children. */
export const GC_REF_CONTENT = "containerd.io/gc.ref.content";

/** One image of a `docker save` manifest.json. */
export interface DockerManifestEntry {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
  LayerSources?: Record<string, Descriptor>;
}

/** The path of a blob inside a layout: `blobs/sha256/<hex>`. */
export function blobPath(digest: string): string {
  const i = digest.indexOf(":");
  return `blobs/${digest.slice(0, i)}/${digest.slice(i + 1)}`;
}

/** The digest a `blobs/<alg>/<hex>` path names, or undefined for other paths. */
export function digestOfPath(path: string): string | undefined {
  const m = /^blobs\/(sha256|sha384|sha512)\/([a-f0-9]+)$/.exec(path);
  if (!m) return undefined;
  const want = { sha256: 64, sha384: 96, sha512: 128 }[m[1] as "sha256"];
  return m[2]!.length === want ? `${m[1]}:${m[2]}` : undefined;
}

/**
 * Cleans an archive entry name (`./a//b/` -> `a/b`). Throws invalid_argument
 * for names that are absolute or climb out of the archive with `..`: an
 * archive is never trusted to name only its own files.
 */
export function cleanEntryName(name: string): string {
  if (name.startsWith("/")) {
    throw invalidArgument(`Invalid archive entry "${name}": absolute path`);
  }
  const parts: string[] = [];
  for (const p of name.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") {
      throw invalidArgument(`Invalid archive entry "${name}": path escapes the archive`);
    }
    parts.push(p);
  }
  return parts.join("/");
}

/**
 * The labels a parent blob carries so that GC keeps its children, with
 * containerd's names: `.m.<i>` for an index's manifests, `.config` and
 * `.l.<i>` for a manifest's config and layers.
 */
export function childLabels(mediaType: string, doc: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const o = doc as { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
  if (isIndexType(mediaType)) {
    o.manifests?.forEach((d, i) => (out[`${GC_REF_CONTENT}.m.${i}`] = d.digest));
  } else if (isManifestType(mediaType)) {
    if (o.config) out[`${GC_REF_CONTENT}.config`] = o.config.digest;
    o.layers?.forEach((d, i) => (out[`${GC_REF_CONTENT}.l.${i}`] = d.digest));
  }
  return out;
}

/** True for layers a registry may leave out (foreign and non-distributable ones with URLs). */
export function mayBeAbsent(d: Descriptor): boolean {
  const nondistributable = d.mediaType === MediaType.dockerLayerForeignGzip ||
    d.mediaType.startsWith("application/vnd.oci.image.layer.nondistributable.");
  return nondistributable && (d.urls?.length ?? 0) > 0;
}

const enc = new TextEncoder();

function octal(b: Uint8Array, off: number, len: number, v: number): void {
  const s = v.toString(8).padStart(len - 1, "0");
  if (s.length > len - 1) throw new Error(`tar field too small for ${v}`);
  b.set(enc.encode(s), off);
  b[off + len - 1] = 0;
}

/**
 * A ustar header for a file of `size` bytes or a directory, whose data the
 * caller streams after it (then {@link tarPadding}). Names are at most 100
 * bytes, which every layout path is (`blobs/sha512/<128 hex>` is 141: those
 * go in the ustar prefix field).
 */
export function tarHeader(name: string, opts: { size?: number; dir?: boolean }): Uint8Array {
  const b = new Uint8Array(512);
  let n = enc.encode(name);
  if (n.length > 100) {
    const cut = name.lastIndexOf("/", 155);
    const prefix = enc.encode(name.slice(0, cut));
    n = enc.encode(name.slice(cut + 1));
    if (cut <= 0 || prefix.length > 155 || n.length > 100) {
      throw new Error(`tar entry name too long: "${name}"`);
    }
    b.set(prefix, 345);
  }
  b.set(n, 0);
  octal(b, 100, 8, opts.dir ? 0o755 : 0o644);
  octal(b, 108, 8, 0);
  octal(b, 116, 8, 0);
  const size = opts.size ?? 0;
  // 11 octal digits hold 8 GiB - 1; bigger blobs use GNU base-256, as Go's archive/tar does.
  if (size < 8 * 1024 ** 3) octal(b, 124, 12, size);
  else {
    b[124] = 0x80;
    let v = size;
    for (let i = 135; i > 124; i--) {
      b[i] = v % 256;
      v = Math.floor(v / 256);
    }
  }
  // A fixed mtime makes exports of the same images byte-identical.
  octal(b, 136, 12, 0);
  b.fill(0x20, 148, 156);
  b[156] = opts.dir ? 0x35 : 0x30;
  b.set(enc.encode("ustar\u000000"), 257);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += b[i]!;
  octal(b, 148, 7, sum);
  b[155] = 0x20;
  return b;
}

/** The zero bytes that pad `size` bytes of data to a whole tar block. */
export function tarPadding(size: number): Uint8Array {
  return new Uint8Array((512 - (size % 512)) % 512);
}

/** A whole small file entry: header, data and padding. */
export function tarFile(name: string, data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  const out = new Uint8Array(512 + bytes.length + tarPadding(bytes.length).length);
  out.set(tarHeader(name, { size: bytes.length }), 0);
  out.set(bytes, 512);
  return out;
}
