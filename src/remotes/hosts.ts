/**
 * Per-registry host settings in containerd's hosts.toml format
 * (https://github.com/containerd/containerd/blob/main/docs/hosts.md):
 * `<configDir>/certs.d/<host>/hosts.toml` (or `certs.d/_default/hosts.toml`)
 * lists mirrors, tried in order, then the server.
 *
 * ```toml
 * server = "https://registry.example.com"
 * [host."http://127.0.0.1:5000"]
 *   capabilities = ["pull", "resolve"]
 * [host."https://mirror.example.com"]
 *   ca = "/etc/berth/certs.d/mirror.crt"
 *   skip_verify = false
 *   [host."https://mirror.example.com".header]
 *     x-mirror-key = "abc"
 * ```
 *
 * Registries on localhost, 127.0.0.0/8 and ::1 are reached over plain http
 * by default, as Docker does.
 */
import { dirname, isAbsolute, join } from "node:path";
import { invalidArgument } from "../core/errdefs.ts";
import { DEFAULT_DOMAIN } from "../oci/reference.ts";

export type Capability = "pull" | "resolve" | "push";

/** One endpoint to try for a registry. */
export interface RegistryHost {
  /** The registry host this endpoint serves (the reference's domain). */
  domain: string;
  /** `host[:port]` of the endpoint, the key for credentials and tokens. */
  host: string;
  scheme: "http" | "https";
  /** Base URL of the API, ending in `/v2` unless `override_path` was set. */
  base: string;
  capabilities: Capability[];
  /** PEM contents of extra CAs to trust. */
  caCerts: string[];
  skipVerify: boolean;
  /** Extra request headers (hosts.toml `header`). */
  headers: Record<string, string>;
  /** Whether this is a mirror (false for the server). */
  mirror: boolean;
}

/** Options for {@link resolveHosts}. */
export interface HostsOptions {
  /** Directory holding `certs.d/` (berth's config dir); none means built-in defaults only. */
  configDir?: string;
  /** Use plain http for the default server (like `--plain-http`). */
  plainHttp?: boolean;
}

const DEFAULT_CAPS: Capability[] = ["pull", "resolve", "push"];

/** True for localhost, 127.0.0.0/8 and ::1 (with or without port). */
export function isLoopbackHost(hostPort: string): boolean {
  let h = hostPort;
  if (h.startsWith("[")) h = h.slice(1, h.indexOf("]"));
  else if (h.includes(":")) h = h.slice(0, h.lastIndexOf(":"));
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h) ||
    h.endsWith(".localhost");
}

/** The default server endpoint for a registry domain. */
export function defaultHost(domain: string, opts: { plainHttp?: boolean } = {}): RegistryHost {
  const endpoint = domain === DEFAULT_DOMAIN ? "registry-1.docker.io" : domain;
  const scheme = opts.plainHttp || isLoopbackHost(domain) ? "http" : "https";
  return {
    domain,
    host: endpoint,
    scheme,
    base: `${scheme}://${endpoint}/v2`,
    capabilities: [...DEFAULT_CAPS],
    caCerts: [],
    skipVerify: false,
    headers: {},
    mirror: false,
  };
}

type Table = Record<string, unknown>;

async function readCa(value: unknown, fileDir: string, where: string): Promise<string[]> {
  if (value === undefined) return [];
  const list = typeof value === "string" ? [value] : value;
  if (!Array.isArray(list) || !list.every((x) => typeof x === "string")) {
    throw invalidArgument(`Invalid ${where}: "ca" must be a path or a list of paths`);
  }
  const out: string[] = [];
  for (const p of list as string[]) {
    const path = isAbsolute(p) ? p : join(fileDir, p);
    try {
      out.push(await Deno.readTextFile(path));
    } catch (e) {
      throw invalidArgument(
        `Invalid ${where}: cannot read CA file "${path}": ${(e as Error).message}`,
      );
    }
  }
  return out;
}

async function hostFrom(
  domain: string,
  url: string,
  t: Table,
  opts: { fileDir: string; where: string; mirror: boolean },
): Promise<RegistryHost> {
  let raw = url;
  const plain = t.plain_http === true;
  if (!/^[a-z]+:\/\//i.test(raw)) {
    const hostOnly = raw.split("/")[0] ?? raw;
    raw = `${plain || isLoopbackHost(hostOnly) ? "http" : "https"}://${raw}`;
  }
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw invalidArgument(`Invalid ${opts.where}: host "${url}" is not a URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw invalidArgument(`Invalid ${opts.where}: host "${url}" must be http or https`);
  }
  let caps: Capability[] = [...DEFAULT_CAPS];
  if (t.capabilities !== undefined) {
    if (
      !Array.isArray(t.capabilities) ||
      !t.capabilities.every((c) => c === "pull" || c === "resolve" || c === "push")
    ) {
      throw invalidArgument(
        `Invalid ${opts.where}: "capabilities" must list pull, resolve or push`,
      );
    }
    caps = t.capabilities as Capability[];
  }
  if (t.skip_verify !== undefined && typeof t.skip_verify !== "boolean") {
    throw invalidArgument(`Invalid ${opts.where}: "skip_verify" must be true or false`);
  }
  const headers: Record<string, string> = {};
  if (t.header !== undefined) {
    if (t.header === null || typeof t.header !== "object") {
      throw invalidArgument(`Invalid ${opts.where}: "header" must be a table`);
    }
    for (const [k, v] of Object.entries(t.header as Table)) {
      if (typeof v === "string") headers[k] = v;
      else if (Array.isArray(v)) headers[k] = v.map(String).join(", ");
      else throw invalidArgument(`Invalid ${opts.where}: header "${k}" must be a string`);
    }
  }
  let path = u.pathname.replace(/\/+$/, "");
  if (t.override_path !== true && !path.endsWith("/v2")) path += "/v2";
  return {
    domain,
    host: u.host,
    scheme: u.protocol === "http:" ? "http" : "https",
    base: `${u.protocol}//${u.host}${path}`,
    capabilities: caps,
    caCerts: await readCa(t.ca, opts.fileDir, opts.where),
    skipVerify: t.skip_verify === true,
    headers,
    mirror: opts.mirror,
  };
}

/** Parses one hosts.toml text into endpoints, mirrors first, then the server. */
export async function parseHostsToml(
  domain: string,
  text: string,
  opts: { file?: string; plainHttp?: boolean } = {},
): Promise<RegistryHost[]> {
  const where = opts.file ? `hosts file "${opts.file}"` : "hosts.toml";
  const fileDir = opts.file ? dirname(opts.file) : Deno.cwd();
  let doc: Table;
  try {
    // Loaded only when a hosts.toml exists: most pulls never need a TOML parser.
    const { parse } = await import("smol-toml");
    doc = parse(text) as Table;
  } catch (e) {
    throw invalidArgument(`Invalid ${where}: ${(e as Error).message.split("\n")[0]}`);
  }
  const out: RegistryHost[] = [];
  const hosts = doc.host;
  if (hosts !== undefined) {
    if (hosts === null || typeof hosts !== "object") {
      throw invalidArgument(`Invalid ${where}: "host" must be a table of tables`);
    }
    // TOML tables keep their order of appearance, which is the mirror order.
    for (const [url, t] of Object.entries(hosts as Record<string, Table>)) {
      out.push(
        await hostFrom(domain, url, t ?? {}, {
          fileDir,
          where: `${where} [host."${url}"]`,
          mirror: true,
        }),
      );
    }
  }
  if (doc.server !== undefined) {
    if (typeof doc.server !== "string") {
      throw invalidArgument(`Invalid ${where}: "server" must be a URL`);
    }
    out.push(await hostFrom(domain, doc.server, doc, { fileDir, where, mirror: false }));
  } else {
    const server = defaultHost(domain, opts);
    // Top-level settings apply to the default server too.
    const top = await hostFrom(domain, `${server.scheme}://${server.host}`, doc, {
      fileDir,
      where,
      mirror: false,
    });
    out.push(top);
  }
  return out;
}

/**
 * The endpoints to try for `domain`, in order: hosts.toml mirrors, then the
 * server; without a hosts.toml, just the default server.
 */
export async function resolveHosts(
  domain: string,
  opts: HostsOptions = {},
): Promise<RegistryHost[]> {
  if (opts.configDir) {
    const dirName = domain.replace(/^\[(.*)\](:\d+)?$/, "$1$2");
    for (const name of [dirName, "_default"]) {
      const file = join(opts.configDir, "certs.d", name, "hosts.toml");
      let text: string;
      try {
        text = await Deno.readTextFile(file);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) continue;
        throw invalidArgument(`Cannot read hosts file "${file}": ${(e as Error).message}`);
      }
      return parseHostsToml(domain, text, { file, ...(opts.plainHttp ? { plainHttp: true } : {}) });
    }
  }
  return [defaultHost(domain, opts)];
}
