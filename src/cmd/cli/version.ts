import { Version } from "../../gen/containerd/services/version/v1/version_pb.ts";
import { REVISION, VERSION } from "../../version.ts";
import { type Command, parse, toJson } from "./command.ts";

const HELP = `Usage: berth version [--client] [--json]

Prints the client's version and the daemon's.

Options:
  --client   print only the client version (no daemon needed)
  --json     print JSON
`;

export const versionCommand: Command = {
  name: "version",
  summary: "Print the client and daemon versions",
  help: HELP,
  async run(g, args) {
    const { values } = parse(
      args,
      { client: { type: "boolean" }, json: { type: "boolean" } },
      HELP,
    );
    const client = { version: VERSION, revision: REVISION };
    if (values.client) {
      g.out(values.json ? toJson({ client }) : `berth ${VERSION} (${REVISION})`);
      return 0;
    }
    const server = await g.client().call(Version, "version", {});
    if (values.json) {
      g.out(toJson({ client, server: { version: server.version, revision: server.revision } }));
      return 0;
    }
    g.out(`Client:\n  Version:  ${VERSION}\n  Revision: ${REVISION}\n`);
    g.out(`Server:\n  Version:  ${server.version}\n  Revision: ${server.revision}`);
    return 0;
  },
};
