import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type Info,
  Kind,
  Snapshots,
} from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import {
  type Command,
  dispatch,
  formatLabels,
  formatSize,
  type Globals,
  parse,
  parseLabels,
  table,
  toJson,
  UsageError,
} from "./command.ts";

const HELP = `Usage: berth snapshots [--snapshotter NAME] <command>

Manage snapshots: the filesystem trees images unpack into and containers run
on. Committed snapshots are read-only layers; active ones are writable and
views are read-only trees built on a committed parent.

Commands:
  ls [-q] [--json] [FILTER...]             list snapshots (filters: kind==committed,
                                           parent==NAME, labels.KEY==VALUE, name~=RE)
  info [--json] KEY                        show one snapshot
  rm KEY...                                remove snapshots (children first)
  mounts [--json] TARGET KEY               print the mount commands for a snapshot
  usage [-b] [--json] [KEY...]             disk usage of snapshots (all when none named)
  prepare [-t TARGET] [--json] KEY [PARENT]  create an active (writable) snapshot
  view [-t TARGET] [--json] KEY [PARENT]     create a read-only view of a committed snapshot
  commit NAME KEY                          commit the active snapshot KEY as NAME
  label KEY [KEY=VALUE|KEY=...]            set labels (KEY= removes a label)

Options:
  --snapshotter NAME   overlayfs or native [$BERTH_SNAPSHOTTER, or the daemon's default]
                       (may also be given after the command)

Alias: snapshot
`;

const KIND_NAMES: Record<number, string> = {
  [Kind.UNKNOWN]: "Unknown",
  [Kind.VIEW]: "View",
  [Kind.ACTIVE]: "Active",
  [Kind.COMMITTED]: "Committed",
};

function infoJson(i: Info) {
  return {
    name: i.name,
    parent: i.parent,
    kind: KIND_NAMES[i.kind]!.toLowerCase(),
    labels: i.labels,
    created: i.createdAt ? timestampDate(i.createdAt).toISOString() : undefined,
    updated: i.updatedAt ? timestampDate(i.updatedAt).toISOString() : undefined,
  };
}

function mountLines(target: string, mounts: { type: string; source: string; options: string[] }[]) {
  return mounts.map((m) => `mount -t ${m.type} ${m.source} ${target} -o ${m.options.join(",")}`);
}

/** Pulls `--snapshotter NAME` (or `=NAME`) from anywhere in the arguments. */
function takeSnapshotter(args: string[]): { snapshotter: string; rest: string[] } {
  let snapshotter = Deno.env.get("BERTH_SNAPSHOTTER") ?? "";
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--snapshotter") {
      const v = args[++i];
      if (v === undefined) throw new UsageError(`option --snapshotter needs a value\n\n${HELP}`);
      snapshotter = v;
    } else if (a.startsWith("--snapshotter=")) snapshotter = a.slice("--snapshotter=".length);
    else if (a === "--") {
      rest.push(...args.slice(i));
      break;
    } else rest.push(a);
  }
  return { snapshotter, rest };
}

function create(view: boolean) {
  return async (g: Globals, args: string[], snapshotter: string) => {
    const verb = view ? "view" : "prepare";
    const { values, positionals } = parse(args, {
      target: { type: "string", short: "t" },
      json: { type: "boolean" },
    }, HELP);
    const [key, parent = "", ...extra] = positionals;
    if (!key || extra.length) {
      throw new UsageError(`snapshots ${verb}: want KEY [PARENT]\n\n${HELP}`);
    }
    // As ctr does: snapshots made by hand are roots for garbage collection.
    const labels = { "containerd.io/gc.root": new Date().toISOString().replace(/\.\d+Z$/, "Z") };
    const res = await g.client().call(Snapshots, view ? "view" : "prepare", {
      snapshotter,
      key,
      parent,
      labels,
    });
    if (values.target) { for (const l of mountLines(values.target, res.mounts)) g.out(l); }
    if (values.json) g.out(toJson(res.mounts));
    return 0;
  };
}

export const snapshotsCommand: Command = {
  name: "snapshots",
  aliases: ["snapshot"],
  summary: "Manage snapshots",
  help: HELP,
  run(g, allArgs) {
    const { snapshotter, rest } = takeSnapshotter(allArgs);
    const sub =
      (fn: (g: Globals, args: string[], sn: string) => Promise<number>) =>
      (g: Globals, args: string[]) => fn(g, args, snapshotter);
    const prepare = create(false);
    const view = create(true);
    return dispatch(g, rest, HELP, {
      ls: sub(async (g, args, snapshotter) => {
        const { values, positionals } = parse(args, {
          quiet: { type: "boolean", short: "q" },
          json: { type: "boolean" },
        }, HELP);
        const infos: Info[] = [];
        for await (
          const res of g.client().stream(Snapshots, "list", { snapshotter, filters: positionals })
        ) infos.push(...res.info);
        if (values.json) g.out(toJson(infos.map(infoJson)));
        else if (values.quiet) { for (const i of infos) g.out(i.name); }
        else {
          g.out(table(
            ["KEY", "PARENT", "KIND"],
            infos.map((i) => [i.name, i.parent, KIND_NAMES[i.kind] ?? String(i.kind)]),
          ));
        }
        return 0;
      }),
      info: sub(async (g, args, snapshotter) => {
        const { positionals } = parse(args, { json: { type: "boolean" } }, HELP);
        if (positionals.length !== 1) {
          throw new UsageError(`snapshots info: want one KEY\n\n${HELP}`);
        }
        const res = await g.client().call(Snapshots, "stat", { snapshotter, key: positionals[0] });
        g.out(toJson(infoJson(res.info!)));
        return 0;
      }),
      rm: sub(async (g, args, snapshotter) => {
        const { positionals } = parse(args, {}, HELP);
        if (positionals.length === 0) {
          throw new UsageError("snapshots rm: at least one KEY is required");
        }
        let failed = 0;
        for (const key of positionals) {
          try {
            await g.client().call(Snapshots, "remove", { snapshotter, key });
            g.out(key);
          } catch (e) {
            g.err(`berth: ${(e as Error).message}`);
            failed++;
          }
        }
        return failed ? 1 : 0;
      }),
      mounts: sub(async (g, args, snapshotter) => {
        const { values, positionals } = parse(args, { json: { type: "boolean" } }, HELP);
        const [target, key] = positionals;
        if (!target || !key || positionals.length !== 2) {
          throw new UsageError(`snapshots mounts: want TARGET KEY\n\n${HELP}`);
        }
        const res = await g.client().call(Snapshots, "mounts", { snapshotter, key });
        if (values.json) g.out(toJson(res.mounts));
        else for (const l of mountLines(target, res.mounts)) g.out(l);
        return 0;
      }),
      usage: sub(async (g, args, snapshotter) => {
        const { values, positionals } = parse(args, {
          b: { type: "boolean", short: "b" },
          json: { type: "boolean" },
        }, HELP);
        let keys = positionals;
        if (keys.length === 0) {
          keys = [];
          for await (const res of g.client().stream(Snapshots, "list", { snapshotter })) {
            keys.push(...res.info.map((i) => i.name));
          }
        }
        const rows: Array<{ key: string; size: number; inodes: number }> = [];
        for (const key of keys) {
          const u = await g.client().call(Snapshots, "usage", { snapshotter, key });
          rows.push({ key, size: Number(u.size), inodes: Number(u.inodes) });
        }
        if (values.json) g.out(toJson(rows));
        else {
          g.out(table(
            ["KEY", "SIZE", "INODES"],
            rows.map((
              r,
            ) => [r.key, values.b ? String(r.size) : formatSize(r.size), String(r.inodes)]),
          ));
        }
        return 0;
      }),
      prepare: sub(prepare),
      view: sub(view),
      commit: sub(async (g, args, snapshotter) => {
        const { positionals } = parse(args, {}, HELP);
        const [name, key] = positionals;
        if (!name || !key || positionals.length !== 2) {
          throw new UsageError(`snapshots commit: want NAME KEY\n\n${HELP}`);
        }
        const labels = {
          "containerd.io/gc.root": new Date().toISOString().replace(/\.\d+Z$/, "Z"),
        };
        await g.client().call(Snapshots, "commit", { snapshotter, name, key, labels });
        return 0;
      }),
      label: sub(async (g, args, snapshotter) => {
        const { positionals } = parse(args, {}, HELP);
        const [key, ...labels] = positionals;
        if (!key) throw new UsageError("snapshots label: a KEY is required");
        const set = parseLabels(labels);
        const paths = Object.keys(set).map((k) => `labels.${k}`);
        const info = paths.length
          ? (await g.client().call(Snapshots, "update", {
            snapshotter,
            info: { name: key, labels: set },
            updateMask: { paths },
          })).info
          : (await g.client().call(Snapshots, "stat", { snapshotter, key })).info;
        g.out(formatLabels(info?.labels ?? {}));
        return 0;
      }),
    });
  },
};
