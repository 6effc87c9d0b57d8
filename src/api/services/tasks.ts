/**
 * containerd.services.tasks.v1.Tasks: a thin adapter over the task manager
 * (src/runtime/manager.ts), which relays each call to the task's shim.
 * A task's id is its container's id; exec processes are named by exec_id.
 */
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Tasks } from "../../gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Task } from "../../gen/containerd/task/v2/shim_pb.ts";
import type { StateResponse } from "../../gen/containerd/task/v2/shim_pb.ts";
import type { Process } from "../../gen/containerd/types/task/task_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ProcessSchema } from "../../gen/containerd/types/task/task_pb.ts";
import type { MetricSchema } from "../../gen/containerd/types/metrics_pb.ts";
import { invalidArgument, isKind, notImplemented } from "../../core/errdefs.ts";
import { adaptObject, parseFilters } from "../../core/filters.ts";
import type { ShimTask } from "../../runtime/manager.ts";
import type { Plugin } from "../plugins.ts";

function processOf(task: ShimTask, st: StateResponse): MessageInitShape<typeof ProcessSchema> {
  return {
    containerId: task.id,
    id: st.execId || task.id,
    pid: st.pid,
    status: st.status,
    stdin: st.stdin,
    stdout: st.stdout,
    stderr: st.stderr,
    terminal: st.terminal,
    exitStatus: st.exitStatus,
    exitedAt: st.exitedAt,
  };
}

function need(id: string, what = "container id"): string {
  if (!id) throw invalidArgument(`${what} must be given`);
  return id;
}

/** The shim v2 runtime (the task manager is built by the daemon; listed for introspection). */
export const runtimePlugin: Plugin = {
  type: "io.containerd.runtime.v2",
  id: "task",
  register() {},
};

export const tasksPlugin: Plugin = {
  type: "io.containerd.grpc.v1",
  id: "tasks",
  requires: ["io.containerd.runtime.v2", "io.containerd.metadata.v1"],
  register({ daemon, server }) {
    const tasks = daemon.tasks;
    const task = (ns: string, id: string) => tasks.get(ns, need(id));
    server.add(Tasks, {
      async create(req, ctx) {
        const ns = ctx.namespace();
        const id = need(req.containerId);
        if (req.checkpoint) {
          throw notImplemented(
            `restore of task "${id}": berth does not support checkpoint/restore`,
          );
        }
        const { pid } = await tasks.create(ns, id, {
          rootfs: req.rootfs,
          stdin: req.stdin,
          stdout: req.stdout,
          stderr: req.stderr,
          terminal: req.terminal,
          options: req.options,
          runtimePath: req.runtimePath,
        });
        return { containerId: id, pid };
      },
      async start(req, ctx) {
        const t = task(ctx.namespace(), req.containerId);
        const r = await t.conn.client.call(Task, "start", { id: t.id, execId: req.execId });
        return { pid: r.pid };
      },
      async delete(req, ctx) {
        const ns = ctx.namespace();
        const id = need(req.containerId);
        const exit = await tasks.delete(ns, id);
        return { id, pid: exit.pid, exitStatus: exit.exitStatus, exitedAt: exit.exitedAt };
      },
      async deleteProcess(req, ctx) {
        const exit = await tasks.deleteProcess(ctx.namespace(), need(req.containerId), req.execId);
        return {
          id: req.execId,
          pid: exit.pid,
          exitStatus: exit.exitStatus,
          exitedAt: exit.exitedAt,
        };
      },
      async get(req, ctx) {
        const t = task(ctx.namespace(), req.containerId);
        const st = await t.state(req.execId, ctx.signal);
        return { process: processOf(t, st) };
      },
      async list(req, ctx) {
        const ns = ctx.namespace();
        const filter = parseFilters(req.filter ? [req.filter] : []);
        const out: MessageInitShape<typeof ProcessSchema>[] = [];
        const states = await Promise.all(
          tasks.list(ns).map(async (t) => {
            try {
              return [t, await t.state("", ctx.signal)] as const;
            } catch (err) {
              // As containerd: a shim that cannot answer is left out, not fatal.
              daemon.log.warn("cannot get task state", { namespace: ns, id: t.id, error: err });
              return undefined;
            }
          }),
        );
        for (const s of states) {
          if (!s) continue;
          const p = processOf(s[0], s[1]);
          if (filter.match(adaptObject({ id: p.id, pid: p.pid, status: p.status }))) out.push(p);
        }
        return { tasks: out as Process[] };
      },
      async kill(req, ctx) {
        const t = task(ctx.namespace(), req.containerId);
        await t.conn.client.call(Task, "kill", {
          id: t.id,
          execId: req.execId,
          signal: req.signal,
          all: req.all,
        });
        return {};
      },
      async exec(req, ctx) {
        const t = task(ctx.namespace(), req.containerId);
        if (!req.execId) throw invalidArgument("exec id must be given");
        if (!req.spec) throw invalidArgument(`exec "${req.execId}": process spec must be given`);
        await t.conn.client.call(Task, "exec", {
          id: t.id,
          execId: req.execId,
          terminal: req.terminal,
          stdin: req.stdin,
          stdout: req.stdout,
          stderr: req.stderr,
          spec: req.spec,
        });
        return {};
      },
      async resizePty(req, ctx) {
        const t = task(ctx.namespace(), req.containerId);
        await t.conn.client.call(Task, "resizePty", {
          id: t.id,
          execId: req.execId,
          width: req.width,
          height: req.height,
        });
        return {};
      },
      async closeIO(req, ctx) {
        const t = task(ctx.namespace(), req.containerId);
        await t.conn.client.call(Task, "closeIO", {
          id: t.id,
          execId: req.execId,
          stdin: req.stdin,
        });
        return {};
      },
      async pause(req, ctx) {
        const t = task(ctx.namespace(), req.containerId);
        await t.conn.client.call(Task, "pause", { id: t.id });
        return {};
      },
      async resume(req, ctx) {
        const t = task(ctx.namespace(), req.containerId);
        await t.conn.client.call(Task, "resume", { id: t.id });
        return {};
      },
      async listPids(req, ctx) {
        const t = task(ctx.namespace(), req.containerId);
        const r = await t.conn.client.call(Task, "pids", { id: t.id });
        return { processes: r.processes };
      },
      checkpoint(req, ctx) {
        return Promise.resolve(tasks.checkpoint(ctx.namespace(), need(req.containerId)));
      },
      async update(req, ctx) {
        const t = task(ctx.namespace(), req.containerId);
        await t.conn.client.call(Task, "update", {
          id: t.id,
          resources: req.resources,
          annotations: req.annotations,
        });
        return {};
      },
      async metrics(req, ctx) {
        const ns = ctx.namespace();
        const filter = parseFilters(req.filters);
        const chosen = tasks.list(ns).filter((t) =>
          filter.match(adaptObject({ id: t.id, namespace: ns }))
        );
        const metrics: MessageInitShape<typeof MetricSchema>[] = [];
        for (const t of chosen) {
          try {
            const r = await t.conn.client.call(Task, "stats", { id: t.id }, { signal: ctx.signal });
            metrics.push({ timestamp: timestampNow(), id: t.id, data: r.stats });
          } catch (err) {
            // A shim without Stats, or a task already gone, is left out as in containerd.
            if (!isKind(err, "not_implemented") && !isKind(err, "not_found")) throw err;
          }
        }
        return { metrics };
      },
      async wait(req, ctx) {
        const t = task(ctx.namespace(), req.containerId);
        const r = await t.conn.client.call(Task, "wait", { id: t.id, execId: req.execId }, {
          signal: ctx.signal,
        });
        return { exitStatus: r.exitStatus, exitedAt: r.exitedAt };
      },
    });
  },
};
