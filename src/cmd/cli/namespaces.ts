import { Namespaces } from "../../gen/containerd/services/namespaces/v1/namespace_pb.ts";
import {
  type Command,
  dispatch,
  formatLabels,
  parse,
  parseLabels,
  table,
  toJson,
  UsageError,
} from "./command.ts";

const HELP = `Usage: berth namespaces <command>

Manage namespaces. Every image, container and lease lives in one; content is
shared between them.

Commands:
  ls [-q] [--json] [FILTER...]       list namespaces
  create NAME [KEY=VALUE...]         create a namespace with labels
  rm NAME...                         remove empty namespaces
  label NAME [KEY=VALUE|KEY=...]     set labels (KEY= removes a label)

Alias: ns
`;

export const namespacesCommand: Command = {
  name: "namespaces",
  aliases: ["ns"],
  summary: "Manage namespaces",
  help: HELP,
  run: (g, args) =>
    dispatch(g, args, HELP, {
      async ls(g, args) {
        const { values, positionals } = parse(args, {
          quiet: { type: "boolean", short: "q" },
          json: { type: "boolean" },
        }, HELP);
        const res = await g.client().call(Namespaces, "list", { filter: positionals.join(",") });
        if (values.json) g.out(toJson(res.namespaces));
        else if (values.quiet) { for (const n of res.namespaces) g.out(n.name); }
        else {g.out(
            table(["NAME", "LABELS"], res.namespaces.map((n) => [n.name, formatLabels(n.labels)])),
          );}
        return 0;
      },
      async create(g, args) {
        const { positionals } = parse(args, {}, HELP);
        const [name, ...labels] = positionals;
        if (!name) throw new UsageError("namespaces create: a NAME is required");
        await g.client().call(Namespaces, "create", {
          namespace: { name, labels: parseLabels(labels) },
        });
        return 0;
      },
      async rm(g, args) {
        const { positionals } = parse(args, {}, HELP);
        if (positionals.length === 0) {
          throw new UsageError("namespaces rm: at least one NAME is required");
        }
        let failed = 0;
        for (const name of positionals) {
          try {
            await g.client().call(Namespaces, "delete", { name });
            g.out(name);
          } catch (e) {
            g.err(`berth: ${(e as Error).message}`);
            failed++;
          }
        }
        return failed ? 1 : 0;
      },
      async label(g, args) {
        const { positionals } = parse(args, {}, HELP);
        const [name, ...labels] = positionals;
        if (!name) throw new UsageError("namespaces label: a NAME is required");
        const set = parseLabels(labels);
        const paths = Object.keys(set).map((k) => `labels.${k}`);
        const res = await g.client().call(Namespaces, "update", {
          namespace: { name, labels: set },
          updateMask: { paths },
        });
        g.out(formatLabels(res.namespace?.labels ?? {}));
        return 0;
      },
    }),
};
