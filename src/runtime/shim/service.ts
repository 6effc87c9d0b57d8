/**
 * The shim's containerd.task.v2.Task service: one or more containers (a
 * group, e.g. a pod), each an init process plus exec'd processes, run with
 * runc (or crun, through the runtime option binary_name) as child processes.
 *
 * Follows containerd 1.6's runc v2 shim: rootfs mounted into
 * `<bundle>/rootfs`, runc's own error words, events on every transition
 * (`/tasks/create`, `/tasks/start`, `/tasks/exit`, ...), exit statuses kept
 * in memory so a restarted daemon can still ask for them, and all of a
 * container's processes killed when its init exits if the container shares
 * a pid namespace (otherwise the kernel does it).
 */
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  alreadyExists,
  failedPrecondition,
  invalidArgument,
  notFound,
  notImplemented,
} from "../../core/errdefs.ts";
import type {
  CreateTaskRequest,
  ExecProcessRequest,
  StateResponseSchema,
  Task,
} from "../../gen/containerd/task/v2/shim_pb.ts";
import { Status } from "../../gen/containerd/types/task/task_pb.ts";
import {
  TaskCreateSchema,
  TaskDeleteSchema,
  TaskExecAddedSchema,
  TaskExecStartedSchema,
  TaskExitSchema,
  TaskOOMSchema,
  TaskPausedSchema,
  TaskResumedSchema,
  TaskStartSchema,
} from "../../gen/containerd/events/task_pb.ts";
import {
  type Options as RuncOptionsMessage,
  OptionsSchema,
  ProcessDetailsSchema,
} from "../../gen/containerd/runc/options/oci_pb.ts";
import type { TtrpcServiceImpl } from "../../ttrpc/server.ts";
import { ConsoleSocket, type PtyMaster } from "../../sys/console.ts";
import { kill, type Reaper } from "../../sys/proc.ts";
import { readPidFile, type Runc } from "../runc.ts";
import type { Logger } from "../../util/log.ts";
import { ProcessIo, type StdioPaths } from "./io.ts";
import { type ProcessExit, type ProcessState, ShimProcess } from "./process.ts";
import type { EventPublisher } from "./publisher.ts";
import { basename } from "./paths.ts";
import { type BundleOptions, runcFor, unmountRootfs } from "./bundle.ts";

/** How long an exited process's output may keep flowing before its exit is reported. */
const DRAIN_MS = 2000;

class Container {
  readonly id: string;
  readonly bundle: string;
  readonly runc: Runc;
  readonly init: ShimProcess;
  readonly execs = new Map<string, ShimProcess>();
  readonly options: BundleOptions;
  mounted = false;
  killAllOnExit = false;
  oom: { close(): void } | undefined;
  #lock: Promise<unknown> = Promise.resolve();

  constructor(id: string, bundle: string, runc: Runc, init: ShimProcess, options: BundleOptions) {
    this.id = id;
    this.bundle = bundle;
    this.runc = runc;
    this.init = init;
    this.options = options;
  }

  /** Runs `fn` after every earlier locked operation on this container finished. */
  locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => {});
    return run;
  }
}

/** Options of a {@link TaskService}. */
export interface TaskServiceOptions {
  namespace: string;
  /** The shim's state dir (runc root, console sockets). */
  stateDir: string;
  log: Logger;
  publisher: EventPublisher;
  reaper: Reaper;
  /** Called when Shutdown finds no container left: the shim should exit. */
  onShutdown: () => void;
}

const STATUS: Record<ProcessState, Status> = {
  created: Status.CREATED,
  running: Status.RUNNING,
  paused: Status.PAUSED,
  stopped: Status.STOPPED,
  deleted: Status.STOPPED,
};

function ts(d: Date | undefined): Timestamp | undefined {
  return d ? timestampFromDate(d) : undefined;
}

/** The Task service of one shim process. */
export class TaskService {
  #opts: TaskServiceOptions;
  #log: Logger;
  #containers = new Map<string, Container>();
  /** Pids of our processes, from the moment runc reports them until their exit is handled. */
  #known = new Set<number>();
  #sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(opts: TaskServiceOptions) {
    this.#opts = opts;
    this.#log = opts.log;
  }

  /**
   * While a container shares the host pid namespace, its orphans come to
   * this subreaper: collect their exits every few seconds (see orphans.ts).
   */
  #sweepOrphans(): void {
    const shared = [...this.#containers.values()].filter((c) => c.killAllOnExit);
    if (shared.length === 0) {
      if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
      this.#sweeper = undefined;
      return;
    }
    if (this.#sweeper !== undefined) return;
    const timer = setInterval(async () => {
      const { reapOrphans } = await import("./orphans.ts");
      // Never a pid we or the reaper wait for, nor a runtime call Deno.Command waits for.
      const runtimes = new Set(["runc", "crun"]);
      for (const c of this.#containers.values()) runtimes.add(basename(c.runc.binary));
      const watching = new Set(this.#opts.reaper.watching);
      const reaped = reapOrphans((z) =>
        this.#known.has(z.pid) || watching.has(z.pid) || runtimes.has(z.comm)
      );
      if (reaped.length > 0) this.#log.debug("reaped orphans", { pids: reaped.join(",") });
      this.#sweepOrphans();
    }, 2000);
    Deno.unrefTimer(timer);
    this.#sweeper = timer;
  }

  /** Number of containers this shim holds. */
  get size(): number {
    return this.#containers.size;
  }

  #container(id: string): Container {
    const c = this.#containers.get(id);
    if (!c) throw notFound(`container "${id}"`);
    return c;
  }

  #process(c: Container, execId: string): ShimProcess {
    if (!execId) return c.init;
    const p = c.execs.get(execId);
    if (!p) throw notFound(`process "${execId}" in container "${c.id}"`);
    return p;
  }

  #publish: EventPublisher["publish"] = (topic, schema, msg) =>
    this.#opts.publisher.publish(topic, schema, msg);

  /** A console socket path that fits in a sockaddr_un. */
  #consolePath(): string {
    const name = `${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}.pty`;
    const path = `${this.#opts.stateDir}/s/${name}`;
    return path.length < 100 ? path : `/tmp/berth-${name}`;
  }

  /**
   * Runs the runtime call that makes a process (create or exec), with a
   * terminal through a console socket or with pipes, and attaches its IO.
   */
  async #spawn(
    p: ShimProcess,
    make: (stdio: {
      consoleSocket?: string;
      stdin: "piped" | "null";
      stdout: "piped" | "null";
      stderr: "piped" | "null";
    }) => Promise<Deno.ChildProcess>,
    pidFile: string,
  ): Promise<void> {
    const stdio = p.stdio;
    if (stdio.terminal) {
      await Deno.mkdir(`${this.#opts.stateDir}/s`, { recursive: true });
      const sock = ConsoleSocket.listen(this.#consolePath());
      try {
        const receiving = sock.receive({ signal: AbortSignal.timeout(30_000) });
        receiving.catch(() => {});
        await make({ consoleSocket: sock.path, stdin: "null", stdout: "null", stderr: "null" });
        p.pid = readPidFile(pidFile);
        this.#known.add(p.pid);
        const pty: PtyMaster = await receiving;
        p.pty = pty;
        p.io = await ProcessIo.attachStreams({
          stdout: pty.readable,
          ...(stdio.stdin ? { stdin: pty.writable } : {}),
        }, stdio);
      } finally {
        sock.close();
      }
    } else {
      const child = await make({
        stdin: stdio.stdin ? "piped" : "null",
        stdout: "piped",
        stderr: "piped",
      });
      p.pid = readPidFile(pidFile);
      this.#known.add(p.pid);
      p.io = await ProcessIo.attach(child, stdio);
    }
  }

  /** Follows `p` until it exits, then records and reports the exit. */
  #watch(c: Container, p: ShimProcess): void {
    const pid = p.pid;
    this.#opts.reaper.wait(pid).then(
      (e) => ({ status: e.exitStatus, at: e.exitedAt }),
      async (err) => {
        // Not our child (should not happen to a subreaper): follow it by polling.
        this.#log.warn("cannot wait for process, polling it", { pid, error: err });
        while (kill(pid, 0)) await new Promise((r) => setTimeout(r, 200));
        return { status: 255, at: new Date() };
      },
    ).then((exit) => this.#onExit(c, p, exit)).catch((err) =>
      this.#log.error("handling a process exit failed", { pid, error: err })
    );
  }

  async #onExit(c: Container, p: ShimProcess, exit: ProcessExit): Promise<void> {
    this.#log.debug("process exited", {
      id: c.id,
      exec: p.execId,
      pid: p.pid,
      status: exit.status,
    });
    if (p === c.init && c.killAllOnExit) {
      // Without a pid namespace of its own, the container's other processes
      // survive its init: end them, as containerd's shim does.
      await c.runc.kill(c.id, 9, true).catch(() => {});
    }
    if (p.io) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        p.io.drained(),
        new Promise((r) => timer = setTimeout(r, DRAIN_MS)),
      ]);
      clearTimeout(timer);
    }
    // The terminal stays open until Delete: a client may still resize it (as
    // ctr does right after Start, racing a short-lived process).
    await p.starting;
    p.setExited(exit);
    this.#known.delete(p.pid);
    this.#publish("/tasks/exit", TaskExitSchema, {
      containerId: c.id,
      id: p.id,
      pid: p.pid,
      exitStatus: exit.status,
      exitedAt: timestampFromDate(exit.at),
    });
  }

  /** Publishes `/tasks/oom` for every OOM kill in the container's memory cgroup (cgroup v1). */
  async #watchOom(c: Container): Promise<void> {
    const { memoryCgroupOf, OomWatcher } = await import("./oom.ts");
    const cgroup = await memoryCgroupOf(c.init.pid);
    if (!cgroup || !this.#containers.has(c.id)) return;
    const w = await OomWatcher.open(cgroup);
    c.oom = w;
    while (await w.next()) {
      this.#log.debug("oom kill", { id: c.id, cgroup });
      this.#publish("/tasks/oom", TaskOOMSchema, { containerId: c.id });
    }
  }

  /** A process that was made but will not be followed (its setup failed): collect its exit. */
  #forget(p: ShimProcess): void {
    if (p.pid <= 0) return;
    const pid = p.pid;
    this.#opts.reaper.wait(pid).catch(() => {}).finally(() => this.#known.delete(pid));
  }

  async #writeTemp(bundle: string, what: string, data: string): Promise<string> {
    const path = `${bundle}/.${what}-${crypto.randomUUID().slice(0, 8)}.json`;
    await Deno.writeTextFile(path, data);
    return path;
  }

  // ---- the Task methods ----

  async create(req: CreateTaskRequest): Promise<{ pid: number }> {
    const id = req.id;
    if (!id || id.includes("/")) throw invalidArgument(`invalid container id "${id}"`);
    if (!req.bundle.startsWith("/")) {
      throw invalidArgument(
        `bundle of container "${id}" must be an absolute path: "${req.bundle}"`,
      );
    }
    if (req.checkpoint) throw notImplemented("restoring a checkpoint is not supported by berth");
    if (this.#containers.has(id)) throw alreadyExists(`container "${id}"`);
    checkStdio(req, `container "${id}"`);
    const options = decodeOptions(req.options);
    const runc = runcFor(options, this.#opts.stateDir, this.#opts.namespace, this.#log);
    const stdio: StdioPaths = {
      stdin: req.stdin,
      stdout: req.stdout,
      stderr: req.stderr,
      terminal: req.terminal,
    };
    const init = new ShimProcess(id, "", stdio);
    const c = new Container(id, req.bundle, runc, init, options);
    // Reserve the id before the first await: a second Create must see it.
    this.#containers.set(id, c);
    const log = this.#log.with({ id });
    try {
      // Small files in the bundle (tmpfs as installed) are written
      // synchronously: cheaper than a trip through Deno's blocking pool, and
      // every container start waits for them.
      Deno.writeTextFileSync(`${req.bundle}/options.json`, JSON.stringify(options));
      c.killAllOnExit = sharesPidNamespace(req.bundle);
      if (req.rootfs.length > 0) {
        const { mountAll } = await import("../../mount/mount.ts");
        Deno.mkdirSync(`${req.bundle}/rootfs`, { recursive: true });
        await mountAll(
          req.rootfs.map((m) => ({ type: m.type, source: m.source, options: m.options })),
          `${req.bundle}/rootfs`,
        );
        c.mounted = true;
      }
      const pidFile = `${req.bundle}/init.pid`;
      await this.#spawn(init, (stdio) =>
        runc.create(id, {
          bundle: req.bundle,
          pidFile,
          ...stdio,
          ...(stdio.consoleSocket ? { consoleSocket: stdio.consoleSocket } : {}),
          noPivot: options.noPivotRoot ?? false,
          noNewKeyring: options.noNewKeyring ?? false,
        }), pidFile);
      Deno.writeTextFileSync(`${req.bundle}/shim.pid`, String(Deno.pid));
    } catch (err) {
      this.#containers.delete(id);
      await runc.delete(id, true).catch(() => {});
      this.#forget(init);
      if (c.mounted) await unmountRootfs(req.bundle).catch(() => {});
      log.debug("create failed", { error: err });
      throw err;
    }
    this.#watch(c, init);
    this.#watchOom(c).catch((err) => log.warn("watching for OOM kills failed", { error: err }));
    this.#sweepOrphans();
    log.debug("created", { pid: init.pid, binary: runc.binary });
    this.#publish("/tasks/create", TaskCreateSchema, {
      containerId: id,
      bundle: req.bundle,
      rootfs: req.rootfs,
      io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      checkpoint: req.checkpoint,
      pid: init.pid,
    });
    return { pid: init.pid };
  }

  async start(req: { id: string; execId: string }): Promise<{ pid: number }> {
    const c = this.#container(req.id);
    return await c.locked(async () => {
      const p = this.#process(c, req.execId);
      p.check("start");
      let started!: () => void;
      p.starting = new Promise((r) => started = r);
      try {
        return await this.#start(c, p);
      } finally {
        started();
      }
    });
  }

  async #start(c: Container, p: ShimProcess): Promise<{ pid: number }> {
    if (p === c.init) {
      await c.runc.start(c.id);
      p.to("running");
      this.#publish("/tasks/start", TaskStartSchema, { containerId: c.id, pid: p.pid });
      return { pid: p.pid };
    }
    if (c.init.state !== "running") {
      throw failedPrecondition(
        `cannot start exec "${p.execId}": container "${c.id}" is ${c.init.state}`,
      );
    }
    const processFile = await this.#writeTemp(c.bundle, "exec", JSON.stringify(p.spec));
    const pidFile = `${processFile}.pid`;
    try {
      await this.#spawn(p, (stdio) =>
        c.runc.exec(c.id, {
          processFile,
          pidFile,
          ...stdio,
          ...(stdio.consoleSocket ? { consoleSocket: stdio.consoleSocket } : {}),
        }), pidFile);
    } catch (err) {
      // Made but not attached (e.g. its terminal never came): end it rather than leave it unowned.
      if (p.pid > 0) {
        try {
          kill(p.pid, 9);
        } catch { /* already gone */ }
        this.#forget(p);
        p.pid = 0;
      }
      throw err;
    } finally {
      await Deno.remove(processFile).catch(() => {});
      await Deno.remove(pidFile).catch(() => {});
    }
    p.to("running");
    this.#watch(c, p);
    this.#publish("/tasks/exec-started", TaskExecStartedSchema, {
      containerId: c.id,
      execId: p.execId,
      pid: p.pid,
    });
    return { pid: p.pid };
  }

  async delete(
    req: { id: string; execId: string },
  ): Promise<{ pid: number; exitStatus: number; exitedAt?: Timestamp }> {
    const c = this.#container(req.id);
    return await c.locked(async () => {
      const p = this.#process(c, req.execId);
      p.check("delete");
      if (p !== c.init) {
        p.to("deleted");
        c.execs.delete(p.execId);
        p.io?.close();
        p.pty?.close();
        return { pid: p.pid, exitStatus: p.exit?.status ?? 0, exitedAt: ts(p.exit?.at) };
      }
      await c.runc.delete(c.id, false);
      if (p.state === "created") {
        // runc delete ended the waiting init: give its exit a moment to be collected.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([p.exited, new Promise((r) => timer = setTimeout(r, DRAIN_MS))]);
        clearTimeout(timer);
      }
      if (c.mounted) await unmountRootfs(c.bundle);
      c.mounted = false;
      p.to("deleted");
      for (const proc of [p, ...c.execs.values()]) {
        proc.io?.close();
        proc.pty?.close();
      }
      this.#containers.delete(c.id);
      c.oom?.close();
      this.#sweepOrphans();
      const exitStatus = p.exit?.status ?? 0;
      const exitedAt = ts(p.exit?.at ?? new Date());
      this.#publish("/tasks/delete", TaskDeleteSchema, {
        containerId: c.id,
        id: c.id,
        pid: p.pid,
        exitStatus,
        exitedAt,
      });
      return { pid: p.pid, exitStatus, exitedAt };
    });
  }

  async pids(req: { id: string }) {
    const c = this.#container(req.id);
    const pids = await c.runc.ps(c.id);
    const byPid = new Map([...c.execs.values()].map((e) => [e.pid, e.execId]));
    return {
      processes: pids.map((pid) => {
        const execId = byPid.get(pid);
        return {
          pid,
          info: execId
            ? {
              typeUrl: ProcessDetailsSchema.typeName,
              value: toBinary(ProcessDetailsSchema, create(ProcessDetailsSchema, { execId })),
            }
            : undefined,
        };
      }),
    };
  }

  async pause(req: { id: string }) {
    const c = this.#container(req.id);
    return await c.locked(async () => {
      c.init.check("pause");
      await c.runc.pause(c.id);
      c.init.to("paused");
      this.#publish("/tasks/paused", TaskPausedSchema, { containerId: c.id });
      return {};
    });
  }

  async resume(req: { id: string }) {
    const c = this.#container(req.id);
    return await c.locked(async () => {
      c.init.check("resume");
      await c.runc.resume(c.id);
      c.init.to("running");
      this.#publish("/tasks/resumed", TaskResumedSchema, { containerId: c.id });
      return {};
    });
  }

  async kill(req: { id: string; execId: string; signal: number; all: boolean }) {
    const c = this.#container(req.id);
    const p = this.#process(c, req.execId);
    p.check("kill");
    if (p.state === "stopped") throw notFound(`process "${p.id}" already finished`);
    if (p === c.init) {
      await c.runc.kill(c.id, req.signal, req.all);
      return {};
    }
    if (p.pid === 0) throw failedPrecondition(`cannot kill exec "${p.execId}": it is not started`);
    if (!kill(p.pid, req.signal)) throw notFound(`process "${p.id}" already finished`);
    return {};
  }

  exec(req: ExecProcessRequest) {
    const c = this.#container(req.id);
    if (!req.execId) throw invalidArgument(`exec id is required for container "${c.id}"`);
    if (c.execs.has(req.execId)) throw alreadyExists(`id ${req.execId}`);
    c.init.check("exec");
    if (!req.spec?.value.length) {
      throw invalidArgument(`exec "${req.execId}": a process spec is required`);
    }
    let spec: unknown;
    try {
      spec = JSON.parse(new TextDecoder().decode(req.spec.value));
    } catch (err) {
      throw invalidArgument(`exec "${req.execId}": process spec is not valid JSON`, {
        cause: err,
      });
    }
    checkStdio(req, `exec "${req.execId}"`);
    const p = new ShimProcess(c.id, req.execId, {
      stdin: req.stdin,
      stdout: req.stdout,
      stderr: req.stderr,
      terminal: req.terminal,
    });
    p.spec = spec;
    c.execs.set(req.execId, p);
    this.#publish("/tasks/exec-added", TaskExecAddedSchema, {
      containerId: c.id,
      execId: req.execId,
    });
    return {};
  }

  resizePty(req: { id: string; execId: string; width: number; height: number }) {
    const p = this.#process(this.#container(req.id), req.execId);
    if (!p.pty) throw failedPrecondition(`process "${p.id}" has no terminal`);
    // After Delete the terminal is closed; a late resize changes nothing.
    if (p.state === "deleted") return {};
    p.pty.resize({ width: req.width, height: req.height });
    return {};
  }

  closeIO(req: { id: string; execId: string; stdin: boolean }) {
    const p = this.#process(this.#container(req.id), req.execId);
    if (req.stdin) p.io?.closeStdin();
    return {};
  }

  async update(req: { id: string; resources?: Any | undefined }) {
    const c = this.#container(req.id);
    return await c.locked(async () => {
      c.init.check("update");
      if (!req.resources?.value.length) {
        throw invalidArgument(`update of container "${c.id}": resources are required`);
      }
      const file = await this.#writeTemp(
        c.bundle,
        "resources",
        new TextDecoder().decode(req.resources.value),
      );
      try {
        await c.runc.update(c.id, file);
      } finally {
        await Deno.remove(file).catch(() => {});
      }
      return {};
    });
  }

  async wait(req: { id: string; execId: string }, signal?: AbortSignal) {
    const p = this.#process(this.#container(req.id), req.execId);
    const exit = signal
      ? await Promise.race([
        p.exited,
        new Promise<never>((_, rej) => {
          if (signal.aborted) rej(signal.reason);
          signal.addEventListener("abort", () => rej(signal.reason), { once: true });
        }),
      ])
      : await p.exited;
    return { exitStatus: exit.status, exitedAt: timestampFromDate(exit.at) };
  }

  state(req: { id: string; execId: string }): MessageInitShape<typeof StateResponseSchema> {
    const c = this.#container(req.id);
    const p = this.#process(c, req.execId);
    return {
      id: p.id,
      bundle: c.bundle,
      pid: p.pid,
      status: STATUS[p.state],
      stdin: p.stdio.stdin,
      stdout: p.stdio.stdout,
      stderr: p.stdio.stderr,
      terminal: p.stdio.terminal,
      exitStatus: p.exit?.status ?? 0,
      exitedAt: ts(p.exit?.at),
      execId: p.execId,
    };
  }

  /** One stats sample of the container's cgroup, as cgroups v1 Metrics. */
  async stats(req: { id: string }): Promise<{ stats: Any }> {
    const c = this.#container(req.id);
    if (c.init.state === "stopped" || c.init.state === "deleted") {
      throw failedPrecondition(`cannot get stats of ${c.init.state} container "${c.id}"`);
    }
    const ev = await c.runc.stats(c.id);
    const { encodeMetricsV1, METRICS_V1_TYPE } = await import("./stats.ts");
    const data = (ev.data ?? {}) as Record<string, unknown>;
    return { stats: create(AnySchema, { typeUrl: METRICS_V1_TYPE, value: encodeMetricsV1(data) }) };
  }

  connect(req: { id: string }) {
    const c = this.#containers.get(req.id);
    return { shimPid: Deno.pid, taskPid: c?.init.pid ?? 0, version: "" };
  }

  /** How many containers this shim serves now. */
  get containerCount(): number {
    return this.#containers.size;
  }

  shutdown() {
    if (this.#containers.size === 0) this.#opts.onShutdown();
    return {};
  }

  /** The ttrpc implementation of containerd.task.v2.Task. */
  handlers(): TtrpcServiceImpl<typeof Task.method> {
    return {
      state: (req) => this.state(req),
      create: (req) => this.create(req),
      start: (req) => this.start(req),
      delete: (req) => this.delete(req),
      pids: (req) => this.pids(req),
      pause: (req) => this.pause(req),
      resume: (req) => this.resume(req),
      checkpoint: () => {
        throw notImplemented("checkpoint is not supported by berth's shim (no CRIU integration)");
      },
      kill: (req) => this.kill(req),
      exec: (req) => this.exec(req),
      resizePty: (req) => this.resizePty(req),
      closeIO: (req) => this.closeIO(req),
      update: (req) => this.update(req),
      wait: (req, ctx) => this.wait(req, ctx.signal),
      stats: (req) => this.stats(req),
      connect: (req) => this.connect(req),
      shutdown: () => this.shutdown(),
    };
  }
}

/** Refuses IO addresses the shim cannot serve, before anything is created. */
function checkStdio(req: { stdin: string; stdout: string; stderr: string }, what: string): void {
  if (req.stdin.includes("://")) {
    throw invalidArgument(`${what}: unsupported stdin URI "${req.stdin}": use a FIFO path`);
  }
  for (const uri of [req.stdout, req.stderr]) {
    if (uri.includes("://") && !uri.startsWith("file://")) {
      throw invalidArgument(
        `${what}: unsupported IO URI "${uri}": use a FIFO path or file:///path`,
      );
    }
  }
}

/** Decodes CreateTaskRequest.options (containerd's runc Options) into bundle options. */
export function decodeOptions(any: Any | undefined): BundleOptions {
  if (!any || !any.typeUrl) return {};
  const name = any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1);
  if (name !== OptionsSchema.typeName) {
    throw invalidArgument(
      `unsupported runtime options type "${any.typeUrl}": want ${OptionsSchema.typeName}`,
    );
  }
  let o: RuncOptionsMessage;
  try {
    o = fromBinary(OptionsSchema, any.value);
  } catch (err) {
    throw invalidArgument(`runtime options do not decode as ${OptionsSchema.typeName}`, {
      cause: err,
    });
  }
  const out: BundleOptions = {};
  if (o.binaryName) out.binaryName = o.binaryName;
  if (o.root) out.root = o.root;
  if (o.systemdCgroup) out.systemdCgroup = true;
  if (o.noPivotRoot) out.noPivotRoot = true;
  if (o.noNewKeyring) out.noNewKeyring = true;
  return out;
}

/**
 * Whether the bundle's container shares a pid namespace (none of its own, or
 * a path to another's): then its processes outlive its init and the shim
 * must kill them (containerd's ShouldKillAllOnExit).
 */
export function sharesPidNamespace(bundle: string): boolean {
  try {
    const spec = JSON.parse(Deno.readTextFileSync(`${bundle}/config.json`)) as {
      linux?: { namespaces?: { type: string; path?: string }[] };
    };
    return !(spec.linux?.namespaces ?? []).some((n) => n.type === "pid" && !n.path);
  } catch {
    return true;
  }
}
