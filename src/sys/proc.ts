/**
 * Process supervision for the shim: become a child subreaper, wait for the
 * exits of the pids we own, decode wait statuses, send signals.
 *
 * Why this shape (measured on Deno 2.9, see proc_test.ts):
 * - `waitpid(-1)` would steal the children Deno.Command waits for (their
 *   `status` then fails), so only specific pids are ever waited for.
 * - A blocking `waitpid` on a pool thread cannot be cancelled, holds a thread
 *   per process and keeps the event loop alive until the process exits, and
 *   its errno is not ours to read. Instead a {@link Reaper} runs
 *   `waitpid(pid, WNOHANG)` synchronously (errno is reliable) for every
 *   watched pid whenever SIGCHLD arrives, plus a slow safety poll that also
 *   keeps the event loop alive while anything is watched.
 */
import { check, errno, libc, SysError } from "./libc.ts";

const PR_SET_CHILD_SUBREAPER = 36;
const PR_GET_CHILD_SUBREAPER = 37;
const WNOHANG = 1;
const ECHILD = 10;
const ESRCH = 3;

/**
 * Marks this process a child subreaper (prctl PR_SET_CHILD_SUBREAPER): orphans
 * in its subtree (e.g. a container's init once `runc create` exits) are
 * reparented to it instead of to pid 1, so their exits can be collected here.
 */
export function setChildSubreaper(on = true): void {
  check(
    libc().prctl(PR_SET_CHILD_SUBREAPER, on ? 1n : 0n, 0n, 0n, 0n),
    "prctl(PR_SET_CHILD_SUBREAPER)",
  );
}

/** Whether this process is a child subreaper. */
export function isChildSubreaper(): boolean {
  const out = new Int32Array(1);
  const addr = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(out)));
  check(libc().prctl(PR_GET_CHILD_SUBREAPER, addr, 0n, 0n, 0n), "prctl(PR_GET_CHILD_SUBREAPER)");
  return out[0] !== 0;
}

/** How a process ended. */
export interface ExitStatus {
  pid: number;
  /**
   * The exit code as containerd reports it: the process's own code, or
   * 128 + the signal number when a signal killed it.
   */
  exitStatus: number;
  /** The signal that killed it, if one did. */
  signal?: number;
  coreDumped?: boolean;
  /** When the exit was collected. */
  exitedAt: Date;
}

/** A decoded wait(2) status word. */
export type WaitStatus =
  | { kind: "exited"; code: number }
  | { kind: "signaled"; signal: number; coreDumped: boolean }
  | { kind: "stopped"; signal: number }
  | { kind: "continued" };

/** Decodes a wait(2) status word (the WIFEXITED/WEXITSTATUS/... macros). */
export function decodeWaitStatus(status: number): WaitStatus {
  const low = status & 0x7f;
  if (low === 0) return { kind: "exited", code: (status >> 8) & 0xff };
  if (status === 0xffff) return { kind: "continued" };
  if ((status & 0xff) === 0x7f) return { kind: "stopped", signal: (status >> 8) & 0xff };
  return { kind: "signaled", signal: low, coreDumped: (status & 0x80) !== 0 };
}

/**
 * Collects the exit of `pid` if it has ended (waitpid with WNOHANG), or
 * returns null while it runs. Throws SysError ECHILD when `pid` is not a
 * child of this process (or was already collected).
 */
export function tryWait(pid: number): ExitStatus | null {
  if (!Number.isInteger(pid) || pid <= 0) throw new RangeError(`Invalid pid ${pid}: must be > 0`);
  const st = new Int32Array(1);
  for (;;) {
    const r = libc().waitpid(pid, new Uint8Array(st.buffer), WNOHANG);
    if (r === 0) return null;
    if (r < 0) {
      const e = errno();
      if (e === 4) continue; // EINTR
      throw new SysError("waitpid", e, `pid ${pid}`);
    }
    const w = decodeWaitStatus(st[0]!);
    if (w.kind === "exited") return { pid, exitStatus: w.code, exitedAt: new Date() };
    if (w.kind === "signaled") {
      return {
        pid,
        exitStatus: 128 + w.signal,
        signal: w.signal,
        coreDumped: w.coreDumped,
        exitedAt: new Date(),
      };
    }
    // Stopped/continued are only reported with WUNTRACED/WCONTINUED, which we never pass.
    return null;
  }
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/** A signal number from a number or a name (`SIGTERM`, `TERM`, `15`). */
export function signalNumber(sig: number | string): number {
  if (typeof sig === "number") {
    if (!Number.isInteger(sig) || sig < 0 || sig > 64) {
      throw new RangeError(`Invalid signal ${sig}`);
    }
    return sig;
  }
  const s = sig.trim().toUpperCase();
  if (/^\d+$/.test(s)) return signalNumber(Number(s));
  const n = SIGNALS[s.startsWith("SIG") ? s : `SIG${s}`];
  if (n === undefined) throw new RangeError(`Unknown signal "${sig}"`);
  return n;
}

/**
 * Sends a signal with kill(2) (any pid, process groups with negative pids,
 * numeric signals Deno.kill does not know). Returns false when the process
 * does not exist (ESRCH); other failures throw.
 */
export function kill(pid: number, sig: number | string): boolean {
  const r = libc().kill(pid, signalNumber(sig));
  if (r === 0) return true;
  const e = errno();
  if (e === ESRCH) return false;
  throw new SysError("kill", e, `pid ${pid}`);
}

/** Options of a {@link Reaper}. */
export interface ReaperOptions {
  /** Interval of the safety poll in ms (default 200). */
  pollMs?: number;
}

interface Watch {
  promise: Promise<ExitStatus>;
  resolve(s: ExitStatus): void;
  reject(e: Error): void;
}

/**
 * Waits for the exits of specific child pids (direct children or orphans
 * reparented to this subreaper) without stealing Deno.Command's children.
 *
 * ```ts
 * const reaper = new Reaper();
 * const { exitStatus } = await reaper.wait(pid);
 * ```
 */
export class Reaper {
  #watched = new Map<number, Watch>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #onSignal = () => this.poll();
  #pollMs: number;

  constructor(opts: ReaperOptions = {}) {
    this.#pollMs = opts.pollMs ?? 200;
  }

  /**
   * Resolves with the exit of `pid`. Concurrent waits for the same pid share
   * one wait. Rejects with ECHILD when `pid` is not our child (never was, or
   * its exit was already collected: the caller keeps exits, since pids are
   * reused).
   */
  wait(pid: number): Promise<ExitStatus> {
    const existing = this.#watched.get(pid);
    if (existing) return existing.promise;
    let resolve!: (s: ExitStatus) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<ExitStatus>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.#watched.set(pid, { promise, resolve, reject });
    this.#start();
    // It may have exited already (before we watched): look once now.
    this.#check(pid);
    return promise;
  }

  /** The pids being waited for. */
  get watching(): number[] {
    return [...this.#watched.keys()];
  }

  /** Checks every watched pid now (also runs on SIGCHLD and on the safety poll). */
  poll(): void {
    for (const pid of [...this.#watched.keys()]) this.#check(pid);
  }

  /** Stops watching: pending waits reject, the signal listener and poll stop. */
  close(): void {
    for (const [pid, w] of this.#watched) {
      w.reject(new Error(`Stopped waiting for pid ${pid}: reaper closed`));
    }
    this.#watched.clear();
    this.#stop();
  }

  #check(pid: number): void {
    const w = this.#watched.get(pid);
    if (!w) return;
    let st: ExitStatus | null;
    try {
      st = tryWait(pid);
    } catch (err) {
      this.#watched.delete(pid);
      if (this.#watched.size === 0) this.#stop();
      w.reject(
        err instanceof SysError && err.errno === ECHILD
          ? new SysError("waitpid", ECHILD, `pid ${pid} (not a child of this process)`)
          : err as Error,
      );
      return;
    }
    if (!st) return;
    this.#watched.delete(pid);
    if (this.#watched.size === 0) this.#stop();
    w.resolve(st);
  }

  #start(): void {
    if (this.#timer !== undefined) return;
    Deno.addSignalListener("SIGCHLD", this.#onSignal);
    // The interval keeps the process alive while an exit is awaited (signal
    // listeners do not), and covers a SIGCHLD that raced with a new watch.
    this.#timer = setInterval(() => this.poll(), this.#pollMs);
  }

  #stop(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    Deno.removeSignalListener("SIGCHLD", this.#onSignal);
  }
}
