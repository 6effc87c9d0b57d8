import assert from "node:assert/strict";
import { Namespaces } from "../gen/containerd/services/namespaces/v1/namespace_pb.ts";
import { Transfer } from "../gen/berth/images/v1/transfer_pb.ts";
import { Content } from "../gen/containerd/services/content/v1/content_pb.ts";
import { isKind, notFound } from "../core/errdefs.ts";
import { Exchange } from "../events/exchange.ts";
import { Logger } from "../util/log.ts";
import { TtrpcClient } from "../ttrpc/client.ts";
import { GrpcServer } from "./grpc.ts";
import { servicesOf } from "./service.ts";
import { startTtrpcServer } from "./ttrpc_server.ts";

const quiet = new Logger("error", {}, () => {});

/**
 * The same handler objects, added to a gRPC server as the plugins do, answer
 * on the daemon's ttrpc socket: metadata, streaming kinds and errors.
 */
Deno.test("services added to the gRPC server are served on the ttrpc socket too", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-ttrpc-api-" });
  const server = new GrpcServer({ log: quiet });
  const seen: string[] = [];
  server.addService(Namespaces, {
    // Not async: a handler that throws synchronously is answered like a rejection.
    get(req, ctx) {
      seen.push(`${ctx.namespaceOrUndefined ?? "-"} ${ctx.lease ?? "-"}`);
      if (req.name === "missing") throw notFound(`namespace "${req.name}"`);
      return Promise.resolve({ namespace: { name: req.name, labels: { ns: ctx.namespace() } } });
    },
  });
  server.addService(Content, {
    async list(req, ctx, send) {
      for (const f of req.filters) await send({ info: [{ digest: `${ctx.namespace()}/${f}` }] });
    },
    async write(reqs, _ctx, send) {
      for await (const r of reqs) await send({ offset: BigInt(r.data.length) });
    },
  });
  server.addService(Transfer, {
    async import(chunks) {
      let n = 0;
      for await (const c of chunks) n += c.data.length;
      return { images: [{ name: `bytes=${n}` }] };
    },
  });
  assert.deepEqual(servicesOf(server).map((s) => s.service.typeName), [
    "containerd.services.namespaces.v1.Namespaces",
    "containerd.services.content.v1.Content",
    "berth.images.v1.Transfer",
  ]);
  const path = `${dir}/berth.sock.ttrpc`;
  const ttrpc = await startTtrpcServer(path, new Exchange(), quiet, servicesOf(server));
  const c = await TtrpcClient.connect(path, { namespace: "ns1" });
  try {
    const r = await c.call(Namespaces, "get", { name: "a" }, {
      metadata: { "containerd-lease": "l1" },
    });
    assert.deepEqual(r.namespace?.labels, { ns: "ns1" });
    // The gRPC key works too (a client copying gRPC metadata as is).
    const c2 = await TtrpcClient.connect(path, { metadata: { "containerd-namespace": "ns2" } });
    await c2.call(Namespaces, "get", { name: "b" });
    c2.close();
    assert.deepEqual(seen, ["ns1 l1", "ns2 -"]);
    const err = await c.call(Namespaces, "get", { name: "missing" }).catch((e) => e);
    assert.ok(isKind(err, "not_found"), String(err));
    assert.equal(err.message, 'namespace "missing": not found');
    const unimpl = await c.call(Namespaces, "list", {}).catch((e) => e);
    assert.ok(isKind(unimpl, "not_implemented"), String(unimpl));

    const listed: string[] = [];
    for await (const m of c.serverStream(Content, "list", { filters: ["x", "y"] })) {
      listed.push(m.info[0]!.digest);
    }
    assert.deepEqual(listed, ["ns1/x", "ns1/y"]);

    const w = c.openStream(Content, "write");
    await w.send({ data: new Uint8Array(3) });
    assert.equal((await w.recv())?.offset, 3n);
    await w.closeSend();
    assert.equal(await w.recv(), undefined);

    const up = c.openStream(Transfer, "import");
    await up.send({ data: new Uint8Array(5) });
    await up.send({ data: new Uint8Array(7) });
    await up.closeSend();
    assert.equal((await up.recv())?.images[0]?.name, "bytes=12");
  } finally {
    c.close();
    await c.done;
    ttrpc.close();
    await server.shutdown(0);
    await Deno.remove(dir, { recursive: true });
  }
});
