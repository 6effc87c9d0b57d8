/**
 * The daemon and the CLI under bad input and at the edges of their life:
 * garbage on the socket, unknown methods, malformed requests, signals,
 * restarts, a second daemon, no daemon at all, and help and usage errors.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { MAIN, ok, run, startDaemon, type TestDaemon } from "./_harness.ts";

/** Runs the berth CLI with no daemon attached (no -a added). */
function berth(args: string[], env?: Record<string, string>) {
  return run(Deno.execPath(), ["run", "-A", MAIN, ...args], env ? { env } : {});
}

async function assertServing(d: TestDaemon, after: string): Promise<void> {
  const r = await d.ctr(["version"]);
  assert.equal(r.code, 0, `ctr version failed after ${after}:\n${r.stderr}\n${await d.log()}`);
  assert.match(r.stdout, /Server:\s+Version:/);
}

/** Writes `bytes` to a fresh connection, reads what comes back for a moment. */
async function sendRaw(sock: string, bytes: Uint8Array): Promise<Deno.UnixConn> {
  const conn = await Deno.connect({ transport: "unix", path: sock });
  await conn.write(bytes).catch(() => {});
  // Drain whatever the server answers without waiting for it to close.
  const buf = new Uint8Array(4096);
  await Promise.race([
    conn.read(buf).catch(() => null),
    new Promise((r) => setTimeout(r, 200)),
  ]);
  return conn;
}

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  crypto.getRandomValues(b);
  return b;
}

const enc = (s: string) => new TextEncoder().encode(s);
const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

Deno.test("garbage on the socket leaves the daemon serving", async () => {
  await using d = await startDaemon();
  const cases: Array<[string, Uint8Array]> = [
    ["random bytes", randomBytes(8192)],
    [
      "an HTTP/1.1 request",
      enc("GET /v2/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    ],
    ["a truncated HTTP/2 preface", enc(PREFACE.slice(0, 10))],
    [
      "an HTTP/2 preface then random frames",
      new Uint8Array([...enc(PREFACE), ...randomBytes(4096)]),
    ],
    ["a zero byte", new Uint8Array([0])],
  ];
  const open: Deno.UnixConn[] = [];
  try {
    for (const [what, bytes] of cases) {
      // Keep each bad connection open while a good client is served.
      open.push(await sendRaw(d.sock, bytes));
      await assertServing(d, what);
    }
  } finally {
    for (const c of open) {
      try {
        c.close();
      } catch { /* the server closed it */ }
    }
  }
  // And once the bad connections are gone.
  await assertServing(d, "closing the bad connections");
  assert.equal(d.pid !== undefined, true);
});

/** A unary call on any path with raw request bytes; resolves to the status. */
function rawCall(
  sock: string,
  path: string,
  body: Uint8Array,
  metadata?: Record<string, string>,
): Promise<{ code: number; details: string }> {
  const client = new grpc.Client(`unix:${sock}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata ?? {})) md.set(k, v);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => b,
      body,
      md,
      (err) => {
        client.close();
        resolve(err ? { code: err.code, details: err.details } : { code: 0, details: "" });
      },
    );
  });
}

Deno.test("unknown services and methods get UNIMPLEMENTED", async () => {
  await using d = await startDaemon();
  for (
    const path of [
      "/containerd.services.tasks.v1.Tasks/NoSuchMethod",
      "/containerd.services.nosuch.v1.NoSuch/List",
      "/containerd.services.version.v1.Version/Nope",
      "/no.such.Service/Call",
    ]
  ) {
    const r = await rawCall(d.sock, path, new Uint8Array(), { "containerd-namespace": "default" });
    assert.equal(r.code, grpc.status.UNIMPLEMENTED, `${path}: ${grpc.status[r.code]} ${r.details}`);
  }
  await assertServing(d, "unknown methods");
});

Deno.test("a client that closes its channel after many calls leaves the daemon serving", async () => {
  // grpc-js (and other clients) send GOAWAY when they close a channel. Deno
  // 2.9.6's node:http2 corrupts its nghttp2 session after a few hundred
  // streams and aborts when the GOAWAY arrives (denoland/deno#36788).
  await using d = await startDaemon();
  const { grpcDefinition } = await import("./_grpc.ts");
  const { Version } = await import("../src/gen/containerd/services/version/v1/version_pb.ts");
  const Ctor = grpc.makeGenericClientConstructor(grpcDefinition(Version), "Version");
  for (let round = 0; round < 3; round++) {
    const client = new Ctor(`unix:${d.sock}`, grpc.credentials.createInsecure());
    const call = () =>
      new Promise<void>((resolve, reject) =>
        (client as unknown as Record<string, (...a: unknown[]) => void>).version!(
          {},
          (err: Error | null) => (err ? reject(err) : resolve()),
        )
      );
    for (let i = 0; i < 100; i++) await Promise.all([call(), call(), call(), call()]);
    client.close();
    await new Promise((r) => setTimeout(r, 200));
    await assertServing(d, `a client closed its channel after 400 calls (round ${round + 1})`);
  }
});

Deno.test("a malformed protobuf request gets an error status and the daemon keeps serving", async () => {
  await using d = await startDaemon();
  ok(await d.ctr(["namespaces", "create", "kept"]));
  const bad: Array<[string, Uint8Array]> = [
    // field 1, length-delimited, with a length far past the end
    ["a length past the end", new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x61])],
    // wire type 7 does not exist
    ["an invalid wire type", new Uint8Array([0x0f, 0x01])],
    // a varint that never ends
    ["an endless varint", new Uint8Array([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
  ];
  for (const [what, body] of bad) {
    const r = await rawCall(d.sock, "/containerd.services.namespaces.v1.Namespaces/Get", body);
    assert.notEqual(r.code, grpc.status.OK, `${what}: accepted`);
    assert.ok(
      r.code === grpc.status.INTERNAL || r.code === grpc.status.INVALID_ARGUMENT,
      `${what}: got ${grpc.status[r.code]} ${r.details}`,
    );
  }
  // A well-formed Get (name = "kept") still works on the same daemon.
  const good = await rawCall(
    d.sock,
    "/containerd.services.namespaces.v1.Namespaces/Get",
    new Uint8Array([0x0a, 4, ...enc("kept")]),
  );
  assert.equal(good.code, grpc.status.OK, good.details);
  await assertServing(d, "malformed requests");
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`${signal} shuts the daemon down gracefully`, async () => {
    await using d = await startDaemon();
    ok(await d.ctr(["namespaces", "create", "before-stop"]));
    const code = await d.stop(signal);
    assert.equal(code, 0, `exit code after ${signal}:\n${await d.log()}`);
    await assert.rejects(Deno.stat(d.sock), Deno.errors.NotFound, "the socket is left behind");
    assert.match(await d.log(), /shutting down/);
    // The state it wrote is intact for the next start.
    await d.start();
    const ls = ok(await d.ctr(["namespaces", "ls", "-q"]));
    assert.match(ls.stdout, /^before-stop$/m);
  });
}

Deno.test("namespaces and their labels survive a restart and a crash", async () => {
  await using d = await startDaemon();
  ok(await d.ctr(["namespaces", "create", "persist", "team=a", "tier=gold"]));
  ok(await d.ctr(["namespaces", "label", "persist", "tier=silver"]));
  await d.restart();
  let ls = ok(await d.ctr(["namespaces", "ls"]));
  assert.match(ls.stdout, /^persist\s+team=a,tier=silver\s*$/m);
  ok(await d.ctr(["namespaces", "create", "after-restart", "x=1"]));
  // A crash leaves a stale socket; the next start must replace it.
  await d.kill();
  await d.start();
  ls = ok(await d.ctr(["namespaces", "ls"]));
  assert.match(ls.stdout, /^persist\s+team=a,tier=silver\s*$/m);
  assert.match(ls.stdout, /^after-restart\s+x=1\s*$/m);
});

Deno.test("a second daemon on the same socket fails clearly and the first keeps serving", async () => {
  await using d = await startDaemon();
  ok(await d.ctr(["namespaces", "create", "first"]));
  const second = await run(Deno.execPath(), [
    "run",
    "-A",
    MAIN,
    "daemon",
    "--root",
    d.root,
    "--state",
    d.state,
    "--address",
    d.sock,
  ]);
  assert.equal(second.code, 1, `second daemon: ${second.stdout}${second.stderr}`);
  // The gRPC socket, or a socket beside it (SOCK.ttrpc), whichever it binds first.
  assert.ok(second.stderr.includes(`Cannot listen on ${d.sock}`), second.stderr);
  assert.match(second.stderr, /another daemon is serving there/);
  await assertServing(d, "a second daemon tried the same socket");
  const ls = ok(await d.ctr(["namespaces", "ls", "-q"]));
  assert.match(ls.stdout, /^first$/m);
});

Deno.test("the CLI without a daemon says it cannot reach it and exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-nodaemon-" });
  try {
    const sock = `${dir}/none.sock`;
    const r = await berth(["-a", sock, "version"]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`cannot reach the berth daemon at ${sock}`), r.stderr);
    // The address also comes from BERTH_ADDRESS.
    const env = await berth(["namespaces", "ls"], { BERTH_ADDRESS: sock });
    assert.equal(env.code, 1, env.stderr);
    assert.ok(env.stderr.includes(`cannot reach the berth daemon at ${sock}`), env.stderr);
    // A file that is not a socket.
    await Deno.writeTextFile(`${dir}/plain`, "");
    const plain = await berth(["-a", `${dir}/plain`, "info"]);
    assert.equal(plain.code, 1, plain.stderr);
    assert.ok(plain.stderr.includes(`cannot reach the berth daemon at ${dir}/plain`), plain.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The first word of each line in a help text's "Commands:" section. */
function commandsIn(help: string): string[] {
  const m = help.match(/^Commands:\n((?: {2}\S.*\n?)+)/m);
  if (!m) return [];
  return m[1]!.split("\n").map((l) => l.trim().split(/\s+/)[0]!).filter(Boolean);
}

Deno.test("--help works at every level and exits 0", async () => {
  const top = await berth(["--help"]);
  assert.equal(top.code, 0, top.stderr);
  assert.match(top.stdout, /^Usage: berth /m);
  const verbs = commandsIn(top.stdout);
  for (const v of ["daemon", "version", "info", "namespaces", "content", "leases", "events"]) {
    assert.ok(verbs.includes(v), `berth --help does not list ${v}: ${verbs.join(" ")}`);
  }
  const daemon = await berth(["daemon", "--help"]);
  assert.equal(daemon.code, 0, daemon.stderr);
  assert.match(daemon.stdout, /^Usage: berth daemon/m);
  // Every verb, then every subcommand a verb's help lists; a few at a time.
  const checks: string[][] = verbs.filter((v) => v !== "daemon").map((v) => [v]);
  const verbHelps = await Promise.all(checks.map((c) => berth([...c, "--help"])));
  verbHelps.forEach((r, i) => {
    const verb = checks[i]![0]!;
    assert.equal(r.code, 0, `berth ${verb} --help exited ${r.code}: ${r.stderr}`);
    assert.match(r.stdout, /^Usage: berth /m, `berth ${verb} --help`);
  });
  const subs = checks.flatMap((c, i) => commandsIn(verbHelps[i]!.stdout).map((s) => [c[0]!, s]));
  for (let i = 0; i < subs.length; i += 4) {
    const batch = subs.slice(i, i + 4);
    const rs = await Promise.all(batch.map((s) => berth([...s, "--help"])));
    rs.forEach((r, j) => {
      const what = `berth ${batch[j]!.join(" ")} --help`;
      assert.equal(r.code, 0, `${what} exited ${r.code}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage: berth /m, what);
    });
  }
});

Deno.test("an unknown verb or subcommand is a usage error (exit 2)", async () => {
  const verb = await berth(["frobnicate"]);
  assert.equal(verb.code, 2, verb.stderr);
  assert.match(verb.stderr, /unknown command "frobnicate"/);
  const sub = await berth(["namespaces", "frobnicate"]);
  assert.equal(sub.code, 2, sub.stderr);
  assert.match(sub.stderr, /unknown subcommand "frobnicate"/);
  const flag = await berth(["version", "--no-such-flag"]);
  assert.equal(flag.code, 2, flag.stderr);
  assert.match(flag.stderr, /--no-such-flag/);
});
