/**
 * The berth daemon as the benchmarks run it: built the way scripts/setup.sh
 * installs it (scripts/bundle.sh, code-split) or straight from main.ts, on a
 * private root and state directory, stopped and removed again by `stop()`.
 */
const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The V8 flags scripts/setup.sh gives the daemon (the README's "Memory"). */
export const TUNED_V8_FLAGS = "--max-old-space-size=256,--max-semi-space-size=1";

export interface BerthOptions {
  /** Temp dir prefix. */
  prefix: string;
  /** `bundle` (default; as installed) or `source` (main.ts). */
  entry?: "bundle" | "source";
  /** The daemon's V8 flags; undefined means Deno's defaults. */
  v8Flags?: string;
  /** Default `warn`. */
  logLevel?: string;
}

export interface BerthDaemon {
  readonly dir: string;
  readonly sock: string;
  readonly pid: number;
  /** The program the daemon runs (main.ts or the bundle's main.js). */
  readonly entry: string;
  /** `deno` arguments for a CLI call against this daemon. */
  cli(...args: string[]): string[];
  stop(): Promise<void>;
}

/**
 * This process's environment without what tests/_harness.ts sets for tests
 * (the benches import its image builders): the daemon runs on its defaults.
 */
function daemonEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.BERTH_SHIM_LINGER_MS;
  // As scripts/setup.sh's launcher: chunks load when imported, not at start.
  env.DENO_UNSTABLE_LAZY_DYNAMIC_IMPORTS = "1";
  return env;
}

/** Ends the berth shims serving the daemon whose state dir is `state`. */
async function killShims(state: string): Promise<void> {
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`);
      if (cmd.includes("\0shim\0") && cmd.includes(state)) Deno.kill(Number(e.name), "SIGKILL");
    } catch { /* gone */ }
  }
}

/** Builds (if asked) and starts a daemon; resolves once its socket answers. */
export async function startBerthDaemon(opts: BerthOptions): Promise<BerthDaemon> {
  const dir = await Deno.makeTempDir({ prefix: opts.prefix });
  const sock = `${dir}/state/berth.sock`;
  let entry = `${REPO}/main.ts`;
  if ((opts.entry ?? "bundle") === "bundle") {
    const out = await new Deno.Command("bash", {
      args: [`${REPO}/scripts/bundle.sh`, `${dir}/bundle`],
      stdin: "null",
    }).output();
    if (!out.success) throw new Error(`bundle failed:\n${new TextDecoder().decode(out.stderr)}`);
    entry = `${dir}/bundle/main.js`;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ...(opts.v8Flags ? [`--v8-flags=${opts.v8Flags}`] : []),
      entry,
      "daemon",
      "--root",
      `${dir}/root`,
      "--state",
      `${dir}/state`,
      "--address",
      sock,
      "--log-level",
      opts.logLevel ?? Deno.env.get("BENCH_BERTH_LOG") ?? "warn",
    ],
    env: daemonEnv(),
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  let alive = true;
  child.status.then(() => (alive = false));
  const stop = async () => {
    if (alive) child.kill("SIGTERM");
    await child.status;
    // A shim outlives its daemon by design, and an idle one lingers 30 s; the
    // next bench must not find it (it would share Deno's pages and lower PSS).
    await killShims(`${dir}/state`);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const end = Date.now() + 30_000;
  for (;;) {
    if (!alive) {
      await stop();
      throw new Error("berth exited before it served");
    }
    try {
      (await Deno.connect({ transport: "unix", path: sock })).close();
      break;
    } catch {
      if (Date.now() > end) {
        await stop();
        throw new Error(`Timed out waiting for ${sock}`);
      }
      await sleep(50);
    }
  }
  return {
    dir,
    sock,
    pid: child.pid,
    entry,
    cli: (...args) => ["run", "-A", "--unstable-lazy-dynamic-imports", entry, "-a", sock, ...args],
    stop,
  };
}
