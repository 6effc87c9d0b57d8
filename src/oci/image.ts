/**
 * OCI image-spec and Docker schema2 media types and document types, with
 * validating parsers. Parsers check only what berth relies on (media types,
 * digests, sizes, the shape of descriptors), keep unknown fields, and throw
 * invalid_argument naming the document and the field that is wrong.
 *
 * Specs: https://github.com/opencontainers/image-spec/blob/v1.1.0/manifest.md,
 * image-index.md, config.md, descriptor.md; Docker's manifest v2 schema 2.
 */
import { invalidArgument, notImplemented } from "../core/errdefs.ts";
import { validateDigest } from "./reference.ts";

/** Media types berth knows. */
export const MediaType = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  ociLayerNondistributable: "application/vnd.oci.image.layer.nondistributable.v1.tar",
  ociLayerNondistributableGzip: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  ociLayerNondistributableZstd: "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
  ociEmpty: "application/vnd.oci.empty.v1+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayerForeignGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  dockerSchema1Manifest: "application/vnd.docker.distribution.manifest.v1+json",
  dockerSchema1SignedManifest: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

/** Annotation Docker's buildx puts on attestation manifests in an index. */
export const ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type";
export const ATTESTATION_MANIFEST = "attestation-manifest";
/** Annotation naming the tag of an entry in an OCI layout's index.json. */
export const ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name";

/** A platform as carried in an index entry or an image config. */
export interface Platform {
  architecture: string;
  os: string;
  "os.version"?: string;
  "os.features"?: string[];
  variant?: string;
}

/** A content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

/** An OCI image index or a Docker manifest list. */
export interface Index {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** An OCI image manifest or a Docker schema2 manifest. */
export interface Manifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** The execution parameters in an image config. */
export interface ImageRuntimeConfig {
  User?: string;
  ExposedPorts?: Record<string, unknown>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, unknown>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
}

/** An OCI image config (Docker's config is the same shape for what berth uses). */
export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  "os.version"?: string;
  "os.features"?: string[];
  variant?: string;
  config?: ImageRuntimeConfig;
  rootfs: { type: string; diff_ids: string[] };
  history?: Array<Record<string, unknown>>;
}

/** True for an OCI index or Docker manifest list. */
export function isIndexType(mediaType: string): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
}

/** True for an OCI image manifest or Docker schema2 manifest. */
export function isManifestType(mediaType: string): boolean {
  return mediaType === MediaType.ociManifest || mediaType === MediaType.dockerManifest;
}

/** True for Docker schema 1 manifests, which berth refuses. */
export function isSchema1Type(mediaType: string): boolean {
  return mediaType === MediaType.dockerSchema1Manifest ||
    mediaType === MediaType.dockerSchema1SignedManifest;
}

/** True for the image config types. */
export function isConfigType(mediaType: string): boolean {
  return mediaType === MediaType.ociConfig || mediaType === MediaType.dockerConfig;
}

/** Layer compression from a layer media type, or undefined when not a known layer type. */
export function layerCompression(mediaType: string): "none" | "gzip" | "zstd" | undefined {
  switch (mediaType) {
    case MediaType.ociLayer:
    case MediaType.ociLayerNondistributable:
      return "none";
    case MediaType.ociLayerGzip:
    case MediaType.ociLayerNondistributableGzip:
    case MediaType.dockerLayerGzip:
    case MediaType.dockerLayerForeignGzip:
      return "gzip";
    case MediaType.ociLayerZstd:
    case MediaType.ociLayerNondistributableZstd:
      return "zstd";
  }
  return undefined;
}

/** The error for a schema 1 manifest, shared by the parsers and the resolver. */
export function schema1Error(what: string, mediaType: string): Error {
  return notImplemented(
    `${what}: Docker image manifest schema 1 (${mediaType}) is not supported; ` +
      "push the image again with schema 2 or OCI media types",
  );
}

type Json = Record<string, unknown>;

function decode(bytes: Uint8Array | string, what: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes));
  } catch (e) {
    throw invalidArgument(`Malformed ${what}: not valid JSON: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw invalidArgument(`Malformed ${what}: not a JSON object`);
  }
  return v as Json;
}

function str(o: Json, key: string, what: string, optional = false): string | undefined {
  const v = o[key];
  if (v === undefined && optional) return undefined;
  if (typeof v !== "string") throw invalidArgument(`Malformed ${what}: "${key}" must be a string`);
  return v;
}

function stringMap(o: Json, key: string, what: string): void {
  const v = o[key];
  if (v === undefined) return;
  if (
    v === null || typeof v !== "object" || Array.isArray(v) ||
    !Object.values(v).every((x) => typeof x === "string")
  ) {
    throw invalidArgument(`Malformed ${what}: "${key}" must be an object of strings`);
  }
}

/** Validates a descriptor object in place and returns it typed. */
export function parseDescriptor(v: unknown, what = "descriptor"): Descriptor {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw invalidArgument(`Malformed ${what}: not a JSON object`);
  }
  const o = v as Json;
  str(o, "mediaType", what);
  const digest = str(o, "digest", what)!;
  try {
    validateDigest(digest);
  } catch {
    throw invalidArgument(`Malformed ${what}: invalid digest "${digest}"`);
  }
  const size = o.size;
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw invalidArgument(`Malformed ${what}: "size" must be a non-negative integer`);
  }
  stringMap(o, "annotations", what);
  if (
    o.urls !== undefined && (!Array.isArray(o.urls) || !o.urls.every((u) => typeof u === "string"))
  ) {
    throw invalidArgument(`Malformed ${what}: "urls" must be an array of strings`);
  }
  if (o.platform !== undefined) {
    const p = o.platform as Json;
    if (p === null || typeof p !== "object") {
      throw invalidArgument(`Malformed ${what}: "platform" must be an object`);
    }
    str(p, "architecture", `${what} platform`);
    str(p, "os", `${what} platform`);
    str(p, "variant", `${what} platform`, true);
  }
  return o as unknown as Descriptor;
}

function checkSchema(o: Json, what: string, expected: string, mediaType?: string): void {
  const mt = o.mediaType;
  if (typeof mt === "string" && isSchema1Type(mt)) throw schema1Error(what, mt);
  if (o.schemaVersion === 1) throw schema1Error(what, mediaType ?? "schemaVersion 1");
  if (o.schemaVersion !== 2) {
    throw invalidArgument(`Malformed ${what}: "schemaVersion" must be 2`);
  }
  if (mt !== undefined && mt !== expected && !(mediaType && mt === mediaType)) {
    throw invalidArgument(
      `Malformed ${what}: "mediaType" is "${String(mt)}", expected "${expected}"`,
    );
  }
}

/**
 * Parses an index (OCI index or Docker manifest list). `mediaType` is the type
 * the document was served or described as.
 */
export function parseIndex(
  bytes: Uint8Array | string,
  opts: { what?: string; mediaType?: string } = {},
): Index {
  const what = opts.what ?? "image index";
  const o = decode(bytes, what);
  const expected = opts.mediaType && isIndexType(opts.mediaType)
    ? opts.mediaType
    : MediaType.ociIndex;
  checkSchema(o, what, expected, opts.mediaType);
  if (!Array.isArray(o.manifests)) {
    throw invalidArgument(`Malformed ${what}: "manifests" must be an array`);
  }
  o.manifests.forEach((d, i) => parseDescriptor(d, `${what} manifests[${i}]`));
  stringMap(o, "annotations", what);
  return o as unknown as Index;
}

/** Parses an image manifest (OCI or Docker schema2). */
export function parseManifest(
  bytes: Uint8Array | string,
  opts: { what?: string; mediaType?: string } = {},
): Manifest {
  const what = opts.what ?? "image manifest";
  const o = decode(bytes, what);
  const expected = opts.mediaType && isManifestType(opts.mediaType)
    ? opts.mediaType
    : MediaType.ociManifest;
  checkSchema(o, what, expected, opts.mediaType);
  parseDescriptor(o.config, `${what} config`);
  if (!Array.isArray(o.layers)) {
    throw invalidArgument(`Malformed ${what}: "layers" must be an array`);
  }
  o.layers.forEach((d, i) => parseDescriptor(d, `${what} layers[${i}]`));
  stringMap(o, "annotations", what);
  return o as unknown as Manifest;
}

/** Parses an image config, checking the fields an unpack and a run depend on. */
export function parseImageConfig(bytes: Uint8Array | string, what = "image config"): ImageConfig {
  const o = decode(bytes, what);
  str(o, "architecture", what);
  str(o, "os", what);
  const rootfs = o.rootfs as Json | undefined;
  if (rootfs === undefined || rootfs === null || typeof rootfs !== "object") {
    throw invalidArgument(`Malformed ${what}: "rootfs" must be an object`);
  }
  if (rootfs.type !== "layers") {
    throw invalidArgument(`Malformed ${what}: "rootfs.type" must be "layers"`);
  }
  if (!Array.isArray(rootfs.diff_ids)) {
    throw invalidArgument(`Malformed ${what}: "rootfs.diff_ids" must be an array`);
  }
  rootfs.diff_ids.forEach((d, i) => {
    if (typeof d !== "string") {
      throw invalidArgument(`Malformed ${what}: "rootfs.diff_ids[${i}]" must be a string`);
    }
    try {
      validateDigest(d);
    } catch {
      throw invalidArgument(`Malformed ${what}: "rootfs.diff_ids[${i}]" is not a digest: "${d}"`);
    }
  });
  const cfg = o.config as Json | undefined | null;
  if (cfg !== undefined && cfg !== null) {
    if (typeof cfg !== "object") {
      throw invalidArgument(`Malformed ${what}: "config" must be an object`);
    }
    for (const k of ["Env", "Entrypoint", "Cmd"]) {
      const v = cfg[k];
      if (
        v !== undefined && v !== null &&
        (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
      ) {
        throw invalidArgument(`Malformed ${what}: "config.${k}" must be an array of strings`);
      }
    }
  }
  return o as unknown as ImageConfig;
}

/**
 * Works out the media type of a manifest-like document when the server gave
 * none or a generic one (`application/json`): from its `mediaType` field, then
 * from its shape (`manifests` means index, `config` means manifest).
 */
export function detectManifestType(bytes: Uint8Array | string, what = "manifest"): string {
  const o = decode(bytes, what);
  if (typeof o.mediaType === "string" && o.mediaType !== "") return o.mediaType;
  if (o.schemaVersion === 1) return MediaType.dockerSchema1Manifest;
  if (Array.isArray(o.manifests)) return MediaType.ociIndex;
  if (o.config !== undefined) return MediaType.ociManifest;
  throw invalidArgument(`Malformed ${what}: cannot tell an index from a manifest`);
}
