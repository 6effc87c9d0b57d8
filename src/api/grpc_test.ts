/**
 * berth's gRPC server against an independent client (grpc-js, on its own
 * HTTP/2 stack): every method kind, statuses, metadata, deadlines,
 * cancellation, messages larger than the flow-control windows, and many
 * calls at once on one connection. tests/ drives it with Debian's ctr.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Namespaces } from "../gen/containerd/services/namespaces/v1/namespace_pb.ts";
import { Content } from "../gen/containerd/services/content/v1/content_pb.ts";
import { Transfer } from "../gen/berth/images/v1/transfer_pb.ts";
import { notFound } from "../core/errdefs.ts";
import { Logger } from "../util/log.ts";
import { grpcDefinition } from "../../tests/_grpc.ts";
import { GrpcServer, parseTimeout, percentEncode } from "./grpc.ts";

const quiet = new Logger("error", {}, () => {});

type Any = Record<string, (...a: unknown[]) => unknown>;

async function withServer(
  setup: (s: GrpcServer) => void,
  body: (clients: { ns: Any; content: Any; transfer: Any }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "berth-grpc-" });
  const server = new GrpcServer({ log: quiet, maxReceiveMessageLength: 4 << 20 });
  setup(server);
  server.listen(`${dir}/s.sock`);
  const make = (svc: Parameters<typeof grpcDefinition>[0], name: string) =>
    new (grpc.makeGenericClientConstructor(grpcDefinition(svc), name))(
      `unix:${dir}/s.sock`,
      grpc.credentials.createInsecure(),
      { "grpc.max_receive_message_length": 64 << 20 },
    ) as unknown as Any & grpc.Client;
  const ns = make(Namespaces, "Namespaces");
  const content = make(Content, "Content");
  const transfer = make(Transfer, "Transfer");
  try {
    await body({ ns, content, transfer });
  } finally {
    ns.close();
    content.close();
    transfer.close();
    await server.shutdown(1000);
    await Deno.remove(dir, { recursive: true });
  }
}

function unary(c: Any, method: string, req: unknown, md?: grpc.Metadata, opts?: grpc.CallOptions) {
  return new Promise<Record<string, unknown>>((resolve, reject) =>
    c[method]!(
      req,
      md ?? new grpc.Metadata(),
      opts ?? {},
      (err: grpc.ServiceError | null, res: Record<string, unknown>) =>
        err ? reject(err) : resolve(res),
    )
  );
}

function collect(call: grpc.ClientReadableStream<unknown>): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const got: unknown[] = [];
    call.on("data", (m) => got.push(m));
    call.on("error", reject);
    call.on("end", () => resolve(got));
  });
}

Deno.test("unary calls: the handler sees the request and metadata; errors carry their status", async () => {
  await withServer((s) => {
    s.addService(Namespaces, {
      get(req, ctx) {
        if (req.name === "missing") throw notFound(`namespace "${req.name}"`);
        if (req.name === "boom") throw new Error("ünïcode 100% broken\nline two");
        return Promise.resolve({
          namespace: { name: req.name, labels: { ns: ctx.namespace(), lease: ctx.lease ?? "" } },
        });
      },
    });
  }, async ({ ns }) => {
    const md = new grpc.Metadata();
    md.set("containerd-namespace", "team-a");
    md.set("containerd-lease", "l1");
    const r = await unary(ns, "get", { name: "x" }, md);
    assert.deepEqual((r.namespace as { labels: unknown }).labels, { ns: "team-a", lease: "l1" });
    const e1 = await unary(ns, "get", { name: "missing" }, md).catch((e) => e);
    assert.equal(e1.code, grpc.status.NOT_FOUND);
    assert.equal(e1.details, 'namespace "missing": not found');
    const e2 = await unary(ns, "get", { name: "boom" }, md).catch((e) => e);
    assert.equal(e2.code, grpc.status.UNKNOWN);
    assert.equal(e2.details, "ünïcode 100% broken\nline two");
    // No namespace header: the handler's own FAILED_PRECONDITION.
    const e3 = await unary(ns, "get", { name: "x" }).catch((e) => e);
    assert.equal(e3.code, grpc.status.FAILED_PRECONDITION);
    // A method the implementation lacks.
    const e4 = await unary(ns, "list", {}, md).catch((e) => e);
    assert.equal(e4.code, grpc.status.UNIMPLEMENTED);
    assert.match(e4.details, /unknown method List for service containerd\.services\.namespaces/);
  });
});

Deno.test("server streams, client streams and bidi streams, with messages past the windows", async () => {
  const big = new Uint8Array(3 << 20).map((_, i) => i * 7);
  await withServer((s) => {
    s.addService(Content, {
      async read(req, _ctx, send) {
        // 3 MiB in 1 MiB messages: more than the client's initial window.
        for (let off = 0; off < big.length; off += 1 << 20) {
          await send({ offset: BigInt(off), data: big.subarray(off, off + (1 << 20)) });
        }
        if (req.digest === "fail-late") throw notFound("late");
      },
      async write(reqs, _ctx, send) {
        let total = 0;
        for await (const r of reqs) {
          total += r.data.length;
          await send({ offset: BigInt(total) });
        }
      },
    });
    s.addService(Transfer, {
      async import(chunks) {
        let n = 0, sum = 0;
        for await (const c of chunks) {
          n += c.data.length;
          for (const b of c.data) sum = (sum + b) % 65521;
        }
        return { images: [{ name: `bytes=${n} sum=${sum}` }] };
      },
    });
  }, async ({ content, transfer }) => {
    const md = new grpc.Metadata();
    const got = await collect(
      content.read!({ digest: "d" }, md) as grpc.ClientReadableStream<unknown>,
    );
    assert.equal(got.length, 3);
    const joined = new Uint8Array(big.length);
    for (const m of got as Array<{ offset: bigint; data: Uint8Array }>) {
      joined.set(m.data, Number(m.offset));
    }
    assert.deepEqual(joined, big);

    // An error after messages: the messages arrive, then the status.
    const late = content.read!({ digest: "fail-late" }, md) as grpc.ClientReadableStream<unknown>;
    const err = await collect(late).catch((e) => e);
    assert.equal(err.code, grpc.status.NOT_FOUND);

    // Client streaming: 4 MiB in 256 KiB pieces (past our stream window of 1 MiB).
    const up = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const call = transfer.import!(
        md,
        (e: Error | null, r: Record<string, unknown>) => e ? reject(e) : resolve(r),
      ) as grpc.ClientWritableStream<unknown>;
      for (let i = 0; i < 16; i++) call.write({ data: new Uint8Array(256 << 10).fill(i) });
      call.end();
    });
    let sum = 0;
    for (let i = 0; i < 16; i++) sum = (sum + i * (256 << 10)) % 65521;
    assert.equal((up.images as Array<{ name: string }>)[0]!.name, `bytes=${4 << 20} sum=${sum}`);

    // Bidi: each write answered in turn, then the client half-closes.
    const duplex = content.write!(md) as grpc.ClientDuplexStream<unknown, unknown>;
    const offsets: bigint[] = [];
    const done = new Promise<void>((resolve, reject) => {
      duplex.on("data", (m: { offset: bigint }) => offsets.push(m.offset));
      duplex.on("error", reject);
      duplex.on("end", resolve);
    });
    for (const n of [10, 20, 30]) duplex.write({ data: new Uint8Array(n) });
    duplex.end();
    await done;
    assert.deepEqual(offsets, [10n, 30n, 60n]);
  });
});

Deno.test("deadlines and cancellation reach the handler's signal", async () => {
  const aborted: string[] = [];
  await withServer((s) => {
    s.addService(Namespaces, {
      async get(req, ctx) {
        await new Promise<void>((resolve) => {
          ctx.signal.addEventListener("abort", () => {
            aborted.push(req.name);
            resolve();
          });
        });
        return {};
      },
    });
    s.addService(Content, {
      async list(_req, ctx, send) {
        await send({ info: [{ digest: "first" }] });
        await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
        aborted.push("list");
      },
    });
  }, async ({ ns, content }) => {
    const md = new grpc.Metadata();
    md.set("containerd-namespace", "n");
    const e = await unary(ns, "get", { name: "slow" }, md, { deadline: Date.now() + 150 })
      .catch((e) => e);
    assert.equal(e.code, grpc.status.DEADLINE_EXCEEDED);
    const call = content.list!({}, md) as grpc.ClientReadableStream<unknown>;
    await new Promise<void>((resolve) => call.once("data", () => resolve()));
    call.on("error", () => {});
    call.cancel();
    for (let i = 0; i < 50 && aborted.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(aborted.sort(), ["list", "slow"]);
  });
});

Deno.test("many concurrent calls on one connection", async () => {
  await withServer((s) => {
    s.addService(Namespaces, {
      async get(req) {
        await new Promise((r) => setTimeout(r, Number(req.name) % 7));
        return { namespace: { name: req.name } };
      },
    });
  }, async ({ ns }) => {
    const md = new grpc.Metadata();
    const names = Array.from({ length: 500 }, (_, i) => String(i));
    const res = await Promise.all(names.map((n) => unary(ns, "get", { name: n }, md)));
    assert.deepEqual(res.map((r) => (r.namespace as { name: string }).name), names);
  });
});

Deno.test("an oversized request is refused with RESOURCE_EXHAUSTED and the connection goes on", async () => {
  await withServer((s) => {
    s.addService(Transfer, {
      async import(chunks) {
        for await (const _ of chunks) { /* drain */ }
        return {};
      },
    });
    s.addService(Namespaces, { get: (req) => Promise.resolve({ namespace: { name: req.name } }) });
  }, async ({ transfer, ns }) => {
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const call = transfer.import!(
        new grpc.Metadata(),
        (e: grpc.ServiceError) => resolve(e),
      ) as grpc.ClientWritableStream<unknown>;
      call.write({ data: new Uint8Array(5 << 20) });
      call.end();
    });
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(err.details, /larger than max/);
    const r = await unary(ns, "get", { name: "still" });
    assert.equal((r.namespace as { name: string }).name, "still");
  });
});

Deno.test("grpc-timeout and grpc-message encodings", () => {
  assert.equal(parseTimeout("100m"), 100);
  assert.equal(parseTimeout("5S"), 5000);
  assert.equal(parseTimeout("2M"), 120_000);
  assert.equal(parseTimeout("1H"), 3_600_000);
  assert.equal(parseTimeout("3000u"), 3);
  assert.equal(parseTimeout("123456789S"), undefined); // more than 8 digits
  assert.equal(parseTimeout("10x"), undefined);
  assert.equal(percentEncode("plain text: ok"), "plain text: ok");
  assert.equal(percentEncode("50% é\n"), "50%25 %C3%A9%0A");
});
