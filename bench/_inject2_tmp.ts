import * as grpc from "@grpc/grpc-js";
import { addService } from "../src/api/grpc.ts";
import { Version } from "../src/gen/containerd/services/version/v1/version_pb.ts";
import { Logger } from "../src/util/log.ts";
import { listenFiltered } from "./_cg_tmp.ts";
const server = new grpc.Server();
addService(server, Version, { version: () => Promise.resolve({ version: "x", revision: "y" }) }, new Logger("warn"));
await listenFiltered(server, grpc.ServerCredentials.createInsecure(), Deno.args[0]!);
