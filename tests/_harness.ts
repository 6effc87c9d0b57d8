/**
 * End-to-end harness: runs a real berth daemon (a child process of this test)
 * on a temporary root, state and socket, and runs the real `berth` CLI and
 * Debian's `ctr` against it.
 *
 * ```ts
 * await using d = await startDaemon();
 * const r = await d.ctr("version");
 * ```
 */
import assert from "node:assert/strict";

export const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

// Shims of a group exit as soon as their last container is gone, so tests can
// wait for that; tests of the lingering shim set it themselves.
if (Deno.env.get("BERTH_SHIM_LINGER_MS") === undefined) Deno.env.set("BERTH_SHIM_LINGER_MS", "0");
export const MAIN = `${REPO}/main.ts`;

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  stdin?: string | Uint8Array;
  env?: Record<string, string>;
  cwd?: string;
  /** Fail the test if the command exits non-zero (default false). */
  check?: boolean;
}

/** Runs a command to completion and collects its output. */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<Run> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(
      typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin,
    );
    await w.close();
  }
  const out = await child.output();
  const r = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  if (opts.check && r.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
    );
  }
  return r;
}

/** Waits until `fn` returns true, polling every 20 ms, or fails after `ms`. */
export async function waitFor(
  what: string,
  fn: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
}

export interface DaemonOptions {
  /** Reuse this directory (root, state) instead of a new temporary one. */
  dir?: string;
  extraArgs?: string[];
  /** Extra environment for the daemon (and the shims it starts). */
  env?: Record<string, string>;
  logLevel?: string;
}

export class TestDaemon implements AsyncDisposable {
  readonly dir: string;
  readonly root: string;
  readonly state: string;
  readonly sock: string;
  #child: Deno.ChildProcess | undefined;
  #opts: DaemonOptions;
  #log: Deno.FsFile | undefined;
  readonly logPath: string;

  constructor(dir: string, opts: DaemonOptions) {
    this.dir = dir;
    this.root = `${dir}/root`;
    this.state = `${dir}/state`;
    this.sock = `${dir}/state/berth.sock`;
    this.logPath = `${dir}/daemon.log`;
    this.#opts = opts;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the daemon and waits until its socket answers. */
  async start(): Promise<void> {
    this.#log = await Deno.open(this.logPath, { append: true, create: true, write: true });
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        MAIN,
        "daemon",
        "--root",
        this.root,
        "--state",
        this.state,
        "--address",
        this.sock,
        "--log-level",
        this.#opts.logLevel ?? "debug",
        ...(this.#opts.extraArgs ?? []),
      ],
      ...(this.#opts.env ? { env: this.#opts.env } : {}),
      stdin: "null",
      stdout: this.#log.writable ? "piped" : "null",
      stderr: "piped",
    }).spawn();
    const log = this.#log;
    // Copy the daemon's output into its log file (read on failure).
    for (const s of [this.#child.stdout, this.#child.stderr]) {
      s.pipeTo(new WritableStream({ write: (c) => void log.writeSync(c) })).catch(() => {});
    }
    const child = this.#child;
    let exited = false;
    child.status.then(() => (exited = true));
    await waitFor("the daemon socket", async () => {
      if (exited) throw new Error(`daemon exited early:\n${await this.log()}`);
      try {
        const c = await Deno.connect({ transport: "unix", path: this.sock });
        c.close();
        return true;
      } catch {
        return false;
      }
    }, 20_000);
  }

  /** The daemon's log so far. */
  async log(): Promise<string> {
    return await Deno.readTextFile(this.logPath).catch(() => "");
  }

  /** Sends `signal` and waits for the daemon to exit; returns its exit code. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<number> {
    const child = this.#child;
    if (!child) return 0;
    this.#child = undefined;
    try {
      child.kill(signal);
    } catch { /* already gone */ }
    const st = await child.status;
    this.#log?.close();
    this.#log = undefined;
    return st.code;
  }

  /** kill -9, as a crash would. */
  kill(): Promise<number> {
    return this.stop("SIGKILL");
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Runs `berth -a SOCK args...`. */
  berth(args: string[], opts: RunOptions = {}): Promise<Run> {
    return run(Deno.execPath(), ["run", "-A", MAIN, "-a", this.sock, ...args], opts);
  }

  /** Runs Debian's `ctr -a SOCK args...`. */
  ctr(args: string[], opts: RunOptions = {}): Promise<Run> {
    return run("ctr", ["-a", this.sock, ...args], opts);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Starts a daemon on a fresh temporary directory (removed on dispose). */
export async function startDaemon(opts: DaemonOptions = {}): Promise<TestDaemon> {
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "berth-test-" });
  const d = new TestDaemon(dir, opts);
  await d.start();
  return d;
}

/** Asserts a command succeeded, showing its output when it did not. */
export function ok(r: Run, what = "command"): Run {
  assert.equal(r.code, 0, `${what} failed (${r.code}):\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}
