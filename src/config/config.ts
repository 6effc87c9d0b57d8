/**
 * Daemon configuration: a TOML file (default /etc/berth/config.toml, optional)
 * and command-line flags, resolved once at start-up into {@link Config} and passed
 * down explicitly. Flags win over the file; the file wins over the defaults.
 *
 * ```toml
 * root = "/var/lib/berth"
 * state = "/run/berth"
 * snapshotter = "overlayfs"   # or "native": the default for calls naming none
 * [grpc]
 * address = "/run/berth/berth.sock"
 * gid = 0
 * [log]
 * level = "info"
 * # Which shim v2 runs a runtime name (see {@link RuntimeConfig}).
 * [runtimes."io.containerd.runc.v2"]
 * shim = "berth"            # or binary = "/usr/bin/containerd-shim-runc-v2"
 * options = { binary_name = "runc" }
 * ```
 */
import { parse as parseToml } from "smol-toml";
import { type LogLevel, parseLogLevel } from "../util/log.ts";

/** The resolved configuration: every field set. */
export interface Config {
  root: string;
  state: string;
  address: string;
  /** Group owning the socket (mode 0660). */
  gid: number;
  logLevel: LogLevel;
  configFile: string;
  /** The snapshotter used when a call names none. */
  snapshotter: string;
  /** Layers a pull downloads at once (containerd's default is 3). */
  maxConcurrentDownloads: number;
  /** Shims by runtime name (defaults merged with the file's `[runtimes."<name>"]`). */
  runtimes: Record<string, RuntimeConfig>;
  /**
   * How berth's shim processes are shared: "namespace" (default: one shim per
   * namespace; containers with a group annotation still go by that group) or
   * "container" (one shim per container, as containerd's runc shim does).
   */
  shimGroup: "namespace" | "container";
}

/**
 * How a runtime name (e.g. `io.containerd.runc.v2`) is run: berth's own shim
 * (`shim = "berth"`) or a shim v2 binary at an absolute path. Names with no
 * entry resolve as in containerd 1.6: `io.containerd.X.vY` runs
 * `containerd-shim-X-vY` from PATH, and an absolute path is used as is.
 */
export interface RuntimeConfig {
  /** "berth" for berth's own shim (`berth shim`); unset when `binary` is. */
  shim?: "berth";
  /** Absolute path of a shim v2 binary. */
  binary?: string;
  /**
   * runc options used when neither the task nor the container gives any:
   * `binary_name` (runc or crun), `root` (the runc root), `systemd_cgroup`.
   */
  options?: { binaryName?: string; root?: string; systemdCgroup?: boolean };
}

/** The built-in mapping: containerd's default runtime runs berth's own shim. */
export const DEFAULT_RUNTIMES: Readonly<Record<string, RuntimeConfig>> = {
  "io.containerd.runc.v2": { shim: "berth" },
  "io.containerd.berth.v2": { shim: "berth" },
};

/** What a user may write in the file or on the command line. */
export interface ConfigInput {
  root?: string;
  state?: string;
  address?: string;
  gid?: number;
  logLevel?: string;
  snapshotter?: string;
  maxConcurrentDownloads?: number;
  shimGroup?: "namespace" | "container";
  runtimes?: Record<string, RuntimeConfig>;
}

export const DEFAULT_CONFIG_FILE = "/etc/berth/config.toml";
export const DEFAULT_ROOT = "/var/lib/berth";
export const DEFAULT_STATE = "/run/berth";
export const DEFAULT_ADDRESS = "/run/berth/berth.sock";
export const DEFAULT_SNAPSHOTTER = "overlayfs";

function str(v: unknown, key: string, file: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new Error(`Invalid config ${file}: ${key} must be a string`);
  return v;
}

/** Reads the TOML file; a missing default file is fine, a missing named one is not. */
export async function readConfigFile(path: string, required: boolean): Promise<ConfigInput> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && !required) return {};
    throw new Error(`Cannot read config ${path}: ${(e as Error).message}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`Invalid config ${path}: ${(e as Error).message}`);
  }
  const grpc = (doc.grpc ?? {}) as Record<string, unknown>;
  const log = (doc.log ?? {}) as Record<string, unknown>;
  const out: ConfigInput = {};
  const root = str(doc.root, "root", path);
  if (root) out.root = root;
  const state = str(doc.state, "state", path);
  if (state) out.state = state;
  const address = str(grpc.address, "grpc.address", path);
  if (address) out.address = address;
  if (grpc.gid !== undefined) out.gid = Number(grpc.gid);
  const level = str(log.level, "log.level", path);
  if (level) out.logLevel = level;
  const snapshotter = str(doc.snapshotter, "snapshotter", path);
  if (snapshotter) out.snapshotter = snapshotter;
  if (doc.max_concurrent_downloads !== undefined) {
    const n = Number(doc.max_concurrent_downloads);
    if (!Number.isInteger(n) || n < 1) {
      throw new Error(
        `Invalid config ${path}: max_concurrent_downloads must be a positive integer`,
      );
    }
    out.maxConcurrentDownloads = n;
  }
  if (doc.runtimes !== undefined) out.runtimes = parseRuntimes(doc.runtimes, path);
  const group = str(doc.shim_group, "shim_group", path);
  if (group !== undefined) {
    if (group !== "namespace" && group !== "container") {
      throw new Error(`Invalid config ${path}: shim_group must be "namespace" or "container"`);
    }
    out.shimGroup = group;
  }
  return out;
}

/** Reads `[runtimes."<name>"]` tables; each needs exactly one of shim or binary. */
function parseRuntimes(v: unknown, path: string): Record<string, RuntimeConfig> {
  const table = (x: unknown, key: string): Record<string, unknown> => {
    if (typeof x !== "object" || x === null || Array.isArray(x)) {
      throw new Error(`Invalid config ${path}: ${key} must be a table`);
    }
    return x as Record<string, unknown>;
  };
  const out: Record<string, RuntimeConfig> = {};
  for (const [name, raw] of Object.entries(table(v, "runtimes"))) {
    const key = `runtimes."${name}"`;
    const t = table(raw, key);
    const rc: RuntimeConfig = {};
    const shim = str(t.shim, `${key}.shim`, path);
    const binary = str(t.binary, `${key}.binary`, path);
    if (shim !== undefined && shim !== "berth") {
      throw new Error(`Invalid config ${path}: ${key}.shim must be "berth" (got "${shim}")`);
    }
    if ((shim === undefined) === (binary === undefined)) {
      throw new Error(`Invalid config ${path}: ${key} needs exactly one of shim or binary`);
    }
    if (binary !== undefined && !binary.startsWith("/")) {
      throw new Error(`Invalid config ${path}: ${key}.binary must be an absolute path`);
    }
    if (shim) rc.shim = "berth";
    if (binary) rc.binary = binary;
    if (t.options !== undefined) {
      const o = table(t.options, `${key}.options`);
      const opts: NonNullable<RuntimeConfig["options"]> = {};
      const binaryName = str(o.binary_name, `${key}.options.binary_name`, path);
      if (binaryName) opts.binaryName = binaryName;
      const root = str(o.root, `${key}.options.root`, path);
      if (root) opts.root = root;
      if (o.systemd_cgroup !== undefined) {
        if (typeof o.systemd_cgroup !== "boolean") {
          throw new Error(
            `Invalid config ${path}: ${key}.options.systemd_cgroup must be a boolean`,
          );
        }
        opts.systemdCgroup = o.systemd_cgroup;
      }
      rc.options = opts;
    }
    out[name] = rc;
  }
  return out;
}

/** Merges flags over the file over the defaults. */
export function resolveConfig(file: ConfigInput, flags: ConfigInput, configFile: string): Config {
  const pick = <K extends keyof ConfigInput>(k: K) => flags[k] ?? file[k];
  const state = pick("state") ?? DEFAULT_STATE;
  return {
    root: pick("root") ?? DEFAULT_ROOT,
    state,
    address: pick("address") ?? (state === DEFAULT_STATE ? DEFAULT_ADDRESS : `${state}/berth.sock`),
    gid: pick("gid") ?? 0,
    logLevel: parseLogLevel(pick("logLevel") ?? "info"),
    configFile,
    snapshotter: pick("snapshotter") ?? DEFAULT_SNAPSHOTTER,
    maxConcurrentDownloads: pick("maxConcurrentDownloads") ?? 8,
    shimGroup: pick("shimGroup") ?? "namespace",
    runtimes: { ...DEFAULT_RUNTIMES, ...file.runtimes, ...flags.runtimes },
  };
}
