/**
 * One process a shim owns: a container's init or an exec'd process, with its
 * lifecycle as an explicit state machine (containerd's pkg/process states):
 *
 * ```
 * created ──start──▶ running ──pause──▶ paused
 *    │                  │  ◀──resume──    │
 *    │                exit               exit
 *    ▼                  ▼                 ▼
 * deleted ◀─delete── stopped ◀────────────┘
 * ```
 *
 * A refused transition is a failed-precondition error naming the state, as
 * containerd's are (`cannot start a running process`).
 */
import { failedPrecondition } from "../../core/errdefs.ts";
import type { PtyMaster } from "../../sys/console.ts";
import type { ProcessIo, StdioPaths } from "./io.ts";

/** Where a process is in its life. */
export type ProcessState = "created" | "running" | "paused" | "stopped" | "deleted";

/** How a process ended. */
export interface ProcessExit {
  status: number;
  at: Date;
}

type Op = "start" | "pause" | "resume" | "delete" | "exec" | "update" | "kill";

/** Which operation each state allows. */
const ALLOWED: Record<ProcessState, readonly Op[]> = {
  created: ["start", "delete", "exec", "update", "kill"],
  running: ["pause", "exec", "update", "kill"],
  paused: ["resume", "exec", "update", "kill"],
  stopped: ["delete"],
  deleted: [],
};

/** The article-and-state phrase containerd uses: "a running process". */
function phrase(state: ProcessState): string {
  return `${state === "created" ? "a created" : `a ${state}`} process`;
}

/** A process of a container, init or exec. */
export class ShimProcess {
  /** The container id. */
  readonly containerId: string;
  /** The exec id; empty for the init process. */
  readonly execId: string;
  readonly stdio: StdioPaths;
  pid = 0;
  io: ProcessIo | undefined;
  pty: PtyMaster | undefined;
  /** For an exec: its runtime-spec process (JSON). */
  spec: unknown;
  /**
   * Settles when a Start in progress has been reported: an exit waits for it,
   * so `/tasks/exit` never precedes `/tasks/start` (containerd holds a lock
   * across start for the same reason).
   */
  starting: Promise<void> = Promise.resolve();
  #state: ProcessState = "created";
  #exit: ProcessExit | undefined;
  #exited: Promise<ProcessExit>;
  #resolveExit!: (e: ProcessExit) => void;

  constructor(containerId: string, execId: string, stdio: StdioPaths) {
    this.containerId = containerId;
    this.execId = execId;
    this.stdio = stdio;
    this.#exited = new Promise((r) => this.#resolveExit = r);
  }

  /** The id events and errors use: the exec id, or the container id for init. */
  get id(): string {
    return this.execId || this.containerId;
  }

  get state(): ProcessState {
    return this.#state;
  }

  get exit(): ProcessExit | undefined {
    return this.#exit;
  }

  /** Resolves when the process has exited (Wait). */
  get exited(): Promise<ProcessExit> {
    return this.#exited;
  }

  /** Throws failed precondition unless `op` is allowed in the current state. */
  check(op: Op): void {
    if (ALLOWED[this.#state].includes(op)) return;
    if (op === "kill" && this.#state === "stopped") return; // the caller answers not found
    throw failedPrecondition(`cannot ${op} ${phrase(this.#state)} "${this.id}"`);
  }

  /** Moves to `state` after the operation that leads there succeeded. */
  to(state: "running" | "paused" | "deleted"): void {
    // An exit that raced with the operation wins: stopped stays stopped.
    if (this.#state === "stopped" && state !== "deleted") return;
    this.#state = state;
  }

  /** Records the exit (once); Wait callers resolve. */
  setExited(exit: ProcessExit): void {
    if (this.#exit) return;
    this.#exit = exit;
    if (this.#state !== "deleted") this.#state = "stopped";
    this.#resolveExit(exit);
  }
}
