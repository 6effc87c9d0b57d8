/**
 * `berth run`: create a container from an image and run it, attached (output
 * followed from its CRI log, stdin through a FIFO, a terminal in raw mode) or
 * detached. Also the attach session `exec` and `start -a` reuse.
 */
import { Containers } from "../../gen/containerd/services/containers/v1/containers_pb.ts";
import { Snapshots } from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Tasks } from "../../gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Leases } from "../../gen/containerd/services/leases/v1/leases_pb.ts";
import { alreadyExists, isKind } from "../../core/errdefs.ts";
import { validateIdentifier } from "../../core/identifiers.ts";
import { criLogUri } from "../../runtime/crilog.ts";
import { type Command, type Globals, parse, UsageError } from "./command.ts";
import {
  DEFAULT_RUNTIME,
  DEFAULT_SNAPSHOTTER,
  ensureImage,
  followLog,
  forwardStdin,
  ioDir,
  LABEL_CREATED_BY,
  LABEL_IMAGE,
  LABEL_LOG_PATH,
  LABEL_STOP_SIGNAL,
  mkfifo,
  newId,
  packSpec,
  removeContainer,
  waitExit,
  writeRecord,
} from "./container_util.ts";

const HELP = `Usage: berth run [options] IMAGE [COMMAND [ARG...]]

Creates a container from IMAGE (pulled, with progress on stderr, when it is
not here) and runs COMMAND in it (default: the image's Entrypoint and Cmd).
Attached, berth shows the container's output (stdout to stdout, stderr to
stderr), forwards Ctrl-C (SIGINT) and SIGTERM to it and exits with its exit
code; -d prints the container id and leaves it running.

Output is kept in the container's CRI-format log, read later by 'berth logs':
<dir of the daemon socket>/io/<namespace>/<id>/container.log (with the
default socket, /run/berth/io/...); the stdin FIFO of -i lives beside it.

Options:
  -d, --detach             run in the background and print the container id
  -i, --interactive        keep stdin open and connect it to the container
  -t, --tty                give the container a terminal (with -i: a session)
      --rm                 remove the container when it exits (attached runs)
      --name NAME          container id [12 random hex digits]
      --snapshotter NAME   snapshotter of the container's root [${DEFAULT_SNAPSHOTTER}]
  -e, --env K=V            set an environment variable (repeatable)
  -v, --volume SRC:DST[:ro]  bind-mount a host path (repeatable)
  -u, --user USER          user[:group] to run as (names from the image's /etc/passwd)
  -w, --workdir DIR        working directory inside the container
      --net host|none      host network, or a network namespace with only lo [none]
      --runtime NAME       runtime (shim) name [${DEFAULT_RUNTIME}]
      --memory SIZE        memory limit (e.g. 64m, 1g)
      --cpus N             CPU quota in CPUs (e.g. 0.5)
      --read-only          make the root filesystem read-only
      --privileged         all capabilities, all devices, no seccomp or masked paths
`;

const OPTIONS = {
  detach: { type: "boolean", short: "d" },
  interactive: { type: "boolean", short: "i" },
  tty: { type: "boolean", short: "t" },
  rm: { type: "boolean" },
  name: { type: "string" },
  snapshotter: { type: "string" },
  env: { type: "string", short: "e", multiple: true },
  volume: { type: "string", short: "v", multiple: true },
  user: { type: "string", short: "u" },
  workdir: { type: "string", short: "w" },
  net: { type: "string" },
  runtime: { type: "string" },
  memory: { type: "string" },
  cpus: { type: "string" },
  "read-only": { type: "boolean" },
  privileged: { type: "boolean" },
} as const;

type OptionSpec = Record<string, { type: "string" | "boolean"; short?: string }>;

/**
 * Splits `args` into the options before the first positional (the image,
 * or an exec's container id) and the rest, which belongs to the command:
 * `berth run busybox ls -l` must not read `-l` as berth's.
 */
export function splitAtPositional(args: string[], options: OptionSpec): [string[], string[]] {
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type !== "string") continue;
    takesValue.add(`--${name}`);
    if (o.short) takesValue.add(`-${o.short}`);
  }
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") return [args.slice(0, i), args.slice(i + 1)];
    if (!a.startsWith("-") || a === "-") return [args.slice(0, i), args.slice(i)];
    if (a.startsWith("--")) {
      if (!a.includes("=") && takesValue.has(a)) i++;
    } else if (
      takesValue.has(`-${a.at(-1)}`) &&
      !a.slice(1, -1).split("").some((c) => takesValue.has(`-${c}`))
    ) {
      // `-e`, or a group like `-ite` ending in an option that takes a value.
      i++;
    }
  }
  return [args, []];
}

/** What an attach session connects to: one process of a task. */
export interface AttachOptions {
  id: string;
  /** "" for the init process. */
  execId: string;
  logPath: string;
  /** Where in the log this process's output starts (a restarted task appends). */
  logOffset?: number;
  /** The stdin FIFO, when stdin is attached. */
  stdin?: string;
  tty: boolean;
  /** Starts the process (after the session is ready to show its output). */
  start(): Promise<unknown>;
}

/**
 * Runs a process attached: starts it, shows its log as it is written
 * (demuxed to stdout and stderr), forwards stdin, signals and terminal
 * size, and returns its exit status once it exited and its output is drained.
 */
export async function attachSession(g: Globals, o: AttachOptions): Promise<number> {
  const c = g.client();
  const raw = o.tty && o.stdin !== undefined && Deno.stdin.isTerminal();
  const cleanups: Array<() => void> = [];
  try {
    const sized = o.tty && Deno.stdout.isTerminal();
    const resize = () => {
      const { columns, rows } = Deno.consoleSize();
      return c.call(Tasks, "resizePty", {
        containerId: o.id,
        execId: o.execId,
        width: columns,
        height: rows,
      })
        .catch(() => {});
    };
    // The terminal gets its size before the process starts (as ctr does):
    // a program that asks at once must not see 0x0.
    if (sized) {
      await resize();
      Deno.addSignalListener("SIGWINCH", resize);
      cleanups.push(() => Deno.removeSignalListener("SIGWINCH", resize));
    }
    await o.start();
    // An exec's process exists only once started: size it now (its first
    // instant may still see 0x0, as with ctr exec -t).
    if (sized && o.execId) await resize();
    // Signals: Ctrl-C and SIGTERM go to the process (as ctr's ForwardAllSignals
    // for these two); in raw mode Ctrl-C is a byte on stdin instead.
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      const num = sig === "SIGINT" ? 2 : 15;
      const h = () => {
        c.call(Tasks, "kill", { containerId: o.id, execId: o.execId, signal: num, all: false })
          .catch(() => {});
      };
      Deno.addSignalListener(sig, h);
      cleanups.push(() => Deno.removeSignalListener(sig, h));
    }
    if (raw) {
      Deno.stdin.setRaw(true);
      cleanups.push(() => {
        try {
          Deno.stdin.setRaw(false);
        } catch { /* not a terminal any more */ }
      });
    }
    if (o.stdin !== undefined) {
      forwardStdin(
        o.stdin,
        () => c.call(Tasks, "closeIO", { containerId: o.id, execId: o.execId, stdin: true }),
      )
        .catch(() => {});
    }
    const exit = waitExit(g, o.id, o.execId);
    const shown = followLog(o.logPath, {
      onRecord: (r) => writeRecord(r),
      until: exit,
      ...(o.logOffset !== undefined ? { offset: o.logOffset } : {}),
    });
    const code = await exit;
    await shown;
    return code;
  } finally {
    for (const f of cleanups.reverse()) f();
  }
}

/**
 * A read-only view of a freshly prepared snapshot's mounts, for reading the
 * image's files: its upper layer is still empty, so the layers below are the
 * whole view. One layer is a read-only bind mount (no overlay to set up, the
 * costliest step of `berth run` on the client), several are a read-only
 * overlay of the lower dirs alone (as containerd's tryReadonlyMounts).
 */
export function readonlyView(
  mounts: Array<{ type: string; source: string; options: string[] }>,
): Array<{ type: string; source: string; options: string[] }> {
  if (mounts.length !== 1) return mounts;
  const m = mounts[0]!;
  if (m.type === "bind") {
    return [{ ...m, options: [...m.options.filter((o) => o !== "rw"), "ro"] }];
  }
  if (m.type !== "overlay") return mounts;
  const lower = m.options.find((o) => o.startsWith("lowerdir="))?.slice("lowerdir=".length);
  if (!lower) return mounts;
  const dirs = lower.split(":");
  if (dirs.length === 1) return [{ type: "bind", source: dirs[0]!, options: ["rbind", "ro"] }];
  const keep = m.options.filter((o) =>
    !o.startsWith("upperdir=") && !o.startsWith("workdir=") && o !== "rw"
  );
  return [{ ...m, options: [...keep, "ro"] }];
}

/** Builds the container's spec with the rootfs mounted (for user and group lookups). */
async function buildSpec(
  g: Globals,
  id: string,
  image: Awaited<ReturnType<typeof ensureImage>>,
  cmd: string[],
  values: Record<string, unknown>,
  mounts: Array<{ type: string; source: string; options: string[] }>,
): Promise<unknown> {
  const o = await import("../../oci/spec_opts.ts");
  const { generateSpec } = await import("../../oci/spec.ts");
  const { withTempMount } = await import("../../mount/mod.ts");
  const v = values as {
    env?: string[];
    volume?: string[];
    user?: string;
    workdir?: string;
    net?: string;
    memory?: string;
    cpus?: string;
    "read-only"?: boolean;
    privileged?: boolean;
    tty?: boolean;
  };
  const net = v.net ?? "none";
  if (net !== "none" && net !== "host") {
    throw new UsageError(`run: --net must be host or none, got "${net}"`);
  }
  let cpus: number | undefined;
  if (v.cpus !== undefined) {
    cpus = Number(v.cpus);
    if (!Number.isFinite(cpus) || cpus <= 0) {
      throw new UsageError(`run: --cpus must be a positive number, got "${v.cpus}"`);
    }
  }
  const binds = (v.volume ?? []).map((s) => o.parseBindMount(s));
  for (const b of binds) {
    try {
      await Deno.stat(b.source!);
    } catch {
      throw new UsageError(`run: bind mount source "${b.source}" does not exist`);
    }
  }
  const memory = v.memory !== undefined ? o.parseMemorySize(v.memory) : undefined;
  return await withTempMount(readonlyView(mounts), (root) => {
    const opts: import("../../oci/spec.ts").SpecOpt[] = [
      o.withImageConfig(image.config.config ?? {}, root, { args: cmd }),
    ];
    if (net === "host") opts.push(o.withHostNetwork());
    else opts.push(o.withHostname(id));
    if (v.env?.length) opts.push(o.withEnv(v.env));
    if (v.workdir) opts.push(o.withCwd(v.workdir));
    if (v.user) opts.push(o.withUser(v.user, root));
    if (binds.length) opts.push(o.withMounts(binds));
    if (v["read-only"]) opts.push(o.withReadonlyRootfs);
    if (memory !== undefined) opts.push(o.withMemoryLimit(memory));
    if (cpus !== undefined) opts.push(o.withCpus(cpus));
    if (v.tty) opts.push(o.withTTY);
    if (v.privileged) opts.push(o.withPrivileged());
    else opts.push(o.withDefaultSeccomp());
    return generateSpec({ namespace: g.namespace, id }, ...opts);
  }).then((spec) => {
    if (!spec.process?.args?.length) {
      throw new UsageError(`run: image "${image.name}" has no Entrypoint or Cmd: give a COMMAND`);
    }
    return spec;
  });
}

export const runCommand: Command = {
  name: "run",
  summary: "Run a command in a new container",
  help: HELP,
  async run(g, args) {
    const [own, rest] = splitAtPositional(args, OPTIONS);
    const { values, positionals } = parse(own, OPTIONS, HELP);
    const [ref, ...cmdHead] = [...positionals, ...rest];
    if (!ref) throw new UsageError(`run: IMAGE is required\n\n${HELP}`);
    const cmd = cmdHead;
    const id = values.name ?? newId();
    const snapshotter = values.snapshotter ?? DEFAULT_SNAPSHOTTER;
    const c = g.client();
    validateIdentifier("container", id);
    // Loaded while the calls below wait on the daemon; buildSpec needs them.
    for (
      const m of [
        import("../../oci/spec_opts.ts"),
        import("../../oci/spec.ts"),
        import("../../mount/mod.ts"),
      ]
    ) m.catch(() => {});
    // Named before anything is made, so the error is about the container.
    const taken = await c.call(Containers, "get", { id }).then(() => true, (e) => {
      if (isKind(e, "not_found")) return false;
      throw e;
    });
    if (taken) throw alreadyExists(`container "${id}"`);
    const image = await ensureImage(g, ref, { snapshotter });

    const dir = ioDir(g, id);
    const logPath = `${dir}/container.log`;
    const labels: Record<string, string> = {
      [LABEL_IMAGE]: ref,
      [LABEL_CREATED_BY]: "berth",
      [LABEL_LOG_PATH]: logPath,
    };
    const stopSignal = image.config.config?.StopSignal;
    if (stopSignal) labels[LABEL_STOP_SIGNAL] = stopSignal;

    // The rw snapshot first: its mounts give the rootfs to resolve users in.
    // A lease holds it until the container record does, so a GC in between
    // cannot collect it.
    const { lease } = await c.call(Leases, "create", {
      id: "",
      labels: { "containerd.io/gc.expire": new Date(Date.now() + 3600_000).toISOString() },
    });
    c.lease = lease!.id;
    let prepared = false;
    let created = false;
    try {
      const { mounts } = await c.call(Snapshots, "prepare", {
        snapshotter,
        key: id,
        parent: image.chainId,
        labels: {},
      });
      prepared = true;
      const spec = await buildSpec(
        g,
        id,
        image,
        cmd,
        values,
        mounts.map((m) => ({ type: m.type, source: m.source, options: [...m.options] })),
      );
      await c.call(Containers, "create", {
        container: {
          id,
          image: image.name,
          labels,
          runtime: { name: values.runtime ?? DEFAULT_RUNTIME },
          spec: packSpec(spec),
          snapshotter,
          snapshotKey: id,
        },
      });
      created = true;
    } catch (e) {
      if (!created && prepared) {
        await c.call(Snapshots, "remove", { snapshotter, key: id }).catch(() => {});
      }
      throw e;
    } finally {
      c.lease = undefined;
      await c.call(Leases, "delete", { id: lease!.id, sync: false }).catch(() => {});
    }

    const tty = values.tty ?? false;
    const interactive = (values.interactive ?? false) && !values.detach;
    try {
      await Deno.mkdir(dir, { recursive: true });
      const stdin = interactive ? `${dir}/stdin` : undefined;
      if (stdin) await mkfifo(stdin);
      await c.call(Tasks, "create", {
        containerId: id,
        rootfs: [],
        stdin: stdin ?? "",
        stdout: criLogUri(logPath, "stdout"),
        stderr: tty ? "" : criLogUri(logPath, "stderr"),
        terminal: tty,
        runtimePath: "",
      });
    } catch (e) {
      await removeContainer(g, id, { force: true }).catch(() => {});
      throw e;
    }

    if (values.detach) {
      await c.call(Tasks, "start", { containerId: id, execId: "" });
      g.out(id);
      return 0;
    }
    let code: number;
    try {
      code = await attachSession(g, {
        id,
        execId: "",
        logPath,
        ...(interactive ? { stdin: `${dir}/stdin` } : {}),
        tty,
        start: () => c.call(Tasks, "start", { containerId: id, execId: "" }),
      });
    } catch (e) {
      if (values.rm) await removeContainer(g, id, { force: true }).catch(() => {});
      throw e;
    }
    if (values.rm) await removeContainer(g, id, { force: true });
    return code;
  },
};
