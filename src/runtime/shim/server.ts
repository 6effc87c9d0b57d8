/**
 * The long-lived shim process (`berth shim … serve`): a child subreaper that
 * serves containerd.task.v2.Task on its ttrpc socket and forwards task
 * events to the daemon, until Shutdown finds no container left.
 */
import { Task } from "../../gen/containerd/task/v2/shim_pb.ts";
import { TtrpcServer } from "../../ttrpc/server.ts";
import { Reaper, setChildSubreaper } from "../../sys/proc.ts";
import { Logger } from "../../util/log.ts";
import { libc } from "../../sys/libc.ts";
import { eventsAddress, type ShimFlags } from "./binary.ts";
import { shimStateDir } from "./paths.ts";
import { EventPublisher } from "./publisher.ts";
import { TaskService } from "./service.ts";

/**
 * A log sink appending to `path` (the shim has no stdio of its own). The file
 * is created on the first line, so a quiet shim leaves no file behind.
 */
function fileSink(path: string): (line: string) => void {
  let file: Deno.FsFile | undefined;
  let failed = false;
  const enc = new TextEncoder();
  return (line) => {
    if (failed) return;
    try {
      file ??= Deno.openSync(path, { create: true, append: true, write: true });
      file.writeSync(enc.encode(line + "\n"));
    } catch {
      failed = true; // the log is best effort
    }
  };
}

/** How long the shim waits after its last call before it gives memory back. */
const TRIM_IDLE_MS = 1000;

/**
 * Wraps every handler so that, once calls stop for {@link TRIM_IDLE_MS}, the
 * shim collects its garbage (when V8 exposes `gc`, see SHIM_V8_FLAGS) and
 * hands glibc's freed heap back to the kernel. The collection is V8's
 * "last resort" one, which compacts and releases emptied heap pages: ~7 ms
 * against ~4 ms for a plain one, and ~2.5 MB less resident with 20
 * containers (bench/run). A shim lives long and idles
 * almost always; without this it keeps the high-water mark of its busiest
 * moment (a burst of starts leaves several MB of freed memory resident).
 */
function trimmingWhenIdle<T extends object>(handlers: T): T {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const trim = () => {
    timer = undefined;
    (globalThis as { gc?: (o?: object) => void }).gc?.({
      type: "major",
      execution: "sync",
      flavor: "last-resort",
    });
    try {
      libc().malloc_trim(0n);
    } catch { /* not glibc: nothing to give back this way */ }
  };
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(trim, TRIM_IDLE_MS);
    Deno.unrefTimer(timer);
  };
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(handlers)) {
    // Armed when a call ends, not when it starts: a long Wait is not idleness.
    out[name] = async (...args: unknown[]) => {
      try {
        return await (fn as (...a: unknown[]) => unknown)(...args);
      } finally {
        arm();
      }
    };
  }
  return out as T;
}

/** Serves the shim on `flags.socket` until shut down; returns the exit code. */
export async function serveShim(flags: ShimFlags): Promise<number> {
  if (!flags.socket) throw new Error("berth shim serve: -socket is required");
  const log = new Logger(flags.debug ? "debug" : "warn", {
    shim: Deno.pid,
    namespace: flags.namespace,
  }, fileSink(`${flags.socket}.log`));
  // Orphaned container inits (when `runc create` exits) become our children.
  setChildSubreaper(true);
  const reaper = new Reaper();
  const publisher = new EventPublisher({
    address: eventsAddress(flags),
    namespace: flags.namespace,
    log,
  });
  let stop!: () => void;
  const linger = Math.max(0, Number(flags.linger || 0));
  let lingering: ReturnType<typeof setTimeout> | undefined;
  const stopped = new Promise<void>((r) => stop = r);
  const service = new TaskService({
    namespace: flags.namespace,
    stateDir: shimStateDir(flags.address),
    log,
    publisher,
    reaper,
    // A group's shim lingers: if a container arrives meanwhile, the next
    // Shutdown (after that one is gone) arms the timer again.
    onShutdown: () => {
      clearTimeout(lingering);
      lingering = setTimeout(() => {
        if (service.containerCount === 0) stop();
      }, linger);
    },
  });
  const server = new TtrpcServer({ log });
  server.register(Task, trimmingWhenIdle(service.handlers()));
  try {
    server.listen(flags.socket);
  } catch (err) {
    // No stdio here: `start` shows this log's tail when the shim dies early.
    log.error("cannot serve", { error: err });
    throw err;
  }
  log.debug("shim serving", { socket: flags.socket, events: eventsAddress(flags) });
  await stopped;
  // The Shutdown call is answered before the connections close.
  await server.shutdown();
  await publisher.flush(3000);
  publisher.close();
  reaper.close();
  await Deno.remove(flags.socket).catch(() => {});
  await Deno.remove(`${flags.socket}.lock`).catch(() => {});
  log.debug("shim exiting");
  // A clean exit leaves nothing behind; with -debug the log stays for reading.
  if (!flags.debug) await Deno.remove(`${flags.socket}.log`).catch(() => {});
  return 0;
}
