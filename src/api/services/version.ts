import { Version as VersionService } from "../../gen/containerd/services/version/v1/version_pb.ts";
import { REVISION, VERSION } from "../../version.ts";
import type { Plugin } from "../plugins.ts";

export const versionPlugin: Plugin = {
  type: "io.containerd.grpc.v1",
  id: "version",
  register({ server }) {
    server.add(VersionService, {
      version: () => Promise.resolve({ version: VERSION, revision: REVISION }),
    });
  },
};
