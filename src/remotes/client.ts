/**
 * The registry client (OCI distribution spec,
 * https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md):
 * resolves references to root descriptors and fetches manifests and blobs as
 * verified byte streams. It tries the endpoints of hosts.toml in order,
 * authenticates (Basic, Bearer tokens), follows redirects itself (never
 * carrying Authorization to another host), retries transient failures with
 * backoff, and resumes interrupted bodies with Range.
 *
 * ```ts
 * const client = new RegistryClient({ configDir: "/etc/berth" });
 * const { descriptor } = await client.resolve("127.0.0.1:5000/busybox:latest");
 * const fetcher = client.fetcher("127.0.0.1:5000/busybox:latest");
 * const manifest = await fetcher.fetchBytes(descriptor);
 * ```
 */
import { createHash, type Hash } from "node:crypto";
import {
  BerthError,
  failedPrecondition,
  invalidArgument,
  isKind,
  notFound,
  notImplemented,
  permissionDenied,
  unauthenticated,
  unavailable,
} from "../core/errdefs.ts";
import type { Logger } from "../util/log.ts";
import {
  type Descriptor,
  detectManifestType,
  isIndexType,
  isManifestType,
  isSchema1Type,
  MediaType,
  schema1Error,
} from "../oci/image.ts";
import { formatReference, parseReference, type Reference } from "../oci/reference.ts";
import {
  Authorizer,
  type Credentials,
  loadDockerConfig,
  normalizeAuthHost,
  parseUserPass,
  pullScope,
  registryErrorText,
} from "./auth.ts";
import { type Capability, type RegistryHost, resolveHosts } from "./hosts.ts";
import { Transport } from "./transport.ts";

/** Backoff for transient failures (5xx, 429, resets, timeouts). */
export interface RetryOptions {
  /** Tries per request, including the first (default 5). */
  attempts: number;
  /** First delay (default 250 ms), doubled each time with jitter. */
  baseDelayMs: number;
  /** Longest delay (default 8 s). */
  maxDelayMs: number;
}

/** Options for {@link RegistryClient}. */
export interface RegistryClientOptions {
  /** berth's config dir, holding `certs.d/<host>/hosts.toml`. */
  configDir?: string;
  /** Plain http for default servers (like `--plain-http`). */
  plainHttp?: boolean;
  /** `user:pass` or credentials used for every registry (like `--user`). */
  user?: string | Credentials;
  /** Path of a Docker config.json; default $DOCKER_CONFIG or ~/.docker; false to ignore it. */
  dockerConfig?: string | false;
  retry?: Partial<RetryOptions>;
  /** Time allowed to connect and receive response headers (default 30 s). */
  timeoutMs?: number;
  /** Time allowed without a byte while reading a body (default 60 s). */
  idleTimeoutMs?: number;
  userAgent?: string;
  log?: Logger;
  /** Endpoint list override, mainly for tests and embedding. */
  hosts?: (domain: string) => Promise<RegistryHost[]>;
}

/** What {@link RegistryClient.resolve} returns. */
export interface Resolved {
  ref: Reference;
  /** The normalized reference string. */
  name: string;
  /** The root descriptor: an index or a manifest. */
  descriptor: Descriptor;
  /** The endpoint that answered. */
  host: RegistryHost;
}

/** Options for {@link Fetcher.fetch}. */
export interface FetchOptions {
  /** Start at this byte (uses `Range: bytes=N-`). */
  offset?: number;
  /**
   * With `offset`, a hash already fed with the first `offset` bytes, so the
   * whole blob's digest is checked. Without it only the size is checked and
   * the caller must verify the digest (as the content store does at commit).
   */
  hash?: Hash;
  signal?: AbortSignal;
}

/** The accept header for manifests: OCI and Docker schema2, never schema 1. */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
].join(", ");

/** containerd refuses manifests over 4 MiB; so does berth. */
export const MAX_MANIFEST_SIZE = 4 << 20;

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const MAX_REDIRECTS = 10;

interface Attempt {
  res: Response;
  url: URL;
  controller: AbortController;
  /** Clears the header timeout; the caller then owns the body. */
  done(): void;
}

interface RequestSpec {
  method: "GET" | "HEAD";
  path: string;
  accept?: string;
  offset?: number;
  scopes: string[];
  signal?: AbortSignal | undefined;
}

function canceled(what: string, reason: unknown): BerthError {
  return new BerthError("canceled", `${what}: context canceled`, { cause: reason });
}

/** A short reason for a network failure from Deno's fetch errors. */
function networkReason(e: unknown): string {
  const all: string[] = [];
  for (let c: unknown = e; c instanceof Error; c = c.cause) all.push(c.message);
  const text = all.join(" | ");
  if (/connection refused/i.test(text)) return "connection refused";
  if (/reset/i.test(text)) return "connection reset";
  if (/timed out|timeout/i.test(text)) return "timed out";
  if (/dns|lookup|resolve|name or service/i.test(text)) return "host name not resolved";
  if (/certificate|tls|handshake/i.test(text)) return `TLS error: ${all.at(-1) ?? text}`;
  const last = all.at(-1) ?? String(e);
  return last.replace(/^error sending request for url \([^)]*\):\s*/, "");
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function drain(res: Response): void {
  res.body?.cancel().catch(() => {});
}

function hashFor(digest: string): Hash {
  const alg = digest.slice(0, digest.indexOf(":"));
  if (alg !== "sha256" && alg !== "sha512") {
    throw notImplemented(`digest algorithm "${alg}" of ${digest}`);
  }
  return createHash(alg);
}

function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Picks the error to report after every endpoint failed. */
function bestError(errors: Error[], fallback: () => Error): Error {
  // A definite answer (not found, auth, schema) beats "a mirror was down".
  return errors.find((e) => !isKind(e, "unavailable") && !isKind(e, "not_found")) ??
    errors.find((e) => isKind(e, "not_found")) ?? errors[0] ?? fallback();
}

/** The registry client: resolver and fetchers over shared auth, hosts and connections. */
export class RegistryClient {
  #opts: RegistryClientOptions;
  #retry: RetryOptions;
  #transport = new Transport();
  #authorizer: Authorizer;
  #dockerAuths: Map<string, Credentials> | undefined;
  #user: Credentials | undefined;
  #hostCache = new Map<string, Promise<RegistryHost[]>>();
  /** Manifests read while resolving, so the first fetch needs no second round trip. */
  #manifestCache = new Map<string, Uint8Array>();

  constructor(opts: RegistryClientOptions = {}) {
    this.#opts = opts;
    this.#retry = {
      attempts: opts.retry?.attempts ?? 5,
      baseDelayMs: opts.retry?.baseDelayMs ?? 250,
      maxDelayMs: opts.retry?.maxDelayMs ?? 8_000,
    };
    if (this.#retry.attempts < 1) {
      throw invalidArgument("Invalid retry attempts: must be at least 1");
    }
    this.#user = typeof opts.user === "string" ? parseUserPass(opts.user) : opts.user;
    this.#authorizer = new Authorizer({
      credentials: (host) => this.#credentials(host),
      send: (url, init) => this.#transport.send(url, init),
    });
  }

  #credentials(host: string): Credentials | undefined {
    if (this.#user) return this.#user;
    return this.#dockerAuths?.get(normalizeAuthHost(host));
  }

  async #loadCredentials(): Promise<void> {
    if (this.#dockerAuths || this.#user || this.#opts.dockerConfig === false) return;
    this.#dockerAuths = await loadDockerConfig(this.#opts.dockerConfig);
  }

  /** Endpoints for a domain that have a capability. */
  async hosts(domain: string, cap: Capability): Promise<RegistryHost[]> {
    let p = this.#hostCache.get(domain);
    if (!p) {
      p = this.#opts.hosts ? this.#opts.hosts(domain) : resolveHosts(domain, {
        ...(this.#opts.configDir ? { configDir: this.#opts.configDir } : {}),
        ...(this.#opts.plainHttp ? { plainHttp: true } : {}),
      });
      this.#hostCache.set(domain, p);
      p.catch(() => this.#hostCache.delete(domain));
    }
    const hosts = (await p).filter((h) => h.capabilities.includes(cap));
    if (hosts.length === 0) {
      throw failedPrecondition(
        `Registry "${domain}": no configured host has the ${cap} capability`,
      );
    }
    return hosts;
  }

  /** Releases pooled connections made for custom CAs. */
  close(): void {
    this.#transport.close();
  }

  /**
   * Sends one logical request to one endpoint: authentication, manual
   * redirects and retries of transient failures. Returns the final response,
   * whatever its status; throws unavailable when the endpoint cannot be reached.
   */
  async request(host: RegistryHost, spec: RequestSpec): Promise<Attempt> {
    await this.#loadCredentials();
    const { attempts, baseDelayMs, maxDelayMs } = this.#retry;
    let lastReason = "";
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const url = new URL(host.base + spec.path);
      try {
        const a = await this.#once(host, url, spec);
        if (!RETRY_STATUS.has(a.res.status) || attempt === attempts) return a;
        lastReason = `${a.res.status} ${a.res.statusText}`.trim();
        const retryAfter = Number(a.res.headers.get("retry-after"));
        drain(a.res);
        a.done();
        const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1)) *
          (0.5 + Math.random() / 2);
        const delay = Number.isFinite(retryAfter) && retryAfter > 0
          ? Math.min(maxDelayMs, retryAfter * 1000)
          : backoff;
        this.#opts.log?.debug("registry request failed, retrying", {
          host: host.host,
          url: url.href,
          status: a.res.status,
          attempt,
          delay_ms: Math.round(delay),
        });
        await sleep(delay, spec.signal);
      } catch (e) {
        if (spec.signal?.aborted) throw canceled(`${spec.method} ${url.href}`, spec.signal.reason);
        if (e instanceof BerthError) throw e;
        lastReason = networkReason(e);
        if (attempt === attempts) break;
        const delay = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1)) *
          (0.5 + Math.random() / 2);
        this.#opts.log?.debug("registry request failed, retrying", {
          host: host.host,
          url: url.href,
          error: lastReason,
          attempt,
          delay_ms: Math.round(delay),
        });
        try {
          await sleep(delay, spec.signal);
        } catch {
          throw canceled(`${spec.method} ${url.href}`, spec.signal?.reason);
        }
      }
    }
    throw unavailable(
      `Registry "${host.host}": ${spec.method} ${host.base}${spec.path}: ${lastReason} (after ${attempts} attempts)`,
    );
  }

  async #once(host: RegistryHost, start: URL, spec: RequestSpec): Promise<Attempt> {
    let url = start;
    let method: "GET" | "HEAD" = spec.method;
    let authRetried = false;
    let scopes = spec.scopes;
    const timeoutMs = this.#opts.timeoutMs ?? 30_000;
    for (let hop = 0; hop <= MAX_REDIRECTS;) {
      const sameHost = url.host === host.host;
      const headers = new Headers(sameHost ? host.headers : {});
      headers.set("user-agent", this.#opts.userAgent ?? "berth");
      if (spec.accept) headers.set("accept", spec.accept);
      if (spec.offset) headers.set("range", `bytes=${spec.offset}-`);
      // Credentials and tokens belong to the registry endpoint only: a redirect
      // to a CDN or object store must never see them.
      const authorization = sameHost
        ? await this.#authorizer.authorization(host.host, scopes)
        : undefined;
      if (authorization) headers.set("authorization", authorization);
      const controller = new AbortController();
      const timer = setTimeout(
        () =>
          controller.abort(
            new Error(`timed out after ${timeoutMs} ms waiting for response headers`),
          ),
        timeoutMs,
      );
      const signal = spec.signal
        ? AbortSignal.any([spec.signal, controller.signal])
        : controller.signal;
      let res: Response;
      try {
        res = await this.#transport.send(
          url,
          { method, headers, signal },
          sameHost ? host : undefined,
        );
      } catch (e) {
        clearTimeout(timer);
        if (controller.signal.aborted) throw controller.signal.reason;
        throw e;
      }
      const done = () => clearTimeout(timer);
      if (res.status >= 300 && res.status < 400 && res.headers.has("location")) {
        drain(res);
        done();
        url = new URL(res.headers.get("location")!, url);
        if (res.status === 303 && method !== "HEAD") method = "GET";
        this.#opts.log?.debug("registry redirect", {
          from: host.host,
          to: url.host,
          status: res.status,
        });
        hop++;
        continue;
      }
      if (res.status === 401 && sameHost && !authRetried) {
        authRetried = true;
        const asked = this.#authorizer.handleUnauthorized(host.host, res, authorization);
        if (asked) {
          // The registry may name scopes beyond ours (e.g. a cross-repository mount).
          scopes = [...new Set([...scopes, ...asked])];
          drain(res);
          done();
          continue;
        }
      }
      return { res, url, controller, done };
    }
    throw unavailable(
      `Registry "${host.host}": more than ${MAX_REDIRECTS} redirects from ${start.href}`,
    );
  }

  /** Turns a failed response into an error of the right kind. */
  async statusError(res: Response, what: string, host: RegistryHost): Promise<Error> {
    const msg = await registryErrorText(res);
    const detail = `${host.host} answered ${res.status}${
      res.statusText ? ` ${res.statusText}` : ""
    }${msg ? `: ${msg}` : ""}`;
    switch (res.status) {
      case 404:
        return notFound(what);
      case 401:
        return unauthenticated(`${what}: ${detail}`);
      case 403:
        return permissionDenied(`${what}: ${detail}`);
      case 416:
        return new BerthError("out_of_range", `${what}: ${detail}: out of range`);
    }
    if (res.status >= 500 || res.status === 429 || res.status === 408) {
      return unavailable(`${what}: ${detail}`);
    }
    return new BerthError("unknown", `${what}: ${detail}`);
  }

  /**
   * Resolves a reference to its root descriptor (an index or a manifest).
   * Tags go through HEAD, then GET when HEAD gives no digest; digests are
   * fetched and checked. Schema 1 manifests are refused.
   */
  async resolve(
    reference: string | Reference,
    opts: { signal?: AbortSignal } = {},
  ): Promise<Resolved> {
    const ref = typeof reference === "string" ? parseReference(reference) : reference;
    const name = formatReference(ref);
    const hosts = await this.hosts(ref.domain, "resolve");
    const errors: Error[] = [];
    for (const host of hosts) {
      try {
        const descriptor = await this.#resolveOn(host, ref, name, opts.signal);
        this.#opts.log?.debug("resolved", {
          ref: name,
          digest: descriptor.digest,
          host: host.host,
        });
        return { ref, name, descriptor, host };
      } catch (e) {
        if (
          isKind(e, "not_implemented") || isKind(e, "canceled") || isKind(e, "invalid_argument")
        ) throw e;
        if (isKind(e, "failed_precondition")) throw e;
        errors.push(e as Error);
      }
    }
    throw bestError(errors, () => notFound(`Reference "${name}"`));
  }

  async #resolveOn(
    host: RegistryHost,
    ref: Reference,
    name: string,
    signal?: AbortSignal,
  ): Promise<Descriptor> {
    const object = ref.digest ?? ref.tag!;
    const path = `/${ref.path}/manifests/${object}`;
    const scopes = [pullScope(ref.path)];
    const what = `Reference "${name}"`;
    if (!ref.digest) {
      const a = await this.request(host, {
        method: "HEAD",
        path,
        accept: MANIFEST_ACCEPT,
        scopes,
        signal,
      });
      a.done();
      drain(a.res);
      if (a.res.status === 404) throw notFound(what);
      // A 401 or 403 to HEAD has no body to say why: the GET below fails the
      // same way and carries the registry's message.
      if (a.res.ok) {
        const type = (a.res.headers.get("content-type") ?? "").split(";")[0]!.trim();
        if (isSchema1Type(type)) throw schema1Error(what, type);
        const digest = a.res.headers.get("docker-content-digest") ?? "";
        const size = Number(a.res.headers.get("content-length") ?? "NaN");
        if (
          (isIndexType(type) || isManifestType(type)) && /^sha256:[a-f0-9]{64}$/.test(digest) &&
          Number.isSafeInteger(size) && size > 0
        ) {
          return { mediaType: type, digest, size };
        }
      }
      // HEAD gave no usable answer (no digest, a generic type, 405…): GET tells all.
    }
    const a = await this.request(host, {
      method: "GET",
      path,
      accept: MANIFEST_ACCEPT,
      scopes,
      signal,
    });
    if (!a.res.ok) {
      a.done();
      throw await this.statusError(a.res, what, host);
    }
    let bytes: Uint8Array;
    try {
      bytes = await readLimited(a.res, MAX_MANIFEST_SIZE, what);
    } finally {
      a.done();
    }
    const headerType = (a.res.headers.get("content-type") ?? "").split(";")[0]!.trim();
    if (isSchema1Type(headerType)) throw schema1Error(what, headerType);
    const type = isIndexType(headerType) || isManifestType(headerType)
      ? headerType
      : detectManifestType(bytes, `manifest of ${name}`);
    if (isSchema1Type(type)) throw schema1Error(what, type);
    if (!isIndexType(type) && !isManifestType(type)) {
      throw notImplemented(`${what}: unsupported manifest media type "${type}"`);
    }
    let digest: string;
    if (ref.digest) {
      const got = hashFor(ref.digest).update(bytes).digest("hex");
      digest = ref.digest;
      if (`${ref.digest.split(":")[0]}:${got}` !== ref.digest) {
        throw failedPrecondition(
          `${what}: manifest from ${host.host} does not match its digest: got ${
            ref.digest.split(":")[0]
          }:${got}`,
        );
      }
    } else {
      digest = sha256Digest(bytes);
      const claimed = a.res.headers.get("docker-content-digest");
      if (claimed && claimed.startsWith("sha256:") && claimed !== digest) {
        throw failedPrecondition(
          `${what}: manifest from ${host.host} has digest ${digest} but the registry claims ${claimed}`,
        );
      }
    }
    this.#cacheManifest(digest, bytes);
    return { mediaType: type, digest, size: bytes.length };
  }

  #cacheManifest(digest: string, bytes: Uint8Array): void {
    this.#manifestCache.set(digest, bytes);
    if (this.#manifestCache.size > 64) {
      this.#manifestCache.delete(this.#manifestCache.keys().next().value!);
    }
  }

  /** @internal a manifest kept from resolve, verified already. */
  cachedManifest(digest: string): Uint8Array | undefined {
    return this.#manifestCache.get(digest);
  }

  /** A fetcher for the repository of `reference`. */
  fetcher(reference: string | Reference): Fetcher {
    const ref = typeof reference === "string" ? parseReference(reference) : reference;
    return new Fetcher(this, ref, {
      idleTimeoutMs: this.#opts.idleTimeoutMs ?? 60_000,
      attempts: this.#retry.attempts,
    });
  }
}

async function readLimited(res: Response, limit: number, what: string): Promise<Uint8Array> {
  const declared = Number(res.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > limit) {
    drain(res);
    throw failedPrecondition(
      `${what}: manifest of ${declared} bytes is over the ${limit} byte limit`,
    );
  }
  const chunks: Uint8Array[] = [];
  let n = 0;
  if (res.body) {
    for await (const c of res.body) {
      n += c.length;
      if (n > limit) throw failedPrecondition(`${what}: manifest is over the ${limit} byte limit`);
      chunks.push(c);
    }
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/**
 * Fetches manifests and blobs of one repository as streams checked against
 * their descriptor: the stream errors (failed_precondition naming the digest)
 * when the size or digest does not match, and survives dropped connections by
 * resuming with Range.
 */
export class Fetcher {
  #client: RegistryClient;
  #ref: Reference;
  #name: string;
  #idleTimeoutMs: number;
  #attempts: number;

  constructor(
    client: RegistryClient,
    ref: Reference,
    opts: { idleTimeoutMs: number; attempts: number },
  ) {
    this.#client = client;
    this.#ref = ref;
    this.#name = formatReference(ref);
    this.#idleTimeoutMs = opts.idleTimeoutMs;
    this.#attempts = opts.attempts;
  }

  #path(desc: Descriptor): string {
    const kind = isIndexType(desc.mediaType) || isManifestType(desc.mediaType)
      ? "manifests"
      : "blobs";
    return `/${this.#ref.path}/${kind}/${desc.digest}`;
  }

  #what(desc: Descriptor): string {
    const kind = isIndexType(desc.mediaType) || isManifestType(desc.mediaType)
      ? "manifest"
      : "blob";
    return `${kind} ${desc.digest} of "${this.#name}"`;
  }

  async #open(host: RegistryHost, desc: Descriptor, offset: number, signal?: AbortSignal) {
    const what = this.#what(desc);
    const a = await this.#client.request(host, {
      method: "GET",
      path: this.#path(desc),
      accept: isIndexType(desc.mediaType) || isManifestType(desc.mediaType)
        ? `${desc.mediaType}, ${MANIFEST_ACCEPT}`
        : "*/*",
      offset,
      scopes: [pullScope(this.#ref.path)],
      signal,
    });
    a.done();
    const { res } = a;
    if (res.status !== 200 && res.status !== 206) {
      throw await this.#client.statusError(res, what, host);
    }
    // A server that ignores Range sends the whole blob with 200: skip what we have.
    let skip = 0;
    if (offset > 0 && res.status === 200) skip = offset;
    if (res.status === 206) {
      const m = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
      if (!m || Number(m[1]) !== offset) {
        drain(res);
        throw failedPrecondition(
          `${what}: ${host.host} answered Range ${offset}- with "${
            res.headers.get("content-range")
          }"`,
        );
      }
    }
    const length = Number(res.headers.get("content-length") ?? "NaN");
    const expected = res.status === 206 ? desc.size - offset : desc.size;
    if (Number.isFinite(length) && length !== expected) {
      drain(res);
      throw failedPrecondition(
        `${what}: size mismatch: ${host.host} sends ${
          res.status === 206 ? offset + length : length
        } bytes, ` +
          `the descriptor says ${desc.size}`,
      );
    }
    return { res, controller: a.controller, skip };
  }

  /**
   * Opens a verified stream of the content of `desc`, from `offset`. The
   * stream ends only after the size (and digest, see {@link FetchOptions.hash})
   * check passed; a mismatch errors the stream.
   */
  async fetch(desc: Descriptor, opts: FetchOptions = {}): Promise<ReadableStream<Uint8Array>> {
    const offset = opts.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > desc.size) {
      throw invalidArgument(
        `Invalid offset ${offset} for ${this.#what(desc)} of ${desc.size} bytes`,
      );
    }
    const cached = offset === 0 ? this.#client.cachedManifest(desc.digest) : undefined;
    if (cached && cached.length === desc.size) {
      return new ReadableStream({
        start(c) {
          c.enqueue(cached.slice());
          c.close();
        },
      });
    }
    const hash = offset === 0 ? hashFor(desc.digest) : opts.hash;
    const hosts = await this.#client.hosts(this.#ref.domain, "pull");
    const errors: Error[] = [];
    let opened: { res: Response; controller: AbortController; skip: number } | undefined;
    let host: RegistryHost | undefined;
    for (const h of hosts) {
      try {
        opened = await this.#open(h, desc, offset, opts.signal);
        host = h;
        break;
      } catch (e) {
        if (isKind(e, "canceled") || isKind(e, "invalid_argument")) throw e;
        errors.push(e as Error);
      }
    }
    if (!opened || !host) throw bestError(errors, () => notFound(this.#what(desc)));
    return this.#stream(desc, host, opened, offset, hash, opts.signal);
  }

  #stream(
    desc: Descriptor,
    host: RegistryHost,
    first: { res: Response; controller: AbortController; skip: number },
    offset: number,
    hash: Hash | undefined,
    signal: AbortSignal | undefined,
  ): ReadableStream<Uint8Array> {
    const what = this.#what(desc);
    let received = offset;
    let current = first;
    let reader = first.res.body?.getReader();
    let retries = 0;
    const idle = this.#idleTimeoutMs;
    const readChunk = async () => {
      const r = reader!;
      const timer = setTimeout(
        () => current.controller.abort(new Error(`no data for ${idle} ms`)),
        idle,
      );
      try {
        return await r.read();
      } finally {
        clearTimeout(timer);
      }
    };
    const finish = (controller: ReadableStreamDefaultController<Uint8Array>) => {
      if (received !== desc.size) {
        throw failedPrecondition(
          `${what}: size mismatch: got ${received} bytes, expected ${desc.size}`,
        );
      }
      if (hash) {
        const got = `${desc.digest.slice(0, desc.digest.indexOf(":"))}:${hash.digest("hex")}`;
        if (got !== desc.digest) {
          throw failedPrecondition(
            `${what}: digest mismatch: the ${desc.size} bytes received hash to ${got}`,
          );
        }
      }
      controller.close();
    };
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        for (;;) {
          if (!reader) {
            if (received === desc.size) return finish(controller);
            throw failedPrecondition(`${what}: ${host.host} sent no body`);
          }
          let r: ReadableStreamReadResult<Uint8Array>;
          try {
            r = await readChunk();
          } catch (e) {
            if (signal?.aborted) throw canceled(what, signal.reason);
            // Connection dropped mid-body: continue where we are with Range.
            retries++;
            const reason = networkReason(
              current.controller.signal.aborted ? current.controller.signal.reason : e,
            );
            if (retries >= this.#attempts) {
              throw unavailable(
                `${what}: truncated: ${host.host} stopped after ${received} of ${desc.size} bytes (${reason})`,
              );
            }
            await sleep(Math.min(2000, 100 * 2 ** retries), signal);
            current = await this.#open(host, desc, received, signal);
            reader = current.res.body?.getReader();
            continue;
          }
          if (r.done) {
            if (received < desc.size) {
              throw failedPrecondition(
                `${what}: truncated: ${host.host} ended the body after ${received} of ${desc.size} bytes`,
              );
            }
            return finish(controller);
          }
          let chunk = r.value;
          if (current.skip > 0) {
            const n = Math.min(current.skip, chunk.length);
            current.skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.length === 0) continue;
          }
          received += chunk.length;
          if (received > desc.size) {
            current.controller.abort();
            throw failedPrecondition(
              `${what}: size mismatch: more than the expected ${desc.size} bytes`,
            );
          }
          hash?.update(chunk);
          controller.enqueue(chunk);
          if (received === desc.size) {
            // Do not wait for the server to close: verify as soon as all bytes are in.
            reader.cancel().catch(() => {});
            return finish(controller);
          }
          return;
        }
      },
      cancel: (reason) => {
        current.controller.abort(reason);
      },
    }, { highWaterMark: 0 });
  }

  /** Fetches a (small) manifest, config or blob whole, verified. */
  async fetchBytes(
    desc: Descriptor,
    opts: { signal?: AbortSignal; maxSize?: number } = {},
  ): Promise<Uint8Array> {
    const limit = opts.maxSize ?? MAX_MANIFEST_SIZE;
    if (desc.size > limit) {
      throw failedPrecondition(
        `${this.#what(desc)}: ${desc.size} bytes is over the ${limit} byte limit`,
      );
    }
    const stream = await this.fetch(desc, opts.signal ? { signal: opts.signal } : {});
    const out = new Uint8Array(desc.size);
    let o = 0;
    for await (const c of stream) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}
