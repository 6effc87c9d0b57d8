/**
 * `berth exec`: run another process in a running container, attached.
 */
import { Tasks } from "../../gen/containerd/services/tasks/v1/tasks_pb.ts";
import { criLogUri } from "../../runtime/crilog.ts";
import type { Spec } from "../../oci/runtime_types.ts";
import { type Command, parse, UsageError } from "./command.ts";
import {
  getContainer,
  getTask,
  ioDir,
  mkfifo,
  newId,
  PROCESS_TYPE_URL,
  specOf,
} from "./container_util.ts";
import { attachSession, splitAtPositional } from "./run.ts";

const HELP = `Usage: berth exec [options] ID COMMAND [ARG...]

Runs COMMAND in the running container ID, with the container's environment,
user and working directory unless changed below, and exits with its exit
code. Output is shown as it comes (stdout and stderr apart); it is kept in
a CRI log beside the container's own while the process runs.

Options:
  -i, --interactive    connect stdin to the process
  -t, --tty            give the process a terminal
  -u, --user USER      user[:group] (names from the container's /etc/passwd)
  -e, --env K=V        set an environment variable (repeatable)
  -w, --workdir DIR    working directory
`;

const OPTIONS = {
  interactive: { type: "boolean", short: "i" },
  tty: { type: "boolean", short: "t" },
  user: { type: "string", short: "u" },
  env: { type: "string", short: "e", multiple: true },
  workdir: { type: "string", short: "w" },
} as const;

export const execCommand: Command = {
  name: "exec",
  summary: "Run a command in a running container",
  help: HELP,
  async run(g, args) {
    const [own, rest] = splitAtPositional(args, OPTIONS);
    const { values, positionals } = parse(own, OPTIONS, HELP);
    const [id, ...cmd] = [...positionals, ...rest];
    if (!id || cmd.length === 0) {
      throw new UsageError(`exec: ID and COMMAND are required\n\n${HELP}`);
    }
    const c = g.client();
    const container = await getContainer(g, id);
    const task = await getTask(g, id);
    if (!task || task.pid === 0) throw new UsageError(`exec: container "${id}" is not running`);
    const base = specOf(container) as Spec | undefined;
    if (!base?.process) throw new Error(`Container "${id}" has no process in its spec`);

    // The exec's process: the container's, with the command and the options applied.
    const o = await import("../../oci/spec_opts.ts");
    const spec: Spec = { ociVersion: base.ociVersion, process: structuredClone(base.process) };
    if (base.linux) spec.linux = {};
    delete spec.process!.terminal;
    spec.process!.args = cmd;
    spec.process!.env = (spec.process!.env ?? []).filter((e) => !e.startsWith("TERM="));
    const tty = values.tty ?? false;
    // Names are looked up in the container's own root, through its init's /proc.
    const root = `/proc/${task.pid}/root`;
    const opts = [];
    if (values.env?.length) opts.push(o.withEnv(values.env));
    if (values.workdir) opts.push(o.withCwd(values.workdir));
    if (values.user) opts.push(o.withUser(values.user, root));
    if (tty) opts.push(o.withTTY);
    for (const f of opts) await f(spec);

    const execId = `exec-${newId()}`;
    const dir = ioDir(g, id);
    await Deno.mkdir(dir, { recursive: true });
    const logPath = `${dir}/${execId}.log`;
    const stdin = values.interactive ? `${dir}/${execId}-stdin` : undefined;
    if (stdin) await mkfifo(stdin);
    try {
      await c.call(Tasks, "exec", {
        containerId: id,
        execId,
        stdin: stdin ?? "",
        stdout: criLogUri(logPath, "stdout"),
        stderr: tty ? "" : criLogUri(logPath, "stderr"),
        terminal: tty,
        spec: {
          typeUrl: PROCESS_TYPE_URL,
          value: new TextEncoder().encode(JSON.stringify(spec.process)),
        },
      });
      try {
        return await attachSession(g, {
          id,
          execId,
          logPath,
          ...(stdin ? { stdin } : {}),
          tty,
          start: () => c.call(Tasks, "start", { containerId: id, execId }),
        });
      } finally {
        await c.call(Tasks, "deleteProcess", { containerId: id, execId }).catch(() => {});
      }
    } finally {
      await Deno.remove(logPath).catch(() => {});
      if (stdin) await Deno.remove(stdin).catch(() => {});
    }
  },
};
