/**
 * Platforms (`os/arch[/variant]`): parsing, normalization, the host platform,
 * and matching with an order of preference, following containerd's
 * `platforms` package (Normalize, Only, Ordered): amd64 also runs 386, arm64
 * also runs 32-bit arm, arm/v7 also runs v6 and v5; closer matches sort first.
 */
import { invalidArgument } from "../core/errdefs.ts";
import {
  ANNOTATION_REFERENCE_TYPE,
  ATTESTATION_MANIFEST,
  type Descriptor,
  type Index,
  isIndexType,
  isManifestType,
  type Platform,
} from "./image.ts";

export type { Platform } from "./image.ts";

const COMPONENT = /^[A-Za-z0-9_-]+$/;

/** Normalizes an OS name (lowercase; `macos` is `darwin`). */
export function normalizeOs(os: string): string {
  const o = os.toLowerCase();
  return o === "macos" ? "darwin" : o;
}

/** Normalizes an architecture and variant pair the way containerd does. */
export function normalizeArch(
  arch: string,
  variant = "",
): { architecture: string; variant: string } {
  const a = arch.toLowerCase();
  const v = variant.toLowerCase();
  switch (a) {
    case "i386":
      return { architecture: "386", variant: "" };
    case "x86_64":
    case "x86-64":
    case "amd64":
      return { architecture: "amd64", variant: v === "v1" ? "" : v };
    case "aarch64":
    case "arm64":
      // arm64 without a variant is v8: both spellings must match each other.
      return { architecture: "arm64", variant: ["", "8", "v8", "v8.0"].includes(v) ? "v8" : v };
    case "armhf":
      return { architecture: "arm", variant: "v7" };
    case "armel":
      return { architecture: "arm", variant: "v6" };
    case "arm":
      if (v === "" || v === "7") return { architecture: "arm", variant: "v7" };
      if (["5", "6", "8"].includes(v)) return { architecture: "arm", variant: `v${v}` };
      return { architecture: "arm", variant: v };
  }
  return { architecture: a, variant: v };
}

/** Returns a normalized copy of a platform (variant omitted when empty). */
export function normalizePlatform(p: Platform): Platform {
  const { architecture, variant } = normalizeArch(p.architecture, p.variant ?? "");
  const out: Platform = { os: normalizeOs(p.os), architecture };
  if (variant !== "") out.variant = variant;
  if (p["os.version"] !== undefined) out["os.version"] = p["os.version"];
  if (p["os.features"] !== undefined) out["os.features"] = p["os.features"];
  return out;
}

/** The platform berth runs on, normalized. */
export function hostPlatform(): Platform {
  return normalizePlatform({ os: Deno.build.os, architecture: Deno.build.arch });
}

/**
 * Parses `os/arch[/variant]`, `os` or `arch` (containerd's forms: a lone word
 * that is a known OS takes the host architecture, otherwise it is an
 * architecture on the host OS). Throws invalid_argument naming the input.
 */
export function parsePlatform(spec: string): Platform {
  const bad = (why: string) => invalidArgument(`Invalid platform "${spec}": ${why}`);
  const parts = spec.trim().split("/");
  if (parts.length > 3 || parts.some((p) => p === "")) {
    throw bad("want os/arch[/variant]");
  }
  for (const p of parts) if (!COMPONENT.test(p)) throw bad(`invalid component "${p}"`);
  const host = hostPlatform();
  if (parts.length === 1) {
    const word = parts[0]!;
    if (KNOWN_OS.has(normalizeOs(word))) {
      return normalizePlatform({
        os: word,
        architecture: host.architecture,
        ...(host.variant ? { variant: host.variant } : {}),
      });
    }
    return normalizePlatform({ os: host.os, architecture: word });
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return normalizePlatform({ os, architecture, ...(variant !== undefined ? { variant } : {}) });
}

const KNOWN_OS = new Set([
  "aix",
  "android",
  "darwin",
  "dragonfly",
  "freebsd",
  "illumos",
  "ios",
  "js",
  "linux",
  "netbsd",
  "openbsd",
  "plan9",
  "solaris",
  "windows",
  "wasip1",
]);

/** `os/arch[/variant]`, normalized. */
export function formatPlatform(p: Platform): string {
  const n = normalizePlatform(p);
  return `${n.os}/${n.architecture}${n.variant ? `/${n.variant}` : ""}`;
}

/** Decides which platforms are acceptable and which is preferred. */
export interface PlatformMatcher {
  match(p: Platform): boolean;
  /** True when `a` is preferred over `b`. */
  less(a: Platform, b: Platform): boolean;
  /** What this matcher accepts, for error messages. */
  describe(): string;
}

function sameNormalized(a: Platform, b: Platform): boolean {
  return a.os === b.os && a.architecture === b.architecture &&
    (a.variant ?? "") === (b.variant ?? "");
}

/** Platforms that `p` can run, best first (containerd's platform vector). */
function compatible(p: Platform): Platform[] {
  const n = normalizePlatform(p);
  const out: Platform[] = [n];
  const withVariant = (architecture: string, variant: string): Platform =>
    variant ? { os: n.os, architecture, variant } : { os: n.os, architecture };
  if (n.architecture === "amd64") {
    const level = /^v(\d+)$/.exec(n.variant ?? "");
    if (level) {
      for (let i = Number(level[1]) - 1; i >= 2; i--) out.push(withVariant("amd64", `v${i}`));
      out.push(withVariant("amd64", ""));
    }
    out.push(withVariant("386", ""));
  } else if (n.architecture === "arm64" && n.variant === "v8") {
    for (const v of ["v8", "v7", "v6", "v5"]) out.push(withVariant("arm", v));
  } else if (n.architecture === "arm") {
    const level = /^v(\d+)$/.exec(n.variant ?? "");
    if (level) {
      for (let i = Number(level[1]) - 1; i >= 5; i--) out.push(withVariant("arm", `v${i}`));
    }
  }
  return out;
}

/**
 * Matches `p` and the platforms it can also run, preferring the closest
 * (containerd's `platforms.Only`).
 */
export function onlyPlatform(p: Platform): PlatformMatcher {
  const vector = compatible(p);
  const rank = (q: Platform) => {
    const n = normalizePlatform(q);
    const i = vector.findIndex((v) => sameNormalized(v, n));
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  return {
    match: (q) => rank(q) !== Number.MAX_SAFE_INTEGER,
    less: (a, b) => rank(a) < rank(b),
    describe: () => formatPlatform(p),
  };
}

/** Matches exactly `p` (after normalization), nothing compatible. */
export function exactPlatform(p: Platform): PlatformMatcher {
  const n = normalizePlatform(p);
  return {
    match: (q) => sameNormalized(normalizePlatform(q), n),
    less: () => false,
    describe: () => formatPlatform(p),
  };
}

/** containerd's default: the host platform and what it can run. */
export function defaultPlatformMatcher(): PlatformMatcher {
  return onlyPlatform(hostPlatform());
}

/** True for index entries that are attestations, not runnable images. */
export function isAttestation(d: Descriptor): boolean {
  if (d.annotations?.[ANNOTATION_REFERENCE_TYPE] === ATTESTATION_MANIFEST) return true;
  return d.platform?.os === "unknown" && d.platform?.architecture === "unknown";
}

/** How to choose from an index. */
export interface SelectOptions {
  /** A platform string or matcher; default: the host platform. */
  platform?: string | Platform | PlatformMatcher;
  /** Every runnable entry instead of the best one. */
  all?: boolean;
}

/**
 * Chooses manifests from an index: skips unknown media types and attestation
 * entries; returns the best match for the platform (entries without a platform
 * count as matching, as in containerd), or with `all` every runnable entry.
 * Returns an empty array when nothing matches; callers turn that into
 * not_found naming the reference and the platform.
 */
export function selectManifests(index: Index, opts: SelectOptions = {}): Descriptor[] {
  const usable = index.manifests.filter((d) =>
    (isManifestType(d.mediaType) || isIndexType(d.mediaType)) && !isAttestation(d)
  );
  if (opts.all) return usable;
  const m = matcherOf(opts.platform);
  const hits = usable.filter((d) => d.platform === undefined || m.match(d.platform));
  // Stable sort: among equal ranks the index order stays.
  return hits.map((d, i) => ({ d, i })).sort((x, y) => {
    if (x.d.platform && y.d.platform) {
      if (m.less(x.d.platform, y.d.platform)) return -1;
      if (m.less(y.d.platform, x.d.platform)) return 1;
    }
    return x.i - y.i;
  }).slice(0, 1).map((x) => x.d);
}

/** Turns the `platform` option into a matcher. */
export function matcherOf(
  platform: string | Platform | PlatformMatcher | undefined,
): PlatformMatcher {
  if (platform === undefined) return defaultPlatformMatcher();
  if (typeof platform === "string") return onlyPlatform(parsePlatform(platform));
  if ("match" in platform) return platform;
  return onlyPlatform(platform);
}
