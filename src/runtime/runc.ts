/**
 * A wrapper around the OCI runtime binary (runc, or crun which takes the same
 * command line). Each call runs the binary as a child process with its own
 * `--root` and a JSON log file; a failure is reported with the runtime's own
 * words from that log (or stderr), e.g. `runc create "c1": exec: "nope":
 * executable file not found in $PATH`.
 */
import { failedPrecondition, notFound } from "../core/errdefs.ts";
import type { Logger } from "../util/log.ts";

export interface RuncOptions {
  /** The runtime binary: "runc" (default), "crun" or a path. */
  binary?: string;
  /** Where the runtime keeps container state (runc --root). */
  root: string;
  /** Use the systemd cgroup driver (runc --systemd-cgroup). */
  systemdCgroup?: boolean;
  log?: Logger;
}

/** What `runc state` prints. */
export interface RuncState {
  ociVersion: string;
  id: string;
  pid: number;
  status: "creating" | "created" | "running" | "paused" | "stopped";
  bundle: string;
  rootfs: string;
  created: string;
  annotations?: Record<string, string>;
}

/** Stdio for a runtime call: pipes to this process, or nothing. */
export interface Stdio {
  stdin?: "piped" | "null";
  stdout?: "piped" | "null";
  stderr?: "piped" | "null";
}

export interface CreateOptions extends Stdio {
  bundle: string;
  pidFile: string;
  consoleSocket?: string;
  noPivot?: boolean;
  noNewKeyring?: boolean;
}

export interface ExecOptions extends Stdio {
  /** Path to the process.json. */
  processFile: string;
  pidFile: string;
  consoleSocket?: string;
  detach?: boolean;
}

/** A runtime error carrying the runtime's own message. */
export class RuntimeError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.name = "RuntimeError";
    this.exitCode = exitCode;
  }
}

export class Runc {
  readonly binary: string;
  readonly root: string;
  #systemd: boolean;
  #log: Logger | undefined;
  /** The root dir exists (made once, not before every call). */
  #rootMade = false;

  constructor(opts: RuncOptions) {
    this.binary = opts.binary ?? "runc";
    this.root = opts.root;
    this.#systemd = opts.systemdCgroup ?? false;
    this.#log = opts.log;
  }

  #globalArgs(logFile: string): string[] {
    const a = ["--root", this.root, "--log", logFile, "--log-format", "json"];
    if (this.#systemd) a.push("--systemd-cgroup");
    return a;
  }

  /** The runtime's error text from its JSON log (last error line), or stderr. */
  async #reason(logFile: string, stderr: string): Promise<string> {
    let text = "";
    try {
      text = await Deno.readTextFile(logFile);
    } catch { /* no log written */ }
    let msg = "";
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      try {
        const e = JSON.parse(line) as { level?: string; msg?: string };
        if ((e.level === "error" || e.level === "fatal") && e.msg) msg = e.msg;
      } catch {
        msg = line.trim();
      }
    }
    return msg || stderr.trim() || "no error output";
  }

  /**
   * Runs the binary with `args`. Stdio given as "piped" is returned for the
   * caller to drain (create and exec hand their pipes to the container).
   */
  async #run(
    op: string,
    id: string,
    args: string[],
    stdio: Stdio = {},
  ): Promise<{ child: Deno.ChildProcess; stdout: string }> {
    const t0 = performance.now();
    const logFile = `${this.root}/${id}.${op}.${crypto.randomUUID().slice(0, 8)}.log`;
    if (!this.#rootMade) {
      await Deno.mkdir(this.root, { recursive: true, mode: 0o711 });
      this.#rootMade = true;
    }
    const full = [...this.#globalArgs(logFile), ...args];
    this.#log?.debug("runtime call", { binary: this.binary, op, id, args: full.join(" ") });
    const capture = stdio.stdout === undefined;
    const child = new Deno.Command(this.binary, {
      args: full,
      stdin: stdio.stdin ?? "null",
      stdout: stdio.stdout ?? "piped",
      stderr: stdio.stderr ?? "piped",
    }).spawn();
    // Reading stdout/stderr of a detached container's runtime call would block
    // until the container closes them, so read them only when we own them.
    const outP = capture ? new Response(child.stdout).text() : Promise.resolve("");
    const errP = stdio.stderr === undefined
      ? new Response(child.stderr).text()
      : Promise.resolve("");
    const status = await child.status;
    const [stdout, stderr] = capture || stdio.stderr === undefined
      ? await Promise.all([outP, errP])
      : ["", ""];
    this.#log?.debug("runtime call done", { op, id, ms: Math.round(performance.now() - t0) });
    if (!status.success) {
      const reason = await this.#reason(logFile, stderr);
      await Deno.remove(logFile).catch(() => {});
      this.#log?.debug("runtime call failed", { op, id, code: status.code, reason });
      throw new RuntimeError(`${this.binary} ${op} "${id}": ${reason}`, status.code);
    }
    // Not awaited: the caller (a container start) need not wait for the cleanup.
    Deno.remove(logFile).catch(() => {});
    return { child, stdout };
  }

  /** `runc create`: sets up the container; its init waits for `start`. */
  async create(id: string, opts: CreateOptions): Promise<Deno.ChildProcess> {
    const args = ["create", "--bundle", opts.bundle, "--pid-file", opts.pidFile];
    if (opts.consoleSocket) args.push("--console-socket", opts.consoleSocket);
    if (opts.noPivot) args.push("--no-pivot");
    if (opts.noNewKeyring) args.push("--no-new-keyring");
    args.push(id);
    return (await this.#run("create", id, args, opts)).child;
  }

  async start(id: string): Promise<void> {
    await this.#run("start", id, ["start", id]);
  }

  /** `runc exec --detach`: starts an extra process; its pid lands in pidFile. */
  async exec(id: string, opts: ExecOptions): Promise<Deno.ChildProcess> {
    const args = ["exec", "--detach", "--process", opts.processFile, "--pid-file", opts.pidFile];
    if (opts.consoleSocket) args.push("--console-socket", opts.consoleSocket);
    args.push(id);
    return (await this.#run("exec", id, args, opts)).child;
  }

  async kill(id: string, signal: number | string, all = false): Promise<void> {
    const args = ["kill"];
    if (all) args.push("--all");
    args.push(id, String(signal));
    try {
      await this.#run("kill", id, args);
    } catch (e) {
      if (
        e instanceof RuntimeError &&
        /not running|container not found|process already finished/i.test(e.message)
      ) {
        throw notFound(`process of container "${id}"`, { cause: e });
      }
      throw e;
    }
  }

  async delete(id: string, force = false): Promise<void> {
    const args = ["delete"];
    if (force) args.push("--force");
    args.push(id);
    try {
      await this.#run("delete", id, args);
    } catch (e) {
      if (e instanceof RuntimeError && /does not exist|not found/i.test(e.message)) return;
      throw e;
    }
  }

  async state(id: string): Promise<RuncState> {
    try {
      const { stdout } = await this.#run("state", id, ["state", id]);
      return JSON.parse(stdout) as RuncState;
    } catch (e) {
      if (e instanceof RuntimeError && /does not exist|not found/i.test(e.message)) {
        throw notFound(`container "${id}" in ${this.binary}`, { cause: e });
      }
      throw e;
    }
  }

  async pause(id: string): Promise<void> {
    await this.#wrapState(() => this.#run("pause", id, ["pause", id]));
  }

  async resume(id: string): Promise<void> {
    await this.#wrapState(() => this.#run("resume", id, ["resume", id]));
  }

  /** The pids inside the container (`runc ps --format json`). */
  async ps(id: string): Promise<number[]> {
    const { stdout } = await this.#run("ps", id, ["ps", "--format", "json", id]);
    return (JSON.parse(stdout) as number[] | null) ?? [];
  }

  /** Applies new resources (a linux.resources JSON) with `runc update -r -`. */
  async update(id: string, resourcesFile: string): Promise<void> {
    await this.#run("update", id, ["update", "--resources", resourcesFile, id]);
  }

  /** One stats sample (`runc events --stats`). */
  async stats(id: string): Promise<Record<string, unknown>> {
    const { stdout } = await this.#run("events", id, ["events", "--stats", id]);
    return JSON.parse(stdout) as Record<string, unknown>;
  }

  async #wrapState(fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      if (
        e instanceof RuntimeError && /not running|not paused|is paused|stopped/i.test(e.message)
      ) {
        throw failedPrecondition(e.message, { cause: e });
      }
      throw e;
    }
  }
}

/** Reads a pid file written by the runtime. */
export function readPidFile(path: string): number {
  // Synchronous: a few bytes in the bundle, read while a start waits.
  const pid = Number.parseInt(Deno.readTextFileSync(path).trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`Invalid pid file ${path}`);
  return pid;
}
