import { Leases } from "../../gen/containerd/services/leases/v1/leases_pb.ts";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type Command,
  dispatch,
  formatLabels,
  type Globals,
  parse,
  parseLabels,
  table,
  toJson,
  UsageError,
} from "./command.ts";

const HELP = `Usage: berth leases <command>

Manage leases. A lease keeps the content, ingests and snapshots it references
from garbage collection until it is removed or expires.

Commands:
  ls [-q] [--json] [FILTER...]                       list leases (filters: id, labels.KEY)
  create [--id ID] [--expires DURATION] [K=V...]     create a lease; prints its id
  rm [--sync] ID...                                  remove leases

Options of create:
  --id ID             the lease id [generated]
  -x, --expires DUR   expire after DUR, like 1h, 30m or 1h30m; 0 never expires [24h]
                      (sets the containerd.io/gc.expire label, RFC 3339)
Options of rm:
  --sync              wait for garbage collection of what the leases held

Alias: lease
`;

const UNIT_NS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  "µs": 1e3,
  "μs": 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/**
 * Parses a duration as Go's time.ParseDuration does (`1h`, `30m`, `1h30m`,
 * `1.5h`, `90s`, `0`) and returns milliseconds.
 */
export function parseDuration(s: string): number {
  const bad = () =>
    new UsageError(`invalid duration "${s}": use a number and unit, like 1h or 30m`);
  let rest = s.trim();
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    if (rest[0] === "-") sign = -1;
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (rest === "") throw bad();
  let ns = 0;
  while (rest !== "") {
    const m = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/.exec(rest);
    if (!m) throw bad();
    ns += Number(m[1]) * UNIT_NS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return sign * ns / 1e6;
}

/** RFC 3339 in UTC at second precision, as Go's time.RFC3339 prints it. */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, "Z");
}

/** `berth leases ls|create|rm`. */
export const leasesCommand: Command = {
  name: "leases",
  aliases: ["lease"],
  summary: "Manage leases",
  help: HELP,
  run: (g, args) => dispatch(g, args, HELP, SUBCOMMANDS),
};

const SUBCOMMANDS: Record<string, (g: Globals, args: string[]) => Promise<number>> = {
  async ls(g, args) {
    const { values, positionals } = parse(args, {
      quiet: { type: "boolean", short: "q" },
      json: { type: "boolean" },
    }, HELP);
    const res = await g.client().call(Leases, "list", { filters: positionals });
    if (values.json) {
      g.out(toJson(res.leases.map((l) => ({
        id: l.id,
        createdAt: l.createdAt ? timestampDate(l.createdAt).toISOString() : null,
        labels: l.labels,
      }))));
    } else if (values.quiet) {
      for (const l of res.leases) g.out(l.id);
    } else {
      g.out(table(
        ["ID", "CREATED AT", "LABELS"],
        res.leases.map((l) => [
          l.id,
          l.createdAt ? rfc3339(timestampDate(l.createdAt)) : "-",
          formatLabels(l.labels),
        ]),
      ));
    }
    return 0;
  },
  async create(g, args) {
    const { values, positionals } = parse(args, {
      id: { type: "string" },
      expires: { type: "string", short: "x" },
    }, HELP);
    const labels = parseLabels(positionals);
    const ms = parseDuration(values.expires ?? "24h");
    if (ms < 0) throw new UsageError(`--expires must not be negative: ${values.expires}`);
    if (ms > 0) labels["containerd.io/gc.expire"] = rfc3339(new Date(Date.now() + ms));
    const res = await g.client().call(Leases, "create", { id: values.id ?? "", labels });
    g.out(res.lease?.id ?? "");
    return 0;
  },
  async rm(g, args) {
    const { values, positionals } = parse(args, { sync: { type: "boolean" } }, HELP);
    if (positionals.length === 0) throw new UsageError("leases rm: at least one ID is required");
    let failed = 0;
    for (const [i, id] of positionals.entries()) {
      try {
        // As ctr does: only the last delete waits for the collection.
        const sync = values.sync === true && i === positionals.length - 1;
        await g.client().call(Leases, "delete", { id, sync });
        g.out(id);
      } catch (e) {
        g.err(`berth: ${(e as Error).message}`);
        failed++;
      }
    }
    return failed ? 1 : 0;
  },
};
SUBCOMMANDS.list = SUBCOMMANDS.ls!;
SUBCOMMANDS.remove = SUBCOMMANDS.delete = SUBCOMMANDS.rm!;
