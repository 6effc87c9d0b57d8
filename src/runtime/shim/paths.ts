/**
 * Where a berth shim keeps things, and how it starts another copy of itself.
 *
 * Layout (all under the shim's state dir, lost at reboot by design):
 * - `<state>/s/<sha256(address/namespace/group)>`: the shim's ttrpc socket
 *   (containerd's `/run/containerd/s/<hash>` scheme); `.lock` beside it
 *   serialises concurrent `start`s of one group, `.log` holds the shim's log.
 * - `<state>/runc/<namespace>`: the runc `--root` of the shim's containers
 *   (an Options.root from the daemon overrides it).
 * - In each bundle: `address` (the shim's ttrpc address), `shim.pid`,
 *   `options.json` (the runtime options, read back by `shim delete`).
 *
 * The state dir is `$BERTH_SHIM_STATE` when set; else the directory of the
 * daemon's socket when that socket is berth's (`…/berth.sock`), so a daemon
 * with `--state DIR` gets its shims under DIR; else `/run/berth`. Under real
 * containerd (socket `/run/containerd/containerd.sock`) that gives
 * `/run/berth`, keeping berth's runc root apart from containerd's own.
 */

// No node: modules here: loading Deno's Node compatibility layer costs a
// long-lived shim several MB (measured), for three one-line helpers.

/** The directory part of an absolute path. */
export function dirname(path: string): string {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** The last part of a path. */
export function basename(path: string): string {
  return path.replace(/\/+$/, "").split("/").pop() ?? "";
}

async function sha256Hex(text: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Default state dir of berth (the daemon's `state`). */
export const DEFAULT_SHIM_STATE = "/run/berth";

/**
 * V8 flags of a shim run by `deno run` (override with BERTH_SHIM_V8_FLAGS;
 * comma-separated). `--expose-gc` lets an idle shim collect before it trims
 * its heap (server.ts). `--lite-mode` (no optimizing compiler) saves ~3 MB
 * RSS per shim; a shim's calls are short, and `ctr run --rm` measured the
 * same with and without it (median of 12, interleaved: 235 vs 236 ms).
 */
export const SHIM_V8_FLAGS = "--max-semi-space-size=1,--expose-gc,--lite-mode";

/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

/** The shim's state dir for a daemon at `address` (see the module doc). */
export function shimStateDir(address: string): string {
  const env = Deno.env.get("BERTH_SHIM_STATE");
  if (env) return env;
  const path = address.replace(/^unix:\/\//, "");
  if (path.startsWith("/") && basename(path) === "berth.sock") return dirname(path);
  return DEFAULT_SHIM_STATE;
}

/**
 * The socket path of the shim serving `group` in `namespace` for the daemon at
 * `address`: `<state>/s/<sha256>`, or `/run/berth/s/<sha256>` when the state
 * dir is so deep the path would not fit in a sockaddr_un.
 */
const socketPaths = new Map<string, string>();

export async function shimSocketPath(
  address: string,
  namespace: string,
  group: string,
): Promise<string> {
  const key = `${address}/${namespace}/${group}`;
  // Remembered: the daemon asks for the same group's path at every start.
  const known = socketPaths.get(key);
  if (known) return known;
  if (socketPaths.size > 1024) socketPaths.clear();
  const path = await computeSocketPath(address, key);
  socketPaths.set(key, path);
  return path;
}

async function computeSocketPath(address: string, key: string): Promise<string> {
  const hash = await sha256Hex(key);
  const path = `${shimStateDir(address)}/s/${hash}`;
  if (new TextEncoder().encode(path).length + ".lock".length <= MAX_SOCKET_PATH) return path;
  return `${DEFAULT_SHIM_STATE}/s/${hash}`;
}

/** The runc root of the shim's containers in `namespace`. */
export function runcRoot(stateDir: string, namespace: string): string {
  return `${stateDir}/runc/${namespace}`;
}

/**
 * The command line that runs this same program again: a compiled binary runs
 * itself; `deno run main.ts` or a bundle `deno run berth.js` runs Deno with
 * the same main module (and its deno.json, so the import map resolves even
 * from another working directory, e.g. a bundle dir).
 */
export function selfCommand(): { command: string; args: string[] } {
  const exe = Deno.execPath();
  const main = Deno.mainModule;
  // A compiled program's main module lives in a virtual `deno-compile-*` dir.
  if (!main.startsWith("file:") || main.includes("/deno-compile-")) {
    return { command: exe, args: [] };
  }
  const path = decodeURIComponent(new URL(main).pathname);
  const args = ["run", "-A", "--quiet"];
  for (const name of ["deno.json", "deno.jsonc"]) {
    const config = `${dirname(path)}/${name}`;
    try {
      Deno.statSync(config);
      args.push("--config", config);
      break;
    } catch {
      // Not beside the main module (e.g. a bundle): nothing to pass.
    }
  }
  // A shim is long-lived and mostly idle: small young-generation spaces keep
  // its memory low (PLATFORM.md measured the effect on grpc-js servers).
  args.push(`--v8-flags=${Deno.env.get("BERTH_SHIM_V8_FLAGS") ?? SHIM_V8_FLAGS}`);
  args.push(path);
  return { command: exe, args };
}
