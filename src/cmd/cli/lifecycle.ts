/**
 * The container lifecycle verbs: ps, stop, kill, start, restart, rm, pause,
 * unpause, wait, inspect, top and stats. Each is a thin sequence of
 * Containers and Tasks calls, with containerd's semantics.
 */
import { Containers } from "../../gen/containerd/services/containers/v1/containers_pb.ts";
import type { Container } from "../../gen/containerd/services/containers/v1/containers_pb.ts";
import { Tasks } from "../../gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Status } from "../../gen/containerd/types/task/task_pb.ts";
import type { Process } from "../../gen/containerd/types/task/task_pb.ts";
import { failedPrecondition, isKind } from "../../core/errdefs.ts";
import { criLogUri } from "../../runtime/crilog.ts";
import { type Command, type Globals, parse, table, toJson, UsageError } from "./command.ts";
import {
  eachId,
  getContainer,
  getTask,
  ioDir,
  LABEL_STOP_SIGNAL,
  logPathOf,
  parseSeconds,
  removeContainer,
  specOf,
  statusName,
  waitExit,
} from "./container_util.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function ids(positionals: string[], verb: string, help: string): string[] {
  if (positionals.length === 0) {
    throw new UsageError(`${verb}: at least one container ID is required\n\n${help}`);
  }
  return positionals;
}

function isLive(p: Process | undefined): boolean {
  return p !== undefined && p.status !== Status.STOPPED && p.status !== Status.UNKNOWN;
}

async function signalNumber(sig: string): Promise<number> {
  const { signalNumber: num } = await import("../../sys/proc.ts");
  try {
    return num(sig);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function timestampText(t: { seconds: bigint; nanos: number } | undefined): string {
  if (!t || (t.seconds === 0n && t.nanos === 0)) return "";
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toISOString();
}

function commandOf(c: Container): string {
  const spec = specOf(c) as { process?: { args?: string[] } } | undefined;
  return (spec?.process?.args ?? []).join(" ");
}

// ---- ps ----------------------------------------------------------------

const PS_HELP = `Usage: berth ps [-a] [-q] [--json]

Lists containers with their task's state: running ones, or all with -a.
STATUS is the task's (running, paused, stopped with its exit code) or
"created" for a container without a task.

Options:
  -a, --all     show every container, not only the running ones
  -q, --quiet   print only the ids
      --json    print the list as JSON
`;

export const psCommand: Command = {
  name: "ps",
  summary: "List containers",
  help: PS_HELP,
  async run(g, args) {
    const { values } = parse(args, {
      all: { type: "boolean", short: "a" },
      quiet: { type: "boolean", short: "q" },
      json: { type: "boolean" },
    }, PS_HELP);
    const c = g.client();
    const [{ containers }, { tasks }] = await Promise.all([
      c.call(Containers, "list", { filters: [] }),
      c.call(Tasks, "list", { filter: "" }),
    ]);
    const byId = new Map(tasks.map((t) => [t.id, t]));
    const rows = containers
      .map((ct) => ({ c: ct, t: byId.get(ct.id) }))
      .filter((r) => values.all || isLive(r.t))
      .sort((a, b) =>
        Number((b.c.createdAt?.seconds ?? 0n) - (a.c.createdAt?.seconds ?? 0n)) ||
        (a.c.id < b.c.id ? -1 : 1)
      );
    if (values.quiet) {
      for (const r of rows) g.out(r.c.id);
      return 0;
    }
    const status = (t: Process | undefined) => {
      if (!t) return "created";
      if (t.status === Status.STOPPED) return `stopped (${t.exitStatus})`;
      return statusName(t.status);
    };
    if (values.json) {
      g.out(toJson(rows.map((r) => ({
        id: r.c.id,
        image: r.c.image,
        status: r.t ? statusName(r.t.status) : "created",
        pid: r.t?.pid ?? 0,
        exitStatus: r.t?.status === Status.STOPPED ? r.t.exitStatus : undefined,
        command: commandOf(r.c),
        createdAt: timestampText(r.c.createdAt),
        runtime: r.c.runtime?.name ?? "",
      }))));
      return 0;
    }
    g.out(table(
      ["CONTAINER", "IMAGE", "STATUS", "PID", "COMMAND"],
      rows.map((r) => [
        r.c.id,
        r.c.image || "-",
        status(r.t),
        r.t && isLive(r.t) ? String(r.t.pid) : "-",
        commandOf(r.c),
      ]),
    ));
    return 0;
  },
};

// ---- stop / kill -----------------------------------------------------------

const STOP_HELP = `Usage: berth stop [-t SECS] ID...

Stops containers: sends the image's stop signal (its StopSignal, kept in the
container's io.containerd.image.config.stop-signal label) or SIGTERM, waits
up to the grace period for the task to exit, then sends SIGKILL to all its
processes. A container that is not running is left as it is.

Options:
  -t, --time SECS   grace period before SIGKILL [10]
`;

/** Stops container `id` as described in STOP_HELP; resolves once its task exited. */
export async function stopContainer(g: Globals, id: string, grace: number): Promise<void> {
  const c = g.client();
  const container = await getContainer(g, id);
  const task = await getTask(g, id);
  if (!isLive(task)) return;
  const sig = await signalNumber(container.labels[LABEL_STOP_SIGNAL] || "SIGTERM");
  const kill = (signal: number, all: boolean) =>
    c.call(Tasks, "kill", { containerId: id, execId: "", signal, all }).catch((e) => {
      if (!isKind(e, "not_found")) throw e;
    });
  const exited = waitExit(g, id).then(() => true, () => true);
  await kill(sig, false);
  // A frozen process cannot act on the signal: let it run to do so.
  if (task!.status === Status.PAUSED || task!.status === Status.PAUSING) {
    await c.call(Tasks, "resume", { containerId: id }).catch(() => {});
  }
  const inTime = await Promise.race([exited, sleep(grace * 1000).then(() => false)]);
  if (inTime) return;
  await kill(9, true);
  await exited;
}

export const stopCommand: Command = {
  name: "stop",
  summary: "Stop running containers (stop signal, then SIGKILL)",
  help: STOP_HELP,
  async run(g, args) {
    const { values, positionals } = parse(
      args,
      { time: { type: "string", short: "t" } },
      STOP_HELP,
    );
    const grace = values.time !== undefined ? parseSeconds(values.time, "stop: -t") : 10;
    return await eachId(
      g,
      ids(positionals, "stop", STOP_HELP),
      (id) => stopContainer(g, id, grace),
    );
  },
};

const KILL_HELP = `Usage: berth kill [-s SIG] [--all] ID...

Sends a signal to the task of each container.

Options:
  -s, --signal SIG   signal name or number [SIGKILL]
      --all          send it to every process of the container, not only its init
`;

export const killCommand: Command = {
  name: "kill",
  summary: "Send a signal to containers",
  help: KILL_HELP,
  async run(g, args) {
    const { values, positionals } = parse(args, {
      signal: { type: "string", short: "s" },
      all: { type: "boolean" },
    }, KILL_HELP);
    const signal = await signalNumber(values.signal ?? "SIGKILL");
    return await eachId(g, ids(positionals, "kill", KILL_HELP), async (id) => {
      await g.client().call(Tasks, "kill", {
        containerId: id,
        execId: "",
        signal,
        all: values.all ?? false,
      });
    });
  },
};

// ---- start / restart -----------------------------------------------------------

const START_HELP = `Usage: berth start [-a] ID

Starts a container's task again (a new task with the same spec, root and log;
a stopped task is deleted first). With -a, shows its new output and exits
with its exit code.

Options:
  -a, --attach   stay attached to the container's output
`;

/** Creates and starts a new task for container `id`; returns where its log is and the start offset. */
async function startTask(g: Globals, id: string, attach: boolean): Promise<number> {
  const c = g.client();
  const container = await getContainer(g, id);
  const task = await getTask(g, id);
  if (isLive(task)) {
    throw failedPrecondition(
      `Cannot start container "${id}": its task is ${statusName(task!.status)}`,
    );
  }
  if (task) await c.call(Tasks, "delete", { containerId: id });
  const spec = specOf(container) as { process?: { terminal?: boolean } } | undefined;
  const tty = spec?.process?.terminal ?? false;
  const logPath = logPathOf(g, container);
  await Deno.mkdir(logPath.slice(0, logPath.lastIndexOf("/")), { recursive: true });
  await c.call(Tasks, "create", {
    containerId: id,
    rootfs: [],
    stdin: "",
    stdout: criLogUri(logPath, "stdout"),
    stderr: tty ? "" : criLogUri(logPath, "stderr"),
    terminal: tty,
    runtimePath: "",
  });
  if (!attach) {
    await c.call(Tasks, "start", { containerId: id, execId: "" });
    return 0;
  }
  const { attachSession } = await import("./run.ts");
  const offset = await Deno.stat(logPath).then((s) => s.size, () => 0);
  return await attachSession(g, {
    id,
    execId: "",
    logPath,
    logOffset: offset,
    tty,
    start: () => c.call(Tasks, "start", { containerId: id, execId: "" }),
  });
}

export const startCommand: Command = {
  name: "start",
  summary: "Start stopped containers",
  help: START_HELP,
  async run(g, args) {
    const { values, positionals } = parse(
      args,
      { attach: { type: "boolean", short: "a" } },
      START_HELP,
    );
    if (values.attach) {
      if (positionals.length !== 1) {
        throw new UsageError(`start: -a takes exactly one ID\n\n${START_HELP}`);
      }
      return await startTask(g, positionals[0]!, true);
    }
    return await eachId(g, ids(positionals, "start", START_HELP), async (id) => {
      await startTask(g, id, false);
    });
  },
};

const RESTART_HELP = `Usage: berth restart [-t SECS] ID...

Stops (as berth stop) and starts containers again.

Options:
  -t, --time SECS   grace period before SIGKILL [10]
`;

export const restartCommand: Command = {
  name: "restart",
  summary: "Restart containers",
  help: RESTART_HELP,
  async run(g, args) {
    const { values, positionals } = parse(
      args,
      { time: { type: "string", short: "t" } },
      RESTART_HELP,
    );
    const grace = values.time !== undefined ? parseSeconds(values.time, "restart: -t") : 10;
    return await eachId(g, ids(positionals, "restart", RESTART_HELP), async (id) => {
      await stopContainer(g, id, grace);
      await startTask(g, id, false);
    });
  },
};

// ---- rm -------------------------------------------------------------------------

const RM_HELP = `Usage: berth rm [-f] ID...

Removes containers: their (stopped) task, the container record, its
snapshot and its log. A running container is refused unless -f, which
kills it (SIGKILL) first.

Options:
  -f, --force   kill a running container first
`;

export const rmCommand: Command = {
  name: "rm",
  summary: "Remove containers",
  help: RM_HELP,
  async run(g, args) {
    const { values, positionals } = parse(
      args,
      { force: { type: "boolean", short: "f" } },
      RM_HELP,
    );
    return await eachId(
      g,
      ids(positionals, "rm", RM_HELP),
      (id) => removeContainer(g, id, { force: values.force ?? false }),
    );
  },
};

// ---- pause / unpause --------------------------------------------------------------

const PAUSE_HELP = `Usage: berth pause ID...

Freezes every process of the containers (cgroup freezer).
`;
const UNPAUSE_HELP = `Usage: berth unpause ID...

Thaws containers frozen by berth pause.
`;

export const pauseCommand: Command = {
  name: "pause",
  summary: "Pause containers",
  help: PAUSE_HELP,
  async run(g, args) {
    const { positionals } = parse(args, {}, PAUSE_HELP);
    return await eachId(g, ids(positionals, "pause", PAUSE_HELP), async (id) => {
      await g.client().call(Tasks, "pause", { containerId: id });
    });
  },
};

export const unpauseCommand: Command = {
  name: "unpause",
  summary: "Unpause containers",
  help: UNPAUSE_HELP,
  async run(g, args) {
    const { positionals } = parse(args, {}, UNPAUSE_HELP);
    return await eachId(g, ids(positionals, "unpause", UNPAUSE_HELP), async (id) => {
      await g.client().call(Tasks, "resume", { containerId: id });
    });
  },
};

// ---- wait ----------------------------------------------------------------------------

const WAIT_HELP = `Usage: berth wait ID...

Waits until each container's task exits and prints its exit code, one line
per container (at once for a task that already exited).
`;

export const waitCommand: Command = {
  name: "wait",
  summary: "Wait for containers to exit and print their exit codes",
  help: WAIT_HELP,
  async run(g, args) {
    const { positionals } = parse(args, {}, WAIT_HELP);
    return await eachId(g, ids(positionals, "wait", WAIT_HELP), async (id) => {
      g.out(String(await waitExit(g, id)));
    }, { print: false });
  },
};

// ---- inspect --------------------------------------------------------------------------

const INSPECT_HELP = `Usage: berth inspect ID...

Prints the containers as a JSON array: the container record (labels, image,
runtime, snapshot, spec) and its task's state (status, pid, exit code).
`;

export const inspectCommand: Command = {
  name: "inspect",
  summary: "Show containers and their tasks as JSON",
  help: INSPECT_HELP,
  async run(g, args) {
    const { positionals } = parse(args, {}, INSPECT_HELP);
    const out: unknown[] = [];
    const code = await eachId(g, ids(positionals, "inspect", INSPECT_HELP), async (id) => {
      const c = await getContainer(g, id);
      const t = await getTask(g, id);
      out.push({
        id: c.id,
        image: c.image,
        labels: c.labels,
        runtime: c.runtime?.name ?? "",
        snapshotter: c.snapshotter,
        snapshotKey: c.snapshotKey,
        createdAt: timestampText(c.createdAt),
        updatedAt: timestampText(c.updatedAt),
        logPath: logPathOf(g, c),
        ioDir: ioDir(g, c.id),
        task: t
          ? {
            status: statusName(t.status),
            pid: t.pid,
            exitStatus: t.status === Status.STOPPED ? t.exitStatus : undefined,
            exitedAt: t.status === Status.STOPPED ? timestampText(t.exitedAt) : undefined,
            terminal: t.terminal,
            stdin: t.stdin,
            stdout: t.stdout,
            stderr: t.stderr,
          }
          : null,
        spec: specOf(c) ?? null,
      });
    }, { print: false });
    g.out(toJson(out));
    return code;
  },
};

// ---- top ----------------------------------------------------------------------------

const TOP_HELP = `Usage: berth top ID

Lists the processes of a container's task (as seen from the host): PID,
USER (uid), PPID, TIME (CPU time) and CMD, read from /proc.
`;

const CLK_TCK = 100;

async function procRow(pid: number): Promise<string[]> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
  const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1] ?? "?";
  const ppid = /^PPid:\s+(\d+)/m.exec(status)?.[1] ?? "?";
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
  // Fields after the command (which is in parentheses and may hold spaces).
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(rest[11] ?? 0) + Number(rest[12] ?? 0);
  const secs = Math.floor(ticks / CLK_TCK);
  const time = `${String(Math.floor(secs / 3600)).padStart(2, "0")}:${
    String(Math.floor(secs / 60) % 60).padStart(2, "0")
  }:${String(secs % 60).padStart(2, "0")}`;
  const raw = await Deno.readFile(`/proc/${pid}/cmdline`).catch(() => new Uint8Array());
  let cmd = new TextDecoder().decode(raw).replace(/\0+$/, "").replaceAll("\0", " ");
  if (!cmd) cmd = `[${/^Name:\s+(.*)$/m.exec(status)?.[1] ?? "?"}]`;
  return [String(pid), uid, ppid, time, cmd];
}

export const topCommand: Command = {
  name: "top",
  summary: "Show the processes of a container",
  help: TOP_HELP,
  async run(g, args) {
    const { positionals } = parse(args, {}, TOP_HELP);
    const [id] = positionals;
    if (!id || positionals.length > 1) {
      throw new UsageError(`top: exactly one ID is required\n\n${TOP_HELP}`);
    }
    const { processes } = await g.client().call(Tasks, "listPids", { containerId: id });
    const rows = await Promise.all(processes.map((p) => procRow(p.pid)));
    rows.sort((a, b) => Number(a[0]) - Number(b[0]));
    g.out(table(["PID", "USER", "PPID", "TIME", "CMD"], rows));
    return 0;
  },
};

// ---- stats ----------------------------------------------------------------------------

const STATS_HELP = `Usage: berth stats [--no-stream] [ID...]

Shows CPU, memory and pids usage of running containers (all running ones
when no ID is given), from the task's cgroup metrics (Tasks.Metrics).
Redrawn every second until Ctrl-C; --no-stream prints one sample (CPU%
measured over half a second) and exits.

Options:
  --no-stream   print one sample and exit
`;

interface Sample {
  cpuNs: number;
  memUsage: number;
  memLimit: number;
  pids: number;
}

/** Decodes the parts of a cgroups v1 Metrics message (io.containerd.cgroups.v1.Metrics) stats shows. */
async function decodeMetricsV1(bytes: Uint8Array): Promise<Sample> {
  const { BinaryReader } = await import("@bufbuild/protobuf/wire");
  const s: Sample = { cpuNs: 0, memUsage: 0, memLimit: 0, pids: 0 };
  const fields = (
    b: Uint8Array,
    fn: (no: number, r: InstanceType<typeof BinaryReader>, wt: number) => boolean,
  ) => {
    const r = new BinaryReader(b);
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (!fn(no, r, wt)) r.skip(wt, no);
    }
  };
  let inactiveFile = 0;
  fields(bytes, (no, r) => {
    if (no === 2) {
      fields(r.bytes(), (n, x) => (n === 1 ? ((s.pids = Number(x.uint64())), true) : false));
      return true;
    }
    if (no === 3) {
      fields(r.bytes(), (n, x) => {
        if (n !== 1) return false;
        fields(x.bytes(), (m, y) => (m === 1 ? ((s.cpuNs = Number(y.uint64())), true) : false));
        return true;
      });
      return true;
    }
    if (no === 4) {
      fields(r.bytes(), (n, x) => {
        if (n === 30) {
          inactiveFile = Number(x.uint64());
          return true;
        }
        if (n !== 33) return false;
        fields(x.bytes(), (m, y) => {
          if (m === 1) s.memLimit = Number(y.uint64());
          else if (m === 2) s.memUsage = Number(y.uint64());
          else return false;
          return true;
        });
        return true;
      });
      return true;
    }
    return false;
  });
  // As docker: the page cache that can be dropped is not counted as used.
  s.memUsage = Math.max(0, s.memUsage - inactiveFile);
  return s;
}

async function sample(g: Globals, chosen: string[] | undefined): Promise<Map<string, Sample>> {
  const filters = chosen ? chosen.map((id) => `id==${id}`) : [];
  const { metrics } = await g.client().call(Tasks, "metrics", { filters });
  const out = new Map<string, Sample>();
  for (const m of metrics) {
    if (!m.data) continue;
    if (!m.data.typeUrl.endsWith("io.containerd.cgroups.v1.Metrics")) continue;
    out.set(m.id, await decodeMetricsV1(m.data.value));
  }
  return out;
}

export const statsCommand: Command = {
  name: "stats",
  summary: "Show containers' resource usage",
  help: STATS_HELP,
  async run(g, args) {
    const { values, positionals } = parse(args, { "no-stream": { type: "boolean" } }, STATS_HELP);
    const { formatSize } = await import("./command.ts");
    const chosen = positionals.length > 0 ? positionals : undefined;
    const tty = Deno.stdout.isTerminal() && !values["no-stream"];
    let prev = await sample(g, chosen);
    let prevAt = performance.now();
    if (chosen) {
      const missing = chosen.filter((id) => !prev.has(id));
      if (missing.length) {
        throw failedPrecondition(
          `No metrics for ${missing.map((m) => `"${m}"`).join(", ")}: not running`,
        );
      }
    }
    const ac = new AbortController();
    const stop = () => ac.abort();
    if (!values["no-stream"]) Deno.addSignalListener("SIGINT", stop);
    try {
      let lines = 0;
      for (;;) {
        await sleep(values["no-stream"] ? 500 : 1000);
        if (ac.signal.aborted) break;
        const cur = await sample(g, chosen);
        const now = performance.now();
        const rows = [...cur.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, s]) => {
          const p = prev.get(id);
          const cpu = p ? ((s.cpuNs - p.cpuNs) / 1e6 / (now - prevAt)) * 100 : 0;
          const limit = s.memLimit > 0 && s.memLimit < 2 ** 62 ? formatSize(s.memLimit) : "-";
          return [
            id,
            `${Math.max(0, cpu).toFixed(2)}%`,
            `${formatSize(s.memUsage)} / ${limit}`,
            String(s.pids),
          ];
        });
        const text = table(["CONTAINER", "CPU %", "MEM USAGE / LIMIT", "PIDS"], rows);
        if (tty && lines > 0) {
          Deno.stdout.writeSync(new TextEncoder().encode(`\x1b[${lines}A\x1b[J`));
        }
        g.out(text);
        lines = text.split("\n").length;
        if (values["no-stream"]) break;
        prev = cur;
        prevAt = now;
      }
    } finally {
      if (!values["no-stream"]) Deno.removeSignalListener("SIGINT", stop);
    }
    return 0;
  },
};
