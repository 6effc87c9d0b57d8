/**
 * `berth logs`: a container's output from its CRI log, stdout lines to
 * stdout and stderr lines to stderr.
 */
import { Status } from "../../gen/containerd/types/task/task_pb.ts";
import { CriParser, type CriRecord } from "../../runtime/crilog.ts";
import { type Command, parse, UsageError } from "./command.ts";
import {
  followLog,
  getContainer,
  getTask,
  logPathOf,
  waitExit,
  writeRecord,
} from "./container_util.ts";

const HELP = `Usage: berth logs [-f] [--tail N] [--timestamps] ID

Prints a container's output, kept in its CRI-format log (see berth run
--help for where): what it wrote to stdout on stdout, to stderr on stderr.
The log outlives the task and goes with berth rm.

Options:
  -f, --follow       keep printing new output until the task exits
  -n, --tail N       only the last N lines (counted over both streams)
  -t, --timestamps   prefix each line with the time it was written (RFC 3339)
`;

/**
 * The records making up the last `n` lines: a line is a run of P records of
 * one stream ended by an F record (or by the end of the log).
 */
export function lastLines(records: CriRecord[], n: number): CriRecord[] {
  const lines: number[][] = [];
  const open = new Map<string, number[]>();
  records.forEach((r, i) => {
    const cur = open.get(r.stream) ?? [];
    cur.push(i);
    if (r.partial) open.set(r.stream, cur);
    else {
      open.delete(r.stream);
      lines.push(cur);
    }
  });
  for (const rest of open.values()) lines.push(rest);
  lines.sort((a, b) => a.at(-1)! - b.at(-1)!);
  const keep = lines.slice(Math.max(0, lines.length - n)).flat().sort((a, b) => a - b);
  return keep.map((i) => records[i]!);
}

export const logsCommand: Command = {
  name: "logs",
  summary: "Show a container's output",
  help: HELP,
  async run(g, args) {
    const { values, positionals } = parse(args, {
      follow: { type: "boolean", short: "f" },
      tail: { type: "string", short: "n" },
      timestamps: { type: "boolean", short: "t" },
    }, HELP);
    const [id] = positionals;
    if (!id || positionals.length > 1) {
      throw new UsageError(`logs: exactly one ID is required\n\n${HELP}`);
    }
    let tail: number | undefined;
    if (values.tail !== undefined && values.tail !== "all") {
      tail = Number(values.tail);
      if (!Number.isInteger(tail) || tail < 0) {
        throw new UsageError(
          `logs: --tail must be a whole number of lines or "all", got "${values.tail}"`,
        );
      }
    }
    const container = await getContainer(g, id);
    const path = logPathOf(g, container);
    const show = (r: CriRecord) => writeRecord(r, { timestamps: values.timestamps ?? false });
    let offset = 0;
    if (tail !== undefined) {
      // Read what is there now, keep the last lines, then follow from its end.
      const bytes = await Deno.readFile(path).catch((e) => {
        if (e instanceof Deno.errors.NotFound) return new Uint8Array();
        throw e;
      });
      // Only complete lines count; a trailing fragment is left for -f.
      const end = bytes.lastIndexOf(0x0a) + 1;
      offset = end;
      for (const r of lastLines(new CriParser().push(bytes.subarray(0, end)), tail)) show(r);
      if (!values.follow) return 0;
    }
    let until: Promise<unknown> | undefined;
    if (values.follow) {
      const task = await getTask(g, id);
      if (task && task.status !== Status.STOPPED) until = waitExit(g, id).catch(() => {});
    }
    const ac = new AbortController();
    const stop = () => ac.abort();
    if (until) Deno.addSignalListener("SIGINT", stop);
    try {
      await followLog(path, {
        onRecord: show,
        offset,
        signal: ac.signal,
        ...(until ? { until } : {}),
      });
    } finally {
      if (until) Deno.removeSignalListener("SIGINT", stop);
    }
    return 0;
  },
};
