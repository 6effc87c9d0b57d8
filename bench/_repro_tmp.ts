import * as grpc from "@grpc/grpc-js";
import { grpcDefinition } from "/work/main/src/api/grpc.ts";
import { Version } from "/work/main/src/gen/containerd/services/version/v1/version_pb.ts";
const sock = Deno.args[0]!;
const conc = Number(Deno.args[1] ?? 64);
for (let round = 0; round < 6; round++) {
  const Ctor = grpc.makeGenericClientConstructor(grpcDefinition(Version), "Version");
  const client = new Ctor(`unix:${sock}`, grpc.credentials.createInsecure());
  const call = () => new Promise<void>((res, rej) => (client as any).version({}, (e: any) => e ? rej(e) : res()));
  let done = 0; const end = performance.now() + 2000;
  try {
    await Promise.all(Array.from({ length: conc }, async () => { while (performance.now() < end) { await call(); done++; } }));
  } catch (e) { console.log("round", round, "error", String(e)); }
  client.close();
  console.log("round", round, done);
}
