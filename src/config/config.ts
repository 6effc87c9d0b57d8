/**
 * Daemon configuration: a TOML file (default /etc/berth/config.toml, optional)
 * and command-line flags, resolved once at start-up into {@link Config} and passed
 * down explicitly. Flags win over the file; the file wins over the defaults.
 *
 * ```toml
 * root = "/var/lib/berth"
 * state = "/run/berth"
 * [grpc]
 * address = "/run/berth/berth.sock"
 * gid = 0
 * [log]
 * level = "info"
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
}

/** What a user may write in the file or on the command line. */
export interface ConfigInput {
  root?: string;
  state?: string;
  address?: string;
  gid?: number;
  logLevel?: string;
}

export const DEFAULT_CONFIG_FILE = "/etc/berth/config.toml";
export const DEFAULT_ROOT = "/var/lib/berth";
export const DEFAULT_STATE = "/run/berth";
export const DEFAULT_ADDRESS = "/run/berth/berth.sock";

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
  };
}
