import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  ConnectResponseSchema,
  StateRequestSchema,
  Task,
} from "../gen/containerd/task/v2/shim_pb.ts";
import { RequestSchema, ResponseSchema } from "../gen/ttrpc/ttrpc_pb.ts";
import { invalidArgument, isKind, kindOf, notFound } from "../core/errdefs.ts";
import { Logger } from "../util/log.ts";
import { encodeFrame, Flags, FrameReader, MAX_MESSAGE_LENGTH } from "./frame.ts";
import { ExportRequestSchema, Transfer } from "../gen/berth/images/v1/transfer_pb.ts";
import { Content } from "../gen/containerd/services/content/v1/content_pb.ts";
import { TtrpcClient } from "./client.ts";
import { type TtrpcContext, TtrpcServer } from "./server.ts";

const quiet = new Logger("error", {}, () => {});

async function tempSocket(): Promise<{ path: string; [Symbol.asyncDispose](): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "ttrpc-" });
  return {
    path: `${dir}/s.sock`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** A raw connection for byte-level checks: send frames, read frames. */
async function rawConn(path: string) {
  const conn = await Deno.connect({ transport: "unix", path });
  const reader = new FrameReader(conn);
  return {
    async send(bytes: Uint8Array) {
      for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    },
    next: () => reader.next(),
    close: () => conn.close(),
  };
}

function requestBytes(service: string, method: string, payload: Uint8Array): Uint8Array {
  return toBinary(RequestSchema, create(RequestSchema, { service, method, payload }));
}

Deno.test("server answers a request with the exact bytes ttrpc expects", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  server.register(Task, {
    connect: (req) => ({ shimPid: 42, taskPid: 7, version: req.id }),
  });
  server.listen(sock.path);
  const c = await rawConn(sock.path);
  try {
    // Request{service, method, payload=ConnectRequest{id:"v2"}} on stream 1, built by hand.
    const enc = new TextEncoder();
    const svc = enc.encode("containerd.task.v2.Task");
    const method = enc.encode("Connect");
    const body = [0x0a, 0x02, ...enc.encode("v2")];
    const req = [
      0x0a,
      svc.length,
      ...svc,
      0x12,
      method.length,
      ...method,
      0x1a,
      body.length,
      ...body,
    ];
    await c.send(new Uint8Array([0, 0, 0, req.length, 0, 0, 0, 1, 1, 0, ...req]));
    const f = await c.next();
    assert.equal(f?.streamId, 1);
    assert.equal(f?.type, 2);
    assert.equal(f?.flags, 0);
    // Response{status: {} (OK, present but empty), payload: ConnectResponse{42, 7, "v2"}}.
    const reply = [0x08, 42, 0x10, 7, 0x1a, 2, ...enc.encode("v2")];
    assert.deepEqual([...f!.payload!], [0x0a, 0x00, 0x12, reply.length, ...reply]);
  } finally {
    c.close();
    server.close();
  }
});

Deno.test("server refuses even stream ids, unknown services and methods, oversized and bad frames", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  server.register(Task, { connect: () => ({ shimPid: 1 }) });
  server.listen(sock.path);
  const c = await rawConn(sock.path);
  const status = async () => {
    const f = await c.next();
    const r = fromBinary(ResponseSchema, f!.payload!);
    return { id: f!.streamId, code: r.status?.code, message: r.status?.message };
  };
  try {
    await c.send(
      encodeFrame(2, 1, requestBytes("containerd.task.v2.Task", "Connect", new Uint8Array())),
    );
    assert.deepEqual(await status(), {
      id: 2,
      code: 3,
      message: "StreamID must be odd for client initiated streams",
    });
    await c.send(encodeFrame(3, 1, requestBytes("no.Such", "Connect", new Uint8Array())));
    assert.deepEqual(await status(), { id: 3, code: 12, message: "service no.Such" });
    await c.send(
      encodeFrame(5, 1, requestBytes("containerd.task.v2.Task", "State", new Uint8Array())),
    );
    assert.deepEqual(await status(), { id: 5, code: 12, message: "method State" });
    await c.send(encodeFrame(7, 1, new Uint8Array([0xff, 0xff])));
    const bad = await status();
    assert.equal(bad.id, 7);
    assert.equal(bad.code, 3);
    assert.match(bad.message!, /^unmarshal request error: /);
    // The payload of the method itself does not decode: INTERNAL, as ttrpc answers.
    await c.send(
      encodeFrame(
        9,
        1,
        requestBytes("containerd.task.v2.Task", "Connect", new Uint8Array([0x0a, 0x09])),
      ),
    );
    const badPayload = await status();
    assert.equal(badPayload.code, 13);
    assert.match(badPayload.message!, /^ttrpc: error unmarshalling payload: /);
    // A frame over 4 MiB is skipped and refused on its stream; the connection keeps working.
    const big = new Uint8Array(10 + MAX_MESSAGE_LENGTH + 1);
    new DataView(big.buffer).setUint32(0, MAX_MESSAGE_LENGTH + 1);
    new DataView(big.buffer).setUint32(4, 11);
    big[8] = 1;
    await c.send(big);
    assert.deepEqual(await status(), {
      id: 11,
      code: 8,
      message: `message length ${
        MAX_MESSAGE_LENGTH + 1
      } exceed maximum message size of ${MAX_MESSAGE_LENGTH}`,
    });
    // A data frame for a stream that is not open is refused on its id, as ttrpc 1.2 does.
    await c.send(encodeFrame(13, 3, new Uint8Array([1, 2, 3])));
    assert.deepEqual(await status(), {
      id: 13,
      code: 3,
      message: "StreamID is no longer active",
    });
    // Frames of unknown types are ignored.
    await c.send(encodeFrame(13, 9, new Uint8Array([1, 2, 3])));
    await c.send(
      encodeFrame(15, 1, requestBytes("containerd.task.v2.Task", "Connect", new Uint8Array())),
    );
    const ok = await c.next();
    assert.equal(ok!.streamId, 15);
    const res = fromBinary(ResponseSchema, ok!.payload!);
    assert.equal(res.status?.code, 0);
    assert.equal(fromBinary(ConnectResponseSchema, res.payload).shimPid, 1);
  } finally {
    c.close();
    server.close();
  }
});

Deno.test("client and server: typed calls, metadata, namespace and errors by kind", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  const seen: { ns?: string; md?: string[] } = {};
  server.register(Task, {
    connect: (_req, ctx: TtrpcContext) => {
      seen.ns = ctx.namespace();
      seen.md = [...(ctx.metadata.get("x-trace") ?? [])];
      return { shimPid: Deno.pid, version: "2" };
    },
    state: (req) => {
      throw notFound(`process "${req.execId}"`);
    },
    kill: () => {
      throw new Error("runc did something odd");
    },
  });
  server.listen(sock.path);
  const client = await TtrpcClient.connect(`unix://${sock.path}`, { namespace: "testns" });
  try {
    const r = await client.call(Task, "connect", { id: "c1" }, {
      metadata: { "X-Trace": ["a", "b"] },
    });
    assert.equal(r.shimPid, Deno.pid);
    assert.equal(r.version, "2");
    assert.deepEqual(seen, { ns: "testns", md: ["a", "b"] });

    const err = await client.call(Task, "state", { id: "c1", execId: "e1" }).catch((e) => e);
    assert.ok(isKind(err, "not_found"));
    assert.equal(err.message, 'process "e1": not found');

    const unknown = await client.call(Task, "kill", { id: "c1" }).catch((e) => e);
    assert.equal(kindOf(unknown), "unknown");
    assert.equal(unknown.message, "runc did something odd");

    const unimpl = await client.call(Task, "pids", { id: "c1" }).catch((e) => e);
    assert.equal(kindOf(unimpl), "not_implemented");
    assert.equal(unimpl.message, "method Pids");
  } finally {
    client.close();
    await client.done;
    server.close();
  }
});

Deno.test("a call without a namespace is refused when the handler requires one", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  server.register(Task, { connect: (_r, ctx) => ({ version: ctx.namespace() }) });
  server.listen(sock.path);
  const plain = await TtrpcClient.connect(sock.path);
  const grpcKey = await TtrpcClient.connect(sock.path, {
    metadata: { "containerd-namespace": "fromgrpc" },
  });
  try {
    const err = await plain.call(Task, "connect", {}).catch((e) => e);
    assert.ok(isKind(err, "failed_precondition"));
    assert.equal(err.message, "namespace is required: failed precondition");
    assert.equal((await grpcKey.call(Task, "connect", {})).version, "fromgrpc");
    const bad = await plain.call(Task, "connect", {}, {
      metadata: { "containerd-namespace-ttrpc": "no/slash" },
    }).catch((e) => e);
    assert.ok(isKind(bad, "invalid_argument"));
  } finally {
    plain.close();
    grpcKey.close();
    await Promise.all([plain.done, grpcKey.done]);
    server.close();
  }
});

Deno.test("concurrent calls on one connection are multiplexed and answered out of order", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  const order: string[] = [];
  server.register(Task, {
    connect: async (req) => {
      await new Promise((r) => setTimeout(r, Number(req.id)));
      order.push(req.id);
      return { version: req.id };
    },
  });
  server.listen(sock.path);
  const client = await TtrpcClient.connect(sock.path);
  try {
    const delays = ["80", "10", "40", "0", "60"];
    const replies = await Promise.all(delays.map((id) => client.call(Task, "connect", { id })));
    assert.deepEqual(replies.map((r) => r.version), delays);
    assert.deepEqual(order, ["0", "10", "40", "60", "80"]);
    // Many at once.
    const many = await Promise.all(
      Array.from({ length: 200 }, (_, i) => client.call(Task, "connect", { id: String(i % 3) })),
    );
    assert.equal(many.length, 200);
    assert.ok(many.every((r, i) => r.version === String(i % 3)));
  } finally {
    client.close();
    await client.done;
    server.close();
  }
});

Deno.test("client stream ids are odd and increasing, with the timeout sent in nanoseconds", async () => {
  await using sock = await tempSocket();
  const listener = Deno.listen({ transport: "unix", path: sock.path });
  const client = await TtrpcClient.connect(sock.path, { namespace: "ns1" });
  const conn = await listener.accept();
  try {
    const reader = new FrameReader(conn);
    const calls = [
      client.call(Task, "connect", { id: "a" }, { timeout: 1500 }),
      client.call(Task, "state", { id: "b", execId: "x" }),
    ];
    const f1 = await reader.next();
    const f2 = await reader.next();
    assert.deepEqual([f1!.streamId, f2!.streamId, f1!.type, f2!.type], [1, 3, 1, 1]);
    const r1 = fromBinary(RequestSchema, f1!.payload!);
    assert.equal(r1.service, "containerd.task.v2.Task");
    assert.equal(r1.method, "Connect");
    assert.equal(r1.timeoutNano, 1_500_000_000n);
    assert.deepEqual(r1.metadata.map((kv) => [kv.key, kv.value]), [[
      "containerd-namespace-ttrpc",
      "ns1",
    ]]);
    const r2 = fromBinary(RequestSchema, f2!.payload!);
    assert.equal(r2.timeoutNano, 0n);
    assert.deepEqual(fromBinary(StateRequestSchema, r2.payload).execId, "x");
    // Answer the second first, with a bare status-less response (as a nil status means OK).
    const reply = (id: number, payload: Uint8Array) =>
      conn.write(encodeFrame(id, 2, toBinary(ResponseSchema, create(ResponseSchema, { payload }))));
    await reply(3, new Uint8Array());
    await reply(1, toBinary(ConnectResponseSchema, create(ConnectResponseSchema, { shimPid: 5 })));
    const [c, s] = await Promise.all(calls);
    assert.equal((c as { shimPid: number }).shimPid, 5);
    assert.equal((s as { id: string }).id, "");
  } finally {
    client.close();
    await client.done;
    conn.close();
    listener.close();
  }
});

Deno.test("timeouts and cancellation fail the call; the server sees its signal", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  let aborted: Promise<unknown> | undefined;
  server.register(Task, {
    connect: (_req, ctx) => {
      aborted = new Promise((r) =>
        ctx.signal.addEventListener("abort", () => r(ctx.signal.reason))
      );
      return new Promise((r) => setTimeout(() => r({ version: "late" }), 1000));
    },
    state: () => ({ id: "ok" }),
  });
  server.listen(sock.path);
  const client = await TtrpcClient.connect(sock.path);
  try {
    const t0 = Date.now();
    const err = await client.call(Task, "connect", {}, { timeout: 50 }).catch((e) => e);
    assert.ok(isKind(err, "deadline_exceeded"), String(err));
    assert.ok(Date.now() - t0 < 900, "the client gave up on its own deadline");
    await aborted; // The server-side deadline fired too.
    const ac = new AbortController();
    const p = client.call(Task, "connect", {}, { signal: ac.signal });
    ac.abort();
    assert.ok(isKind(await p.catch((e) => e), "canceled"));
    // The connection is still fine; late replies to the dropped calls are ignored.
    await new Promise((r) => setTimeout(r, 1050));
    assert.equal((await client.call(Task, "state", {})).id, "ok");
  } finally {
    client.close();
    await client.done;
    await server.shutdown();
  }
});

Deno.test("a peer that disappears fails pending and later calls as unavailable", async () => {
  await using sock = await tempSocket();
  const listener = Deno.listen({ transport: "unix", path: sock.path });
  const client = await TtrpcClient.connect(sock.path);
  const conn = await listener.accept();
  const pending = client.call(Task, "connect", {}).catch((e) => e);
  await new FrameReader(conn).next(); // The request arrived; now the server dies.
  conn.close();
  listener.close();
  const err = await pending;
  assert.ok(isKind(err, "unavailable"), String(err));
  assert.equal(err.message, `ttrpc connection to ${sock.path} closed: unavailable`);
  await client.done;
  assert.ok(client.closed);
  const later = await client.call(Task, "connect", {}).catch((e) => e);
  assert.ok(isKind(later, "unavailable"));
  client.close();
});

Deno.test("connecting to a missing socket is a clear unavailable error", async () => {
  await using sock = await tempSocket();
  const err = await TtrpcClient.connect(sock.path).catch((e) => e);
  assert.ok(isKind(err, "unavailable"));
  assert.match(err.message, new RegExp(`^cannot connect to ttrpc server at ${sock.path}: `));
});

Deno.test("shutdown waits for running calls, and the client's idle connection does not hold the process", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  server.register(Task, {
    shutdown: async () => {
      await new Promise((r) => setTimeout(r, 100));
      return {};
    },
    connect: () => ({ shimPid: 9 }),
  });
  server.listen(sock.path);
  // A child process makes one call and never closes its client: it must still exit.
  const script = `
    import { TtrpcClient } from ${JSON.stringify(new URL("./client.ts", import.meta.url).href)};
    import { Task } from ${
    JSON.stringify(new URL("../gen/containerd/task/v2/shim_pb.ts", import.meta.url).href)
  };
    const c = await TtrpcClient.connect(${JSON.stringify(sock.path)});
    console.log((await c.call(Task, "connect", {})).shimPid);
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    cwd: new URL("../..", import.meta.url).pathname,
  }).spawn();
  const w = out.stdin.getWriter();
  await w.write(new TextEncoder().encode(script));
  await w.close();
  const timer = setTimeout(() => out.kill(), 10_000);
  const res = await out.output();
  clearTimeout(timer);
  assert.equal(res.code, 0, new TextDecoder().decode(res.stderr));
  assert.equal(new TextDecoder().decode(res.stdout).trim(), "9");

  const client = await TtrpcClient.connect(sock.path);
  const running = client.call(Task, "shutdown", {});
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(server.active, 1);
  await server.shutdown();
  assert.deepEqual(Object.keys(await running), ["$typeName"]);
  await client.done;
  assert.ok(client.closed);
  await assert.rejects(Deno.connect({ transport: "unix", path: sock.path }));
  assert.equal(await Deno.lstat(sock.path).then(() => true, () => false), false);
});

// Streaming (ttrpc 1.2). Transfer.Export is server-streaming, Transfer.Import
// client-streaming and Content.Write bidi; the handlers here are test doubles
// of those methods, only their message shapes are used.

const enc = (t: string) => new TextEncoder().encode(t);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("server streaming: data frames, then an empty data frame flagged remote-closed + no-data", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  server.register(Transfer, {
    export: async (req, _ctx, send) => {
      for (const n of req.names) await send({ data: enc(n) });
    },
  });
  server.listen(sock.path);
  // On the wire, as containerd/ttrpc's client sends and expects it.
  const c = await rawConn(sock.path);
  try {
    const payload = toBinary(
      ExportRequestSchema,
      create(ExportRequestSchema, { names: ["a", "bc"] }),
    );
    await c.send(
      encodeFrame(
        1,
        1,
        requestBytes("berth.images.v1.Transfer", "Export", payload),
        Flags.remoteClosed,
      ),
    );
    const frames = [await c.next(), await c.next(), await c.next()];
    assert.deepEqual(frames.map((f) => [f!.streamId, f!.type, f!.flags]), [[1, 3, 0], [1, 3, 0], [
      1,
      3,
      5,
    ]]);
    assert.deepEqual([...frames[0]!.payload!], [0x0a, 1, 0x61]);
    assert.deepEqual([...frames[2]!.payload!], []);
  } finally {
    c.close();
  }
  // And through the client.
  const client = await TtrpcClient.connect(sock.path);
  try {
    const got: string[] = [];
    for await (const m of client.serverStream(Transfer, "export", { names: ["x", "y", "z"] })) {
      got.push(dec(m.data));
    }
    assert.deepEqual(got, ["x", "y", "z"]);
    // An empty stream ends at once.
    const none = [];
    for await (const m of client.serverStream(Transfer, "export", {})) none.push(m);
    assert.deepEqual(none, []);
    // Unary calls still work on the same connection.
    const unimpl = await client.openStream(Transfer, "pull", {}).recv().catch((e) => e);
    assert.equal(kindOf(unimpl), "not_implemented");
    assert.equal(unimpl.message, "method Pull");
  } finally {
    client.close();
    await client.done;
    server.close();
  }
});

Deno.test("client streaming: messages until the half-close, then the Response carries the result", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  server.register(Transfer, {
    import: async (reqs, ctx) => {
      let all = "";
      for await (const r of reqs) all += dec(r.data);
      return { images: [{ name: `${all}@${ctx.namespace()}` }] };
    },
  });
  server.listen(sock.path);
  const client = await TtrpcClient.connect(sock.path, { namespace: "ns1" });
  try {
    const s = client.openStream(Transfer, "import");
    for (const part of ["ab", "cd", "ef"]) await s.send({ data: enc(part) });
    await s.closeSend();
    const res = await s.recv();
    assert.equal(res?.images[0]?.name, "abcdef@ns1");
    assert.equal(await s.recv(), undefined, "the stream ends after the result");
    await assert.rejects(s.send({}), /cannot send after closeSend/);
  } finally {
    client.close();
    await client.done;
    server.close();
  }
  // Byte level: the request is flagged remote-open and the close is an empty data frame.
  const server2 = new TtrpcServer({ log: quiet });
  await using sock2 = await tempSocket();
  server2.register(Transfer, {
    import: async (reqs) => {
      let n = 0;
      for await (const _ of reqs) n++;
      return { images: [{ name: String(n) }] };
    },
  });
  server2.listen(sock2.path);
  const c = await rawConn(sock2.path);
  try {
    await c.send(
      encodeFrame(
        1,
        1,
        requestBytes("berth.images.v1.Transfer", "Import", new Uint8Array()),
        Flags.remoteOpen,
      ),
    );
    await c.send(encodeFrame(1, 3, new Uint8Array([0x0a, 1, 0x61])));
    // A zero-length data frame is an empty message, not the end (PROTOCOL.md).
    await c.send(encodeFrame(1, 3, new Uint8Array()));
    await c.send(encodeFrame(1, 3, new Uint8Array(), Flags.remoteClosed | Flags.noData));
    const f = await c.next();
    assert.deepEqual([f!.streamId, f!.type, f!.flags], [1, 2, 0]);
    const res = fromBinary(ResponseSchema, f!.payload!);
    assert.equal(res.status?.code, 0);
    assert.deepEqual([...res.payload], [0x0a, 3, 0x0a, 1, 0x32]); // images: [{name: "2"}]
    // Data after the stream finished is refused.
    await c.send(encodeFrame(1, 3, new Uint8Array([0x0a, 0])));
    const late = fromBinary(ResponseSchema, (await c.next())!.payload!);
    assert.deepEqual([late.status?.code, late.status?.message], [
      3,
      "StreamID is no longer active",
    ]);
  } finally {
    c.close();
    server2.close();
  }
});

Deno.test("bidi streaming: both sides send; the server still answers after the client half-closes", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  server.register(Content, {
    write: async (reqs, _ctx, send) => {
      let offset = 0n;
      for await (const r of reqs) {
        offset += BigInt(r.data.length);
        await send({ offset });
      }
      await send({ offset, digest: "end" });
    },
  });
  server.listen(sock.path);
  const client = await TtrpcClient.connect(sock.path);
  try {
    const s = client.openStream(Content, "write");
    await s.send({ data: enc("abc") });
    assert.equal((await s.recv())?.offset, 3n);
    await s.send({ data: enc("de") });
    assert.equal((await s.recv())?.offset, 5n);
    await s.closeSend();
    const last = await s.recv();
    assert.deepEqual([last?.offset, last?.digest], [5n, "end"]);
    assert.equal(await s.recv(), undefined);
  } finally {
    client.close();
    await client.done;
    server.close();
  }
});

Deno.test("an error mid-stream reaches the client after the messages sent before it", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  server.register(Transfer, {
    export: async (req, _ctx, send) => {
      await send({ data: enc("one") });
      await send({ data: enc("two") });
      throw notFound(`image "${req.names[0]}"`);
    },
    import: async (reqs) => {
      for await (const r of reqs) if (r.baseName === "bad") throw invalidArgument("chunk is bad");
      return {};
    },
  });
  server.listen(sock.path);
  const client = await TtrpcClient.connect(sock.path);
  try {
    const got: string[] = [];
    const err = await (async () => {
      for await (const m of client.serverStream(Transfer, "export", { names: ["x"] })) {
        got.push(dec(m.data));
      }
    })().catch((e) => e);
    assert.deepEqual(got, ["one", "two"]);
    assert.ok(isKind(err, "not_found"), String(err));
    assert.equal(err.message, 'image "x": not found');
    // A client-streaming handler fails before the client finished sending.
    const s = client.openStream(Transfer, "import");
    await s.send({ baseName: "bad" });
    const bad = await s.recv().catch((e) => e);
    assert.ok(isKind(bad, "invalid_argument"), String(bad));
    assert.equal(bad.message, "chunk is bad: invalid argument");
    // The stream is over: a later send is refused with the server's error.
    await assert.rejects(s.send({}), /chunk is bad/);
    // A message that does not decode is refused as invalid.
    const raw = await rawConn(sock.path);
    try {
      await raw.send(
        encodeFrame(
          1,
          1,
          requestBytes("berth.images.v1.Transfer", "Import", new Uint8Array()),
          Flags.remoteOpen,
        ),
      );
      await raw.send(encodeFrame(1, 3, new Uint8Array([0x0a, 0x09])));
      const res = fromBinary(ResponseSchema, (await raw.next())!.payload!);
      assert.equal(res.status?.code, 3);
      assert.match(res.status!.message, /^data handling error: /);
    } finally {
      raw.close();
    }
  } finally {
    client.close();
    await client.done;
    server.close();
  }
});

Deno.test("a dropped connection cancels the server's streams; the client's streams fail as unavailable", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  const events: string[] = [];
  let started!: () => void;
  const bothStarted = new Promise<void>((r) => {
    let n = 0;
    started = () => ++n === 2 && r();
  });
  const ended: Promise<void>[] = [];
  let endExport!: () => void;
  let endImport!: () => void;
  ended.push(new Promise((r) => endExport = r), new Promise((r) => endImport = r));
  server.register(Transfer, {
    export: async (_req, ctx, send) => {
      started();
      try {
        while (!ctx.signal.aborted) {
          await send({ data: enc("tick") });
          await new Promise((r) => setTimeout(r, 5));
        }
        events.push("export saw its signal");
      } catch {
        events.push("export send failed");
      } finally {
        endExport();
      }
    },
    import: async (reqs) => {
      started();
      try {
        for await (const _ of reqs) { /* wait */ }
        events.push("import ended normally");
      } catch (e) {
        events.push(`import: ${kindOf(e)}`);
      } finally {
        endImport();
      }
      return {};
    },
  });
  server.listen(sock.path);
  const client = await TtrpcClient.connect(sock.path);
  const ticks = client.openStream(Transfer, "export", {});
  const upload = client.openStream(Transfer, "import");
  await upload.send({ data: enc("x") });
  await ticks.recv();
  await bothStarted;
  client.close();
  await Promise.all(ended);
  assert.equal(events.length, 2);
  assert.ok(events.includes("import: canceled"), events.join());
  assert.ok(events.includes("export saw its signal") || events.includes("export send failed"));
  await client.done;
  server.close();

  // The other way round: the server goes away under the client's streams.
  const listener = Deno.listen({ transport: "unix", path: `${sock.path}.2` });
  const c2 = await TtrpcClient.connect(`${sock.path}.2`);
  const conn = await listener.accept();
  const s = c2.openStream(Transfer, "export", {});
  await new FrameReader(conn).next();
  conn.close();
  listener.close();
  const err = await s.recv().catch((e) => e);
  assert.ok(isKind(err, "unavailable"), String(err));
  await c2.done;
  c2.close();
});

Deno.test("a client can cancel a stream, time it out, and its connection does not hold the process", async () => {
  await using sock = await tempSocket();
  const server = new TtrpcServer({ log: quiet });
  server.register(Transfer, {
    export: async (_req, ctx, send) => {
      await send({ data: enc("first") });
      await new Promise((r) => ctx.signal.addEventListener("abort", r, { once: true }));
    },
  });
  server.listen(sock.path);
  const client = await TtrpcClient.connect(sock.path);
  try {
    const s = client.openStream(Transfer, "export", {});
    assert.equal(dec((await s.recv())!.data), "first");
    const waiting = s.recv().catch((e) => e);
    s.cancel();
    assert.equal(kindOf(await waiting), "canceled");
    const ac = new AbortController();
    const s2 = client.openStream(Transfer, "export", {}, { signal: ac.signal });
    await s2.recv();
    ac.abort();
    assert.equal(kindOf(await s2.recv().catch((e) => e)), "canceled");
    const s3 = client.openStream(Transfer, "export", {}, { timeout: 50 });
    await s3.recv();
    assert.equal(kindOf(await s3.recv().catch((e) => e)), "deadline_exceeded");
    // Nothing is pending now: the (unref'd) connection must not keep the test alive,
    // and the connection still serves calls.
    const again = client.openStream(Transfer, "export", {}, { timeout: 50 });
    assert.equal(dec((await again.recv())!.data), "first");
  } finally {
    client.close();
    await client.done;
    server.close();
  }
});
