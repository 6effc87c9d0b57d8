/**
 * Image references, parsed and normalized the way Docker and containerd do:
 * `busybox` is `docker.io/library/busybox:latest`, `localhost:5000/x:tag` keeps
 * its registry, and `x:tag@sha256:…` keeps both tag and digest (the digest wins
 * when fetching).
 *
 * ```ts
 * const r = parseReference("busybox");
 * formatReference(r); // "docker.io/library/busybox:latest"
 * ```
 */
import { invalidArgument } from "../core/errdefs.ts";

/** A parsed, normalized image reference. */
export interface Reference {
  /** Registry host with optional port, e.g. `docker.io`, `127.0.0.1:5000`, `[::1]:5000`. */
  domain: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  path: string;
  tag?: string;
  /** `algorithm:encoded`, e.g. `sha256:…`. */
  digest?: string;
}

/** The registry Docker Hub references default to. */
export const DEFAULT_DOMAIN = "docker.io";
const LEGACY_DEFAULT_DOMAIN = "index.docker.io";
/** Docker Hub's official images live under this path prefix. */
const OFFICIAL_REPO_PREFIX = "library/";
const MAX_NAME_LENGTH = 255;

// Grammar from the distribution reference package (reference/regexp.go), re-expressed.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6_HOST = /^\[[a-fA-F0-9:.]+(?:%[a-zA-Z0-9]+)?\]$/;
const PORT = /^[0-9]+$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const SHA256_HEX = /^[a-f0-9]{64}$/;
const SHA512_HEX = /^[a-f0-9]{128}$/;

/** Checks a digest string (`sha256:<64 hex>`), throwing invalid_argument naming it. */
export function validateDigest(digest: string, what = "digest"): string {
  if (!DIGEST.test(digest)) throw invalidArgument(`Invalid ${what} "${digest}"`);
  const [alg, enc] = digest.split(":", 2) as [string, string];
  if (alg === "sha256" && !SHA256_HEX.test(enc)) {
    throw invalidArgument(`Invalid ${what} "${digest}": sha256 needs 64 lowercase hex digits`);
  }
  if (alg === "sha512" && !SHA512_HEX.test(enc)) {
    throw invalidArgument(`Invalid ${what} "${digest}": sha512 needs 128 lowercase hex digits`);
  }
  return digest;
}

function validDomain(domain: string): boolean {
  let host = domain;
  let port: string | undefined;
  if (domain.startsWith("[")) {
    const end = domain.indexOf("]");
    if (end < 0) return false;
    host = domain.slice(0, end + 1);
    const rest = domain.slice(end + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) return false;
      port = rest.slice(1);
    }
    if (!IPV6_HOST.test(host)) return false;
  } else {
    const colon = domain.indexOf(":");
    if (colon >= 0) {
      host = domain.slice(0, colon);
      port = domain.slice(colon + 1);
    }
    if (!host.split(".").every((c) => DOMAIN_COMPONENT.test(c))) return false;
  }
  return port === undefined || PORT.test(port);
}

/** True when the first path element names a registry rather than a repository. */
function looksLikeDomain(first: string): boolean {
  return first.includes(".") || first.includes(":") || first === "localhost" ||
    first.startsWith("[") || first !== first.toLowerCase();
}

/**
 * Parses and normalizes a reference. Throws invalid_argument naming the
 * reference when it does not follow the grammar.
 */
export function parseReference(input: string): Reference {
  const bad = (why: string) => invalidArgument(`Invalid reference "${input}": ${why}`);
  const s = input.trim();
  if (s === "") throw bad("empty");
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      validateDigest(digest);
    } catch {
      throw bad(`invalid digest "${digest}"`);
    }
  }
  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(":");
  if (lastColon > rest.lastIndexOf("/")) {
    // In "host:5000" alone the colon is a port; but a name needs a path, so a
    // colon after the last slash is always a tag (Docker reads it the same way).
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) throw bad(`invalid tag "${tag}"`);
  }
  if (rest === "") throw bad("missing repository name");
  let domain: string;
  let path: string;
  const slash = rest.indexOf("/");
  const first = slash >= 0 ? rest.slice(0, slash) : rest;
  if (slash >= 0 && looksLikeDomain(first)) {
    domain = first;
    path = rest.slice(slash + 1);
    if (!validDomain(domain)) throw bad(`invalid registry host "${domain}"`);
  } else {
    domain = DEFAULT_DOMAIN;
    path = rest;
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes("/")) path = OFFICIAL_REPO_PREFIX + path;
  if (path !== path.toLowerCase()) throw bad("repository name must be lowercase");
  for (const component of path.split("/")) {
    if (!PATH_COMPONENT.test(component)) {
      throw bad(`invalid path component "${component}"`);
    }
  }
  if (domain.length + 1 + path.length > MAX_NAME_LENGTH) {
    throw bad(`repository name longer than ${MAX_NAME_LENGTH} characters`);
  }
  if (tag === undefined && digest === undefined) tag = "latest";
  const ref: Reference = { domain, path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** `domain/path`, the repository name without tag or digest. */
export function referenceName(ref: Reference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The full normalized form: `domain/path[:tag][@digest]`. */
export function formatReference(ref: Reference): string {
  return referenceName(ref) + (ref.tag !== undefined ? `:${ref.tag}` : "") +
    (ref.digest !== undefined ? `@${ref.digest}` : "");
}

/** Docker's short display form: `busybox:latest` for `docker.io/library/busybox:latest`. */
export function familiarReference(ref: Reference): string {
  const full = formatReference(ref);
  const prefix = `${DEFAULT_DOMAIN}/${OFFICIAL_REPO_PREFIX}`;
  if (full.startsWith(prefix)) return full.slice(prefix.length);
  if (full.startsWith(`${DEFAULT_DOMAIN}/`)) return full.slice(DEFAULT_DOMAIN.length + 1);
  return full;
}
