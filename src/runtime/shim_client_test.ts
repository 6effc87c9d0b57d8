import assert from "node:assert/strict";
import { Task } from "../gen/containerd/task/v2/shim_pb.ts";
import { TtrpcServer } from "../ttrpc/server.ts";
import { Logger } from "../util/log.ts";
import { ShimConnectionPool } from "./shim_client.ts";

const quiet = new Logger("error", {}, () => {});

/**
 * A real ttrpc server standing in for a shim: Connect answers the caller's
 * namespace (as `version`) and which connection the call came on (calls
 * without a deadline get their connection's own abort signal).
 */
async function fakeShim() {
  const dir = await Deno.makeTempDir({ prefix: "shim-client-" });
  const path = `${dir}/shim.sock`;
  const conns: AbortSignal[] = [];
  const shutdowns: string[] = [];
  const server = new TtrpcServer({ log: quiet });
  server.register(Task, {
    connect: (req, ctx) => {
      if (!conns.includes(ctx.signal)) conns.push(ctx.signal);
      return {
        shimPid: conns.indexOf(ctx.signal),
        taskPid: 0,
        version: `${ctx.namespaceOrUndefined}/${req.id}`,
      };
    },
    shutdown: (req) => {
      shutdowns.push(req.id);
      return {};
    },
  });
  server.listen(path);
  return {
    address: `unix://${path}`,
    server,
    /** Connections that made a call and are still open. */
    open: () => conns.filter((s) => !s.aborted).length,
    shutdowns,
    async [Symbol.asyncDispose]() {
      server.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Fails instead of hanging when `p` does not settle within `ms`. */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const settled = async (p: Promise<unknown>) =>
  await Promise.race([p.then(() => true), new Promise((r) => setTimeout(() => r(false), 50))]);

Deno.test("tasks of one shim and namespace share one connection; namespaces keep their own", async () => {
  await using shim = await fakeShim();
  const pool = new ShimConnectionPool();
  // Connected at once, as a daemon reloading its tasks in parallel does.
  const [a, b, c] = await Promise.all([
    pool.connect(shim.address, "ns1"),
    pool.connect(shim.address, "ns1"),
    pool.connect(shim.address, "ns2"),
  ]);
  const ra = await a.client.call(Task, "connect", { id: "a" });
  const rb = await b.client.call(Task, "connect", { id: "b" });
  const rc = await c.client.call(Task, "connect", { id: "c" });
  assert.equal(ra.version, "ns1/a");
  assert.equal(rb.version, "ns1/b");
  assert.equal(rc.version, "ns2/c");
  assert.equal(ra.shimPid, rb.shimPid, "ns1's tasks use one connection");
  assert.notEqual(ra.shimPid, rc.shimPid, "ns2 has its own connection");
  assert.equal(shim.open(), 2);
  assert.equal(pool.size, 2);

  // Giving a share back ends that share only; the last one closes the connection.
  a.close();
  assert.equal(await settled(a.done), true);
  assert.equal(await settled(b.done), false);
  assert.equal((await b.client.call(Task, "connect", { id: "b" })).shimPid, rb.shimPid);
  b.close();
  await within(
    5000,
    "ns1's connection closing",
    (async () => {
      while (shim.open() !== 1) await new Promise((r) => setTimeout(r, 10));
    })(),
  );
  assert.equal(pool.size, 1);
  c.close();
  await within(
    5000,
    "ns2's connection closing",
    (async () => {
      while (shim.open() !== 0) await new Promise((r) => setTimeout(r, 10));
    })(),
  );
  assert.equal(pool.size, 0);
});

Deno.test("a shim that goes away ends every share of its connection", async () => {
  await using shim = await fakeShim();
  const pool = new ShimConnectionPool();
  const a = await pool.connect(shim.address, "ns");
  const b = await pool.connect(shim.address, "ns");
  await a.client.call(Task, "connect", { id: "a" });
  shim.server.close();
  await within(5000, "share a's done", a.done);
  await within(5000, "share b's done", b.done);
  assert.equal(pool.size, 0);
  await assert.rejects(b.client.call(Task, "connect", { id: "b" }), /closed/);
  // Giving back an ended share is harmless.
  a.close();
  b.close();
});

Deno.test("after a Shutdown, new tasks get a new connection; the tasks holding the old keep it", async () => {
  await using shim = await fakeShim();
  const pool = new ShimConnectionPool();
  const a = await pool.connect(shim.address, "ns");
  const b = await pool.connect(shim.address, "ns");
  const first = (await a.client.call(Task, "connect", { id: "a" })).shimPid;
  await a.shutdown("a");
  assert.deepEqual(shim.shutdowns, ["a"]);
  a.close();
  // The shim might be on its way out: a new task does not join that connection.
  const c = await pool.connect(shim.address, "ns");
  const second = (await c.client.call(Task, "connect", { id: "c" })).shimPid;
  assert.notEqual(second, first);
  assert.equal((await b.client.call(Task, "connect", { id: "b" })).shimPid, first);
  assert.equal(shim.open(), 2);
  b.close();
  c.close();
  await within(
    5000,
    "connections closing",
    (async () => {
      while (shim.open() !== 0) await new Promise((r) => setTimeout(r, 10));
    })(),
  );
});

Deno.test("a shim that cannot be reached fails every waiting connect, and a later one retries", async () => {
  await using shim = await fakeShim();
  const path = shim.address.slice("unix://".length);
  shim.server.close(); // removes the socket
  const pool = new ShimConnectionPool();
  const results = await Promise.allSettled([
    pool.connect(shim.address, "ns"),
    pool.connect(shim.address, "ns"),
  ]);
  for (const r of results) {
    assert.equal(r.status, "rejected");
    assert.match(String((r as PromiseRejectedResult).reason), /cannot connect to ttrpc server/);
  }
  assert.equal(pool.size, 0);
  // A shim listening there again is reached: the failure was not kept.
  const again = new TtrpcServer({ log: quiet });
  again.register(Task, { connect: (req) => ({ shimPid: 1, taskPid: 0, version: req.id }) });
  again.listen(path);
  try {
    const a = await pool.connect(shim.address, "ns");
    assert.equal((await a.client.call(Task, "connect", { id: "a" })).version, "a");
    a.close();
  } finally {
    again.close();
  }
});
