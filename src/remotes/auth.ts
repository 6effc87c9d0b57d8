/**
 * Registry authentication: anonymous, Basic, and the Bearer token flow of
 * the distribution spec (https://distribution.github.io/distribution/spec/auth/token/).
 * Credentials come from an explicit `user:pass` or from a Docker-style
 * config.json (`auths`). Tokens are cached per host and scope until they expire.
 */
import { Buffer } from "node:buffer";
import { invalidArgument, unauthenticated } from "../core/errdefs.ts";

/** A user name and password (or token) for a registry. */
export interface Credentials {
  username: string;
  password: string;
}

/** One challenge of a `WWW-Authenticate` header. */
export interface Challenge {
  /** Lowercased scheme, e.g. `bearer`, `basic`. */
  scheme: string;
  /** Parameters with lowercased names, e.g. realm, service, scope, error. */
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header (RFC 7235): several challenges, each a
 * scheme and comma-separated `name=value` parameters where the value is a
 * token or a quoted string that may hold commas and escaped quotes.
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipSpace = () => {
    while (i < n && (header[i] === " " || header[i] === "\t")) i++;
  };
  const readToken = () => {
    const start = i;
    while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  let current: Challenge | undefined;
  while (i < n) {
    skipSpace();
    if (header[i] === ",") {
      i++;
      continue;
    }
    const start = i;
    const token = readToken();
    if (token === "") {
      i++; // unparseable byte: skip it rather than loop forever
      continue;
    }
    skipSpace();
    if (header[i] === "=" && current) {
      // A parameter of the current challenge (token68 values end in '=' too,
      // but registries never send those).
      i++;
      skipSpace();
      let value: string;
      if (header[i] === '"') {
        i++;
        value = "";
        while (i < n && header[i] !== '"') {
          if (header[i] === "\\" && i + 1 < n) i++;
          value += header[i];
          i++;
        }
        i++; // closing quote
      } else {
        const vs = i;
        while (i < n && header[i] !== "," && header[i] !== " ") i++;
        value = header.slice(vs, i);
      }
      current.params[token.toLowerCase()] = value;
    } else {
      if (header[i] === "=") i = start + token.length; // scheme alone without params
      current = { scheme: token.toLowerCase(), params: {} };
      out.push(current);
    }
  }
  return out;
}

/** Parses `user:pass` (the password may contain colons). */
export function parseUserPass(s: string): Credentials {
  const colon = s.indexOf(":");
  if (colon <= 0) {
    throw invalidArgument(`Invalid credentials "${s.split(":")[0]}": want user:password`);
  }
  return { username: s.slice(0, colon), password: s.slice(colon + 1) };
}

/** Normalizes a config.json `auths` key or a registry host to a lookup key. */
export function normalizeAuthHost(key: string): string {
  let h = key.trim().replace(/^[a-z]+:\/\//i, "");
  const slash = h.indexOf("/");
  if (slash >= 0) h = h.slice(0, slash);
  h = h.toLowerCase();
  if (h === "index.docker.io" || h === "registry-1.docker.io" || h === "registry.hub.docker.com") {
    return "docker.io";
  }
  return h;
}

/** The default path of Docker's config.json: $DOCKER_CONFIG/config.json or ~/.docker/config.json. */
export function defaultDockerConfigPath(): string | undefined {
  const dir = Deno.env.get("DOCKER_CONFIG");
  if (dir) return `${dir}/config.json`;
  const home = Deno.env.get("HOME");
  return home ? `${home}/.docker/config.json` : undefined;
}

/**
 * Reads the `auths` of a Docker-style config.json: each entry's `auth`
 * (base64 of `user:pass`) or `username`/`password`. A missing file gives no
 * credentials; a malformed one is invalid_argument naming the path.
 */
export async function loadDockerConfig(path?: string): Promise<Map<string, Credentials>> {
  const out = new Map<string, Credentials>();
  const file = path ?? defaultDockerConfigPath();
  if (!file) return out;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return out;
    throw e;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw invalidArgument(`Invalid Docker config "${file}": ${(e as Error).message}`);
  }
  const auths = (doc as { auths?: unknown })?.auths;
  if (auths === undefined) return out;
  if (auths === null || typeof auths !== "object") {
    throw invalidArgument(`Invalid Docker config "${file}": "auths" must be an object`);
  }
  for (const [key, entry] of Object.entries(auths as Record<string, Record<string, unknown>>)) {
    if (!entry || typeof entry !== "object") continue;
    let creds: Credentials | undefined;
    if (typeof entry.auth === "string" && entry.auth !== "") {
      const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon < 0) {
        throw invalidArgument(
          `Invalid Docker config "${file}": auth for "${key}" is not base64 of user:password`,
        );
      }
      creds = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    } else if (typeof entry.username === "string" && typeof entry.password === "string") {
      creds = { username: entry.username, password: entry.password };
    }
    if (creds) out.set(normalizeAuthHost(key), creds);
  }
  return out;
}

/** `Basic base64(user:pass)`. */
export function basicAuthorization(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`;
}

/** The pull scope of a repository, as the token flow spells it. */
export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

/** Sends an HTTP request; the registry client supplies it (with its TLS settings). */
export type Send = (url: URL, init: RequestInit) => Promise<Response>;

interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Options for {@link Authorizer}. */
export interface AuthorizerOptions {
  /** Credentials for a registry host (`host[:port]`), if any. */
  credentials: (host: string) => Credentials | undefined;
  send: Send;
  /** Clock, for tests. */
  now?: () => number;
}

/** Registry error bodies: `{"errors":[{"code":"…","message":"…"}]}`. */
export async function registryErrorText(res: Response): Promise<string> {
  let text = "";
  try {
    text = await res.text();
  } catch { /* body gone */ }
  try {
    const doc = JSON.parse(text) as {
      errors?: Array<{ code?: string; message?: string }>;
      details?: string;
    };
    if (Array.isArray(doc.errors) && doc.errors.length > 0) {
      return doc.errors.map((e) => e.message ?? e.code ?? "").filter(Boolean).join("; ");
    }
    if (typeof doc.details === "string") return doc.details;
  } catch { /* not JSON */ }
  return text.trim().slice(0, 200);
}

/**
 * Keeps what each registry host asked for (its last challenge) and the
 * tokens it issued, and builds the Authorization header for a request.
 */
export class Authorizer {
  #opts: AuthorizerOptions;
  #challenges = new Map<string, Challenge>();
  #tokens = new Map<string, CachedToken>();
  #pendingTokens = new Map<string, Promise<CachedToken>>();

  constructor(opts: AuthorizerOptions) {
    this.#opts = opts;
  }

  #now(): number {
    return this.#opts.now?.() ?? Date.now();
  }

  /** The Authorization header for a request to `host` needing `scopes`, if auth is known to be needed. */
  async authorization(host: string, scopes: string[]): Promise<string | undefined> {
    // Only the scopes of this request: a challenge's scope belongs to the
    // request that received it (see handleUnauthorized).
    const ch = this.#challenges.get(host);
    if (!ch) return undefined;
    const creds = this.#opts.credentials(host);
    if (ch.scheme === "basic") return creds ? basicAuthorization(creds) : undefined;
    if (ch.scheme === "bearer") {
      const tok = await this.#token(host, ch, scopes, creds);
      return `Bearer ${tok.token}`;
    }
    return undefined;
  }

  /**
   * Handles a 401 from `host`: records its challenge and drops tokens it
   * rejected. Returns the scopes the registry asked for when a retry with new
   * authorization can help, or undefined when it cannot.
   */
  handleUnauthorized(host: string, res: Response, sent: string | undefined): string[] | undefined {
    const header = res.headers.get("www-authenticate") ?? "";
    const challenges = parseWwwAuthenticate(header);
    const ch = challenges.find((c) => c.scheme === "bearer") ??
      challenges.find((c) => c.scheme === "basic");
    if (!ch) return undefined;
    this.#challenges.set(host, ch);
    const asked = (ch.params.scope ?? "").split(" ").filter(Boolean);
    if (ch.scheme === "basic") {
      // A retry only helps if we have credentials and did not send them already.
      return this.#opts.credentials(host) && !sent?.startsWith("Basic ") ? [] : undefined;
    }
    if (sent?.startsWith("Bearer ")) {
      const rejected = sent.slice(7);
      for (const [k, v] of this.#tokens) if (v.token === rejected) this.#tokens.delete(k);
      // A rejected token is retried only when the registry names a scope it lacked.
      return ch.params.error === "insufficient_scope" && asked.length > 0 ? asked : undefined;
    }
    return asked;
  }

  async #token(
    host: string,
    ch: Challenge,
    scopes: string[],
    creds?: Credentials,
  ): Promise<CachedToken> {
    const scopeList = [...new Set(scopes)].sort();
    const key = `${host}|${creds?.username ?? ""}|${scopeList.join(" ")}`;
    const cached = this.#tokens.get(key);
    if (cached && cached.expiresAt > this.#now()) return cached;
    let pending = this.#pendingTokens.get(key);
    if (!pending) {
      pending = this.#fetchToken(ch, scopeList, creds).finally(() =>
        this.#pendingTokens.delete(key)
      );
      this.#pendingTokens.set(key, pending);
    }
    const tok = await pending;
    this.#tokens.set(key, tok);
    return tok;
  }

  async #fetchToken(ch: Challenge, scopes: string[], creds?: Credentials): Promise<CachedToken> {
    const realm = ch.params.realm;
    if (!realm) throw unauthenticated("Registry sent a Bearer challenge without a realm");
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw unauthenticated(`Registry sent an invalid token realm "${realm}"`);
    }
    if (ch.params.service) url.searchParams.set("service", ch.params.service);
    for (const s of scopes) url.searchParams.append("scope", s);
    const headers = new Headers({ accept: "application/json" });
    if (creds) headers.set("authorization", basicAuthorization(creds));
    const started = this.#now();
    const res = await this.#opts.send(url, { method: "GET", headers });
    if (!res.ok) {
      const msg = await registryErrorText(res);
      throw unauthenticated(
        `Token server ${url.origin}${url.pathname} refused ${
          creds ? `user "${creds.username}"` : "anonymous access"
        } ` +
          `(${res.status}${msg ? `: ${msg}` : ""})`,
      );
    }
    let body: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    try {
      body = await res.json();
    } catch {
      throw unauthenticated(`Token server ${url.origin}${url.pathname} answered with invalid JSON`);
    }
    const token = body.token ?? body.access_token;
    if (!token) {
      throw unauthenticated(`Token server ${url.origin}${url.pathname} answered without a token`);
    }
    // The spec's default lifetime is 60 s; refresh a little early to avoid using a token as it expires.
    const lifetime = typeof body.expires_in === "number" && body.expires_in > 0
      ? body.expires_in
      : 60;
    const issued = body.issued_at ? Date.parse(body.issued_at) : NaN;
    const base = Number.isFinite(issued) && Math.abs(issued - started) < 5 * 60_000
      ? issued
      : started;
    return { token, expiresAt: base + lifetime * 1000 - 5_000 };
  }
}
