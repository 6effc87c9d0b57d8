import { Introspection } from "../../gen/containerd/services/introspection/v1/introspection_pb.ts";
import { Version } from "../../gen/containerd/services/version/v1/version_pb.ts";
import { type Command, parse, table, toJson } from "./command.ts";

const HELP = `Usage: berth info [--json]

Shows the daemon's address, version, UUID and plugins.

Options:
  --json     print JSON
`;

export const infoCommand: Command = {
  name: "info",
  summary: "Show the daemon's identity and plugins",
  help: HELP,
  async run(g, args) {
    const { values } = parse(args, { json: { type: "boolean" } }, HELP);
    const c = g.client();
    const [version, server, plugins] = await Promise.all([
      c.call(Version, "version", {}),
      c.call(Introspection, "server", {}),
      c.call(Introspection, "plugins", { filters: [] }),
    ]);
    const list = plugins.plugins.map((p) => ({ type: p.type, id: p.id, ok: !p.initErr }));
    if (values.json) {
      g.out(
        toJson({
          address: g.address,
          version: version.version,
          revision: version.revision,
          uuid: server.uuid,
          plugins: list,
        }),
      );
      return 0;
    }
    g.out(
      `Address:  ${g.address}\nVersion:  ${version.version} (${version.revision})\nUUID:     ${server.uuid}\n`,
    );
    g.out(table(["TYPE", "ID", "STATUS"], list.map((p) => [p.type, p.id, p.ok ? "ok" : "error"])));
    return 0;
  },
};
