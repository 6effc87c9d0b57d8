/**
 * The task manager: the daemon's shim v2 runtime. It starts a shim per task
 * (binary protocol, in the task's bundle), talks to it over ttrpc, notices
 * when it dies, and on daemon start reloads every shim left running.
 *
 * Semantics follow containerd 1.6's runtime/v2 TaskManager:
 * - Create: bundle → `shim start` → connect → Task.Create; on failure the
 *   shim is asked to delete and shut down and the bundle removed.
 * - Delete: refused while the task runs; else Task.Delete, Task.Shutdown,
 *   bundle removed; the shim itself publishes /tasks/delete.
 * - A shim whose connection drops while its task is known is cleaned up with
 *   `shim delete`, and the daemon publishes /tasks/exit and /tasks/delete for
 *   it (the shim cannot any more).
 * - Reload: for each bundle, in parallel, connect to its `address` and call
 *   Connect; a live shim is kept (its State shows exits that happened while
 *   the daemon was down); a dead one is cleaned up as above.
 */
import type { Any, Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Task } from "../gen/containerd/task/v2/shim_pb.ts";
import type { StateResponse } from "../gen/containerd/task/v2/shim_pb.ts";
import { Status } from "../gen/containerd/types/task/task_pb.ts";
import type { Mount } from "../gen/containerd/types/mount_pb.ts";
import { TaskDeleteSchema, TaskExitSchema } from "../gen/containerd/events/task_pb.ts";
import { OptionsSchema } from "../gen/containerd/runc/options/oci_pb.ts";
import type { Config } from "../config/config.ts";
import type { Logger } from "../util/log.ts";
import type { Exchange } from "../events/exchange.ts";
import { packAny } from "../events/exchange.ts";
import type { ContainerStore } from "../metadata/containers.ts";
import type { Snapshotter } from "../snapshots/snapshotter.ts";
import {
  alreadyExists,
  failedPrecondition,
  invalidArgument,
  isKind,
  notFound,
  notImplemented,
  wrap,
} from "../core/errdefs.ts";
import { Bundle } from "./bundle.ts";
import {
  BERTH_SHIM,
  resolveRuntime,
  type ShimCommand,
  shimCommandOf,
  ShimConnection,
  ShimConnectionPool,
  shimDelete,
  ShimLog,
  shimStart,
} from "./shim_client.ts";

/** How long a reload waits for a shim's Connect before calling it dead (containerd: 5s). */
const LOAD_TIMEOUT_MS = 5000;

/** The exit of a process as Delete reports it. */
export interface Exit {
  pid: number;
  exitStatus: number;
  exitedAt: Timestamp | undefined;
}

/** What Create needs besides the container record. */
export interface CreateTaskOptions {
  rootfs: Mount[];
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  /** Task options, overriding the container's runtime options. */
  options?: Any | undefined;
  /** An explicit shim binary (absolute path). */
  runtimePath?: string;
}

/** A task with a live shim. */
export class ShimTask {
  readonly namespace: string;
  readonly id: string;
  readonly bundle: Bundle;
  readonly shim: ShimCommand;
  readonly conn: ShimConnection;
  readonly shimLog: ShimLog | undefined;
  /** Set while Delete runs, so a dropped connection is not taken for a crash. */
  deleting = false;

  constructor(
    bundle: Bundle,
    shim: ShimCommand,
    conn: ShimConnection,
    shimLog: ShimLog | undefined,
  ) {
    this.namespace = bundle.namespace;
    this.id = bundle.id;
    this.bundle = bundle;
    this.shim = shim;
    this.conn = conn;
    this.shimLog = shimLog;
  }

  /** The state of the init process (no exec id) or of an exec process. */
  state(execId = "", signal?: AbortSignal): Promise<StateResponse> {
    return this.conn.client.call(Task, "state", { id: this.id, execId }, signal ? { signal } : {});
  }
}

/** The lower-case name of a status: `running`, `stopped`, … */
export function statusName(s: Status): string {
  return (Status[s] ?? "unknown").toLowerCase();
}

export interface TaskManagerOptions {
  config: Config;
  log: Logger;
  events: Exchange;
  containers: ContainerStore;
  snapshotters: ReadonlyMap<string, Snapshotter>;
}

export class TaskManager {
  #o: TaskManagerOptions;
  #log: Logger;
  #tasks = new Map<string, ShimTask>();
  #creating = new Set<string>();
  #closing = false;
  /** One connection per shim and namespace, shared by the tasks it serves. */
  #conns = new ShimConnectionPool();

  constructor(opts: TaskManagerOptions) {
    this.#o = opts;
    this.#log = opts.log.with({ module: "runtime" });
  }

  /** The daemon's ttrpc socket, where shims forward events. */
  get ttrpcAddress(): string {
    return `${this.#o.config.address}.ttrpc`;
  }

  #binaryOptions(bundle: Bundle, shim: ShimCommand) {
    return {
      shim,
      bundle,
      address: this.#o.config.address,
      ttrpcAddress: this.ttrpcAddress,
      debug: this.#o.log.enabled("debug"),
      log: this.#log,
    };
  }

  /** The task of container `id`; not found when it has none. */
  get(ns: string, id: string): ShimTask {
    const t = this.#tasks.get(`${ns}/${id}`);
    if (!t) throw notFound(`task "${id}"`);
    return t;
  }

  /** True when container `id` has a task (live shim), or one is being created. */
  has(ns: string, id: string): boolean {
    return this.#tasks.has(`${ns}/${id}`) || this.#creating.has(`${ns}/${id}`);
  }

  /** The tasks of namespace `ns`, by id. */
  list(ns: string): ShimTask[] {
    return [...this.#tasks.values()].filter((t) => t.namespace === ns).sort((a, b) =>
      a.id < b.id ? -1 : a.id > b.id ? 1 : 0
    );
  }

  /** Every task of every namespace. */
  all(): ShimTask[] {
    return [...this.#tasks.values()];
  }

  /** Creates the task of container `id` (its init process is created, not started). */
  async create(ns: string, id: string, opts: CreateTaskOptions): Promise<{ pid: number }> {
    const key = `${ns}/${id}`;
    if (this.has(ns, id)) throw alreadyExists(`task "${id}"`);
    this.#creating.add(key);
    try {
      return await this.#create(ns, id, opts);
    } finally {
      this.#creating.delete(key);
    }
  }

  async #create(ns: string, id: string, opts: CreateTaskOptions): Promise<{ pid: number }> {
    const container = this.#o.containers.get(ns, id);
    const spec = container.spec?.value;
    if (!spec || spec.length === 0) throw invalidArgument(`container "${id}" has no spec`);
    const runtime = container.runtime?.name ?? "";
    const shim = await resolveRuntime(runtime, this.#o.config.runtimes, opts.runtimePath);
    const rootfs = opts.rootfs.length > 0 ? opts.rootfs : await this.#snapshotMounts(ns, container);
    const options = opts.options ?? container.runtime?.options ?? this.#configuredOptions(runtime);
    const log = this.#log.with({ namespace: ns, id });

    let bundle: Bundle;
    try {
      const grouped = shim.binary === BERTH_SHIM && this.#o.config.shimGroup === "namespace"
        ? withShimGroup(spec, `berth-ns-${ns}`)
        : spec;
      bundle = Bundle.create(this.#o.config.state, ns, id, grouped);
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) {
        throw alreadyExists(`task "${id}": its bundle is still being cleaned up`);
      }
      throw err;
    }
    let shimLog: ShimLog | undefined;
    let conn: ShimConnection | undefined;
    try {
      bundle.writeShimBinaryPath(shim.binary);
      shimLog = await this.#openShimLog(bundle, shim, log);
      const address = await shimStart(this.#binaryOptions(bundle, shim), options);
      bundle.writeAddress(address);
      conn = await this.#conns.connect(address, ns);
      const { pid } = await conn.client.call(Task, "create", {
        id,
        bundle: bundle.path,
        rootfs,
        terminal: opts.terminal,
        stdin: opts.stdin,
        stdout: opts.stdout,
        stderr: opts.stderr,
        options,
      });
      const task = new ShimTask(bundle, shim, conn, shimLog);
      this.#tasks.set(`${ns}/${id}`, task);
      this.#watch(task);
      log.info("task created", { pid, shim: shim.binary, address });
      return { pid };
    } catch (err) {
      log.warn("task create failed; cleaning up", { error: err });
      if (conn) {
        // As containerd: the shim deletes what it created and exits if idle.
        await conn.client.call(Task, "delete", { id }, { timeout: 10_000 }).catch(() => {});
        await conn.shutdown(id).catch(() => {});
        conn.close();
      }
      shimLog?.close();
      await bundle.delete(log).catch((e) => log.warn("cannot remove bundle", { error: e }));
      throw wrap(err, `Cannot create task "${id}"`);
    }
  }

  /** The rootfs mounts of the container's snapshot, when the request gave none. */
  async #snapshotMounts(
    ns: string,
    c: { snapshotter: string; snapshotKey: string },
  ): Promise<Mount[]> {
    if (!c.snapshotKey) return [];
    const name = c.snapshotter || this.#o.config.snapshotter;
    const sn = this.#o.snapshotters.get(name);
    if (!sn) throw invalidArgument(`snapshotter "${name}" of the container is not available`);
    const mounts = await sn.mounts({ namespace: ns }, c.snapshotKey);
    return mounts.map((m) => ({
      $typeName: "containerd.types.Mount" as const,
      type: m.type,
      source: m.source,
      target: "",
      options: [...m.options],
    }));
  }

  /** The config's runc options for `runtime`, packed, or undefined. */
  #configuredOptions(runtime: string): Any | undefined {
    const o = this.#o.config.runtimes[runtime]?.options;
    if (!o) return undefined;
    return packAny(OptionsSchema, {
      binaryName: o.binaryName ?? "",
      root: o.root ?? "",
      systemdCgroup: o.systemdCgroup ?? false,
    });
  }

  /** Cleans up when a shim's connection ends while its task is still known. */
  #watch(task: ShimTask): void {
    task.conn.done.then(() => {
      if (this.#closing || task.deleting) return;
      if (this.#tasks.get(`${task.namespace}/${task.id}`) !== task) return;
      this.#log.warn("shim disconnected", { namespace: task.namespace, id: task.id });
      this.#tasks.delete(`${task.namespace}/${task.id}`);
      this.#cleanupDeadShim(task.bundle, task.shim, task.shimLog).catch((err) =>
        this.#log.error("cleanup after dead shim failed", { id: task.id, error: err })
      );
    });
  }

  /**
   * `shim delete` for a shim that is gone, then the exit and delete events
   * it can no longer publish, then the bundle.
   */
  async #cleanupDeadShim(bundle: Bundle, shim: ShimCommand, shimLog?: ShimLog): Promise<void> {
    const { namespace: ns, id } = bundle;
    let exit: Exit = { pid: 0, exitStatus: 255, exitedAt: timestampNow() };
    try {
      const r = await shimDelete(this.#binaryOptions(bundle, shim));
      exit = { pid: r.pid, exitStatus: r.exitStatus, exitedAt: r.exitedAt ?? timestampNow() };
    } catch (err) {
      this.#log.warn("shim delete failed", { namespace: ns, id, error: err });
    }
    // As containerd's binary delete: the bundle goes before the events say so.
    shimLog?.close();
    await bundle.delete(this.#log).catch((err) =>
      this.#log.error("cannot remove bundle", { path: bundle.path, error: err })
    );
    const ev = this.#o.events;
    ev.publish(ns, "/tasks/exit", TaskExitSchema, {
      containerId: id,
      id,
      pid: exit.pid,
      exitStatus: exit.exitStatus,
      exitedAt: exit.exitedAt,
    });
    ev.publish(ns, "/tasks/delete", TaskDeleteSchema, {
      containerId: id,
      pid: exit.pid,
      exitStatus: exit.exitStatus,
      exitedAt: exit.exitedAt,
    });
    this.#log.info("cleaned up after dead shim", { namespace: ns, id, exit: exit.exitStatus });
  }

  /**
   * Deletes a stopped (or never started) task: the shim deletes the
   * container, is shut down, and the bundle goes. Returns the exit status.
   */
  async delete(ns: string, id: string): Promise<Exit> {
    const task = this.get(ns, id);
    if (task.deleting) throw failedPrecondition(`task "${id}" is being deleted`);
    const st = await task.state();
    if (
      st.status === Status.RUNNING || st.status === Status.PAUSED ||
      st.status === Status.PAUSING
    ) {
      throw failedPrecondition(`cannot delete task "${id}": it is ${statusName(st.status)}`);
    }
    task.deleting = true;
    let exit: Exit;
    try {
      const r = await task.conn.client.call(Task, "delete", { id });
      exit = { pid: r.pid, exitStatus: r.exitStatus, exitedAt: r.exitedAt };
    } catch (err) {
      if (!isKind(err, "not_found")) {
        task.deleting = false;
        throw wrap(err, `Cannot delete task "${id}"`);
      }
      exit = { pid: st.pid, exitStatus: st.exitStatus, exitedAt: st.exitedAt };
    }
    this.#tasks.delete(`${ns}/${id}`);
    // The shim exits once it serves no container; a closed connection is fine.
    await task.conn.shutdown(id).catch(() => {});
    task.conn.close();
    task.shimLog?.close();
    await task.bundle.delete(this.#log);
    this.#log.info("task deleted", { namespace: ns, id, exit: exit.exitStatus });
    return exit;
  }

  /** Deletes a stopped exec process of a task. */
  async deleteProcess(ns: string, id: string, execId: string): Promise<Exit> {
    if (!execId) throw invalidArgument("exec id must be given to delete a process");
    const task = this.get(ns, id);
    const r = await task.conn.client.call(Task, "delete", { id, execId });
    return { pid: r.pid, exitStatus: r.exitStatus, exitedAt: r.exitedAt };
  }

  /** Checkpointing needs CRIU, which berth does not drive. */
  checkpoint(ns: string, id: string): never {
    this.get(ns, id);
    throw notImplemented(`checkpoint of task "${id}": berth does not support checkpoint/restore`);
  }

  /**
   * Reloads every shim found under `<state>/tasks`, in parallel (called once
   * at daemon start, before serving).
   */
  async reload(): Promise<void> {
    const bundles = await Bundle.list(this.#o.config.state);
    const t0 = Date.now();
    await Promise.all(
      bundles.map((b) =>
        this.#reloadOne(b).catch((err) =>
          this.#log.error("cannot reload task", { namespace: b.namespace, id: b.id, error: err })
        )
      ),
    );
    if (bundles.length > 0) {
      this.#log.info("tasks reloaded", {
        found: bundles.length,
        alive: this.#tasks.size,
        ms: Date.now() - t0,
      });
    }
  }

  async #reloadOne(bundle: Bundle): Promise<void> {
    const { namespace: ns, id } = bundle;
    const log = this.#log.with({ namespace: ns, id });
    let binary = await bundle.shimBinaryPath();
    if (!binary) {
      // Older or partial bundle: fall back on the container's runtime.
      let shim: ShimCommand;
      try {
        const c = this.#o.containers.get(ns, id);
        shim = await resolveRuntime(c.runtime?.name ?? "", this.#o.config.runtimes);
      } catch (err) {
        log.warn("bundle without a usable runtime; removing it", { error: err });
        await bundle.delete(log);
        return;
      }
      binary = shim.binary;
    }
    const shim = shimCommandOf(binary);
    const shimLog = await this.#openShimLog(bundle, shim, log);
    const address = await bundle.address();
    let conn: ShimConnection | undefined;
    try {
      if (!address) throw new Error("the bundle has no shim address");
      conn = await this.#conns.connect(address, ns);
      const c = await conn.client.call(Task, "connect", { id }, { timeout: LOAD_TIMEOUT_MS });
      const task = new ShimTask(bundle, shim, conn, shimLog);
      this.#tasks.set(`${ns}/${id}`, task);
      this.#watch(task);
      log.info("task reloaded", { shimPid: c.shimPid, taskPid: c.taskPid });
    } catch (err) {
      conn?.close();
      log.warn("shim is gone; cleaning up", { error: err });
      await this.#cleanupDeadShim(bundle, shim, shimLog);
    }
  }

  /**
   * The daemon's reader of the shim's log FIFO. berth's own shim logs to a
   * file beside its socket and never opens the FIFO, so its tasks get none.
   */
  async #openShimLog(bundle: Bundle, shim: ShimCommand, log: Logger) {
    if (shim.binary === BERTH_SHIM) return undefined;
    return await ShimLog.open(bundle.logFifo, log);
  }

  /** Lets go of every shim (they keep running) at daemon shutdown. */
  close(): void {
    this.#closing = true;
    for (const t of this.#tasks.values()) {
      t.conn.close();
      t.shimLog?.close();
    }
    this.#tasks.clear();
    this.#conns.close();
  }
}

const GROUP_ANNOTATION = "io.containerd.runc.v2.group";

/**
 * Puts a container into a shim group unless its spec names one: berth's shim
 * then serves all of a namespace's containers from one process, which is what
 * keeps the memory per container low (a Deno process is far larger than a Go
 * shim). The annotation is the one containerd's runc shim groups pods by.
 */
export function withShimGroup(spec: Uint8Array, group: string): Uint8Array {
  let doc: { annotations?: Record<string, string> };
  try {
    doc = JSON.parse(new TextDecoder().decode(spec));
  } catch {
    return spec; // not JSON: the shim reports it
  }
  if (doc.annotations?.[GROUP_ANNOTATION]) return spec;
  doc.annotations = { ...doc.annotations, [GROUP_ANNOTATION]: group };
  return new TextEncoder().encode(JSON.stringify(doc));
}
