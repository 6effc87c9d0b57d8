// usage: prof.ts SOCK REF : prints every progress message with timestamps
import { Client } from "/work/main/src/cmd/cli/client.ts";
import { Transfer } from "/work/main/src/gen/berth/images/v1/transfer_pb.ts";
const c = new Client({ address: Deno.args[0]!, namespace: "prof" });
const t0 = performance.now();
for await (const m of c.stream(Transfer, "pull", { reference: Deno.args[1]! })) {
  console.log((performance.now()-t0).toFixed(0), m.phase, m.blobs.map(b => `${b.digest.slice(7,15)}:${b.state}:${b.offset}`).join(" "), m.image ? "IMAGE" : "");
}
console.log("total", (performance.now()-t0).toFixed(0));
Deno.exit(0);
