/**
 * berth's shim end to end, as a daemon drives it: the shim v2 binary
 * protocol (`berth shim … start|delete`), then containerd.task.v2.Task over
 * ttrpc, with real runc and a busybox rootfs. The test plays the daemon: it
 * serves containerd.services.events.ttrpc.v1.Events/Forward on the
 * TTRPC_ADDRESS it gives the shim, and records the events. Needs root.
 */
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { TtrpcClient } from "../src/ttrpc/client.ts";
import { TtrpcServer } from "../src/ttrpc/server.ts";
import { isKind } from "../src/core/errdefs.ts";
import { DeleteResponseSchema, Task } from "../src/gen/containerd/task/v2/shim_pb.ts";
import { Status } from "../src/gen/containerd/types/task/task_pb.ts";
import { type Envelope, Events } from "../src/gen/containerd/services/ttrpc/events/v1/events_pb.ts";
import { TaskExitSchema } from "../src/gen/containerd/events/task_pb.ts";
import { generateSpec } from "../src/oci/spec.ts";
import { withArgs, withRootfsPath } from "../src/oci/spec_opts.ts";
import { MAIN, ok, REPO, run, waitFor } from "./_harness.ts";

/** A namespace of this run's own: its cgroups (`/<ns>/<id>`) and runc root are removed after. */
const NS = `shim-${crypto.randomUUID().slice(0, 6)}`;

/** Removes the namespace cgroup dirs runc leaves (as containerd leaves them) once empty. */
function removeNamespaceCgroups(ns: string): void {
  for (const e of Deno.readDirSync("/sys/fs/cgroup")) {
    try {
      Deno.removeSync(`/sys/fs/cgroup/${e.name}/${ns}`);
    } catch { /* not there, or still in use */ }
  }
}

globalThis.addEventListener("unload", () => {
  removeNamespaceCgroups(NS);
  removeNamespaceCgroups("shimtest");
});

/** A fake-free "daemon" side: the events endpoint a shim forwards to. */
class EventSink {
  readonly path: string;
  readonly events: Envelope[] = [];
  #server: TtrpcServer | undefined;
  constructor(path: string) {
    this.path = path;
  }
  up(): void {
    this.#server = new TtrpcServer();
    this.#server.register(Events, {
      forward: (req) => {
        if (req.envelope) this.events.push(req.envelope);
        return Promise.resolve({});
      },
    });
    this.#server.listen(this.path);
  }
  down(): void {
    this.#server?.close();
    this.#server = undefined;
    try {
      Deno.removeSync(this.path);
    } catch { /* gone */ }
  }
  topics(id: string): string[] {
    return this.events.filter((e) => decodeContainerId(e.event) === id).map((e) => e.topic);
  }
  async waitTopic(id: string, topic: string): Promise<Envelope> {
    let found: Envelope | undefined;
    await waitFor(`event ${topic} of ${id}`, () => {
      found = this.events.find((e) => e.topic === topic && decodeContainerId(e.event) === id);
      return Promise.resolve(found !== undefined);
    });
    return found!;
  }
}

/** Every task event has container_id as field 1: read it without knowing the type. */
function decodeContainerId(any: Any | undefined): string {
  if (!any) return "";
  const b = any.value;
  if (b[0] !== 0x0a) return "";
  const len = b[1]!;
  return new TextDecoder().decode(b.subarray(2, 2 + len));
}

/** Field `no` of an encoded message: a varint as bigint, a length-delimited field as bytes. */
function wireField(bytes: Uint8Array, no: number): bigint | Uint8Array | undefined {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [n, type] = r.tag();
    if (n === no && type === WireType.Varint) return BigInt(r.uint64());
    if (n === no && type === WireType.LengthDelimited) return r.bytes();
    r.skip(type);
  }
  return undefined;
}

interface World {
  dir: string;
  address: string;
  sink: EventSink;
}

async function world(): Promise<World> {
  const dir = await Deno.makeTempDir({ prefix: "berth-shim-" });
  // The daemon socket is never dialled by the shim; its directory is the shim's state dir.
  const address = `${dir}/berth.sock`;
  const sink = new EventSink(`${address}.ttrpc`);
  sink.up();
  return { dir, address, sink };
}

async function bundle(
  w: World,
  id: string,
  args: string[],
  edit: (spec: Record<string, unknown>) => void = () => {},
): Promise<string> {
  const b = `${w.dir}/bundles/${id}`;
  await Deno.mkdir(`${b}/rootfs/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${b}/rootfs/bin/busybox`);
  await Deno.chmod(`${b}/rootfs/bin/busybox`, 0o755);
  for (const app of ["sh", "echo", "sleep", "cat", "stty", "true"]) {
    await Deno.symlink("busybox", `${b}/rootfs/bin/${app}`);
  }
  const spec = await generateSpec({ namespace: NS, id }, withArgs(args), withRootfsPath("rootfs"));
  spec.process!.env = ["PATH=/bin"];
  edit(spec as unknown as Record<string, unknown>);
  await Deno.writeTextFile(`${b}/config.json`, JSON.stringify(spec));
  return b;
}

function shimArgs(w: World, id: string, action: string): string[] {
  return [
    "run",
    "-A",
    MAIN,
    "shim",
    "-namespace",
    NS,
    "-id",
    id,
    "-address",
    w.address,
    "-publish-binary",
    "/bin/true",
    action,
  ];
}

/** `berth shim … start` in the bundle dir: the shim's address. */
async function startShim(w: World, id: string, b: string): Promise<string> {
  const r = await run(Deno.execPath(), shimArgs(w, id, "start"), {
    cwd: b,
    env: { TTRPC_ADDRESS: w.sink.path },
  });
  assert.equal(r.code, 0, `shim start failed: ${r.stderr}`);
  assert.match(r.stdout, /^unix:\/\/\//);
  assert.equal(await Deno.readTextFile(`${b}/address`), r.stdout);
  return r.stdout;
}

async function mkfifo(path: string): Promise<string> {
  await run("mkfifo", [path], { check: true });
  return path;
}

/** Reads a FIFO to EOF (opened before the shim opens its end). */
async function readFifo(path: string): Promise<string> {
  const f = await Deno.open(path, { read: true });
  return await new Response(f.readable).text();
}

/** Whether `pid` runs (a zombie waiting for a lazy pid 1 to reap it counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^Z/.test(stat.slice(stat.lastIndexOf(")") + 2));
  } catch {
    return false;
  }
}

async function shimPid(b: string): Promise<number> {
  return Number(await Deno.readTextFile(`${b}/shim.pid`));
}

async function cleanup(w: World, client: TtrpcClient | undefined, pids: number[]) {
  client?.close();
  for (const pid of pids) {
    if (alive(pid)) Deno.kill(pid, "SIGKILL");
  }
  w.sink.down();
  const root = `${w.dir}/runc/${NS}`;
  try {
    for await (const e of Deno.readDir(root)) {
      if (e.isDirectory) await run("runc", ["--root", root, "delete", "--force", e.name]);
    }
  } catch { /* no runc root: nothing was created */ }
  await Deno.remove(w.dir, { recursive: true });
}

Deno.test("shim: output kept apart on FIFOs, exit code through Wait, State and /tasks/exit", async () => {
  const w = await world();
  let client: TtrpcClient | undefined;
  const pids: number[] = [];
  try {
    const b = await bundle(w, "c1", ["sh", "-c", "echo out; echo err >&2; exit 3"]);
    const address = await startShim(w, "c1", b);
    pids.push(await shimPid(b));
    client = await TtrpcClient.connect(address, { namespace: NS });
    const outFifo = await mkfifo(`${w.dir}/c1-out`);
    const errFifo = await mkfifo(`${w.dir}/c1-err`);
    const out = readFifo(outFifo);
    const err = readFifo(errFifo);

    const { pid } = await client.call(Task, "create", {
      id: "c1",
      bundle: b,
      stdout: outFifo,
      stderr: errFifo,
    });
    assert.ok(pid > 1);
    const created = await client.call(Task, "state", { id: "c1" });
    assert.equal(created.status, Status.CREATED);
    assert.equal(created.pid, pid);
    const conn = await client.call(Task, "connect", { id: "c1" });
    assert.equal(conn.shimPid, pids[0]);
    assert.equal(conn.taskPid, pid);

    await client.call(Task, "start", { id: "c1" });
    assert.equal(await out, "out\n");
    assert.equal(await err, "err\n");
    const waited = await client.call(Task, "wait", { id: "c1" });
    assert.equal(waited.exitStatus, 3);
    assert.ok(waited.exitedAt);
    const st = await client.call(Task, "state", { id: "c1" });
    assert.equal(st.status, Status.STOPPED);
    assert.equal(st.exitStatus, 3);

    const exit = await w.sink.waitTopic("c1", "/tasks/exit");
    const ev = fromBinary(TaskExitSchema, exit.event!.value);
    assert.equal(exit.event!.typeUrl, "containerd.events.TaskExit");
    assert.equal(exit.namespace, NS);
    assert.deepEqual([ev.containerId, ev.id, ev.pid, ev.exitStatus], ["c1", "c1", pid, 3]);

    // A stopped process cannot be started again; the error names the state.
    await assert.rejects(
      client.call(Task, "start", { id: "c1" }),
      (e) => isKind(e, "failed_precondition") && /stopped/.test((e as Error).message),
    );
    const del = await client.call(Task, "delete", { id: "c1" });
    assert.equal(del.exitStatus, 3);
    assert.equal(del.pid, pid);
    await w.sink.waitTopic("c1", "/tasks/delete");
    assert.deepEqual(w.sink.topics("c1"), [
      "/tasks/create",
      "/tasks/start",
      "/tasks/exit",
      "/tasks/delete",
    ]);
    await assert.rejects(client.call(Task, "state", { id: "c1" }), (e) => isKind(e, "not_found"));
    // runc no longer knows it.
    const rs = await run("runc", ["--root", `${w.dir}/runc/${NS}`, "state", "c1"]);
    assert.notEqual(rs.code, 0);

    await client.call(Task, "shutdown", { id: "c1" });
    await waitFor("the shim to exit", () => Promise.resolve(!alive(pids[0]!)));
  } finally {
    await cleanup(w, client, pids);
  }
});

Deno.test("shim: exec, pause/resume, kill with a signal, refused transitions", async () => {
  const w = await world();
  let client: TtrpcClient | undefined;
  const pids: number[] = [];
  try {
    const b = await bundle(w, "c2", ["sleep", "1000"]);
    const address = await startShim(w, "c2", b);
    pids.push(await shimPid(b));
    client = await TtrpcClient.connect(address, { namespace: NS });
    const { pid } = await client.call(Task, "create", { id: "c2", bundle: b });
    await client.call(Task, "start", { id: "c2" });
    await assert.rejects(
      client.call(Task, "start", { id: "c2" }),
      (e) => isKind(e, "failed_precondition") && /running/.test((e as Error).message),
    );
    await assert.rejects(
      client.call(Task, "delete", { id: "c2" }),
      (e) => isKind(e, "failed_precondition") && /running/.test((e as Error).message),
    );

    // exec: stored by Exec, run by Start, its exit through Wait.
    const outFifo = await mkfifo(`${w.dir}/e1-out`);
    const out = readFifo(outFifo);
    const spec = {
      args: ["sh", "-c", "echo hi-from-exec; exit 4"],
      cwd: "/",
      env: ["PATH=/bin"],
      user: { uid: 0, gid: 0 },
    };
    await client.call(Task, "exec", {
      id: "c2",
      execId: "e1",
      stdout: outFifo,
      spec: {
        typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process",
        value: new TextEncoder().encode(JSON.stringify(spec)),
      },
    });
    await assert.rejects(
      client.call(Task, "exec", { id: "c2", execId: "e1", spec: { typeUrl: "x" } }),
      (e) => isKind(e, "already_exists"),
    );
    assert.equal(
      (await client.call(Task, "state", { id: "c2", execId: "e1" })).status,
      Status.CREATED,
    );
    const started = await client.call(Task, "start", { id: "c2", execId: "e1" });
    assert.ok(started.pid > 1 && started.pid !== pid);
    assert.equal(await out, "hi-from-exec\n");
    assert.equal((await client.call(Task, "wait", { id: "c2", execId: "e1" })).exitStatus, 4);
    assert.equal((await client.call(Task, "delete", { id: "c2", execId: "e1" })).exitStatus, 4);
    await assert.rejects(
      client.call(Task, "state", { id: "c2", execId: "e1" }),
      (e) => isKind(e, "not_found"),
    );

    // An exec with a terminal: its pty comes through a console socket and can be resized.
    const ttyIn = await mkfifo(`${w.dir}/e2-in`);
    const ttyOut = await mkfifo(`${w.dir}/e2-out`);
    const ttyText = readFifo(ttyOut);
    await client.call(Task, "exec", {
      id: "c2",
      execId: "e2",
      terminal: true,
      stdin: ttyIn,
      stdout: ttyOut,
      spec: {
        typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process",
        value: new TextEncoder().encode(
          JSON.stringify({ ...spec, terminal: true, args: ["sh", "-c", "read x; stty size"] }),
        ),
      },
    });
    await client.call(Task, "start", { id: "c2", execId: "e2" });
    await client.call(Task, "resizePty", { id: "c2", execId: "e2", width: 77, height: 22 });
    const ttyStdin = await Deno.open(ttyIn, { write: true });
    await ttyStdin.write(new TextEncoder().encode("go\n"));
    ttyStdin.close();
    assert.equal((await client.call(Task, "wait", { id: "c2", execId: "e2" })).exitStatus, 0);
    assert.match(await ttyText, /22 77\r\n/);
    await client.call(Task, "delete", { id: "c2", execId: "e2" });

    // A runc failure comes back in runc's own words and leaves nothing behind.
    const bad = await bundle(w, "bad", ["/no/such/binary"]);
    await assert.rejects(
      client.call(Task, "create", { id: "bad", bundle: bad }),
      (e) => /runc create "bad": .*no such file or directory/.test((e as Error).message),
    );
    await assert.rejects(client.call(Task, "state", { id: "bad" }), (e) => isKind(e, "not_found"));
    await assert.rejects(
      client.call(Task, "create", { id: "bad", bundle: bad, stdout: "tcp://127.0.0.1:1" }),
      (e) => isKind(e, "invalid_argument") && /unsupported IO URI "tcp:/.test((e as Error).message),
    );
    await assert.rejects(client.call(Task, "state", { id: "bad" }), (e) => isKind(e, "not_found"));

    const ps = await client.call(Task, "pids", { id: "c2" });
    assert.ok(ps.processes.some((p) => p.pid === pid));

    // Stats: runc's sample as cgroups v1 Metrics (pids = 2 {current = 1}, memory = 4 {usage = 33 {usage = 2}}).
    const stats = await client.call(Task, "stats", { id: "c2" });
    assert.equal(stats.stats?.typeUrl, "io.containerd.cgroups.v1.Metrics");
    const metrics = stats.stats!.value;
    assert.equal(wireField(wireField(metrics, 2) as Uint8Array, 1), 1n);
    const memUsage = wireField(wireField(wireField(metrics, 4) as Uint8Array, 33) as Uint8Array, 2);
    assert.ok(typeof memUsage === "bigint" && memUsage > 0n, `memory usage ${memUsage}`);

    await client.call(Task, "pause", { id: "c2" });
    assert.equal((await client.call(Task, "state", { id: "c2" })).status, Status.PAUSED);
    await assert.rejects(
      client.call(Task, "pause", { id: "c2" }),
      (e) => isKind(e, "failed_precondition") && /paused/.test((e as Error).message),
    );
    await client.call(Task, "resume", { id: "c2" });
    assert.equal((await client.call(Task, "state", { id: "c2" })).status, Status.RUNNING);
    await assert.rejects(
      client.call(Task, "resume", { id: "c2" }),
      (e) => isKind(e, "failed_precondition") && /running/.test((e as Error).message),
    );

    await client.call(Task, "kill", { id: "c2", signal: 9 });
    assert.equal((await client.call(Task, "wait", { id: "c2" })).exitStatus, 137);
    await assert.rejects(
      client.call(Task, "kill", { id: "c2", signal: 9 }),
      (e) => isKind(e, "not_found"),
    );
    await client.call(Task, "delete", { id: "c2" });
    await w.sink.waitTopic("c2", "/tasks/delete");
    assert.deepEqual(w.sink.topics("c2"), [
      "/tasks/create",
      "/tasks/start",
      "/tasks/exec-added",
      "/tasks/exec-started",
      "/tasks/exit",
      "/tasks/exec-added",
      "/tasks/exec-started",
      "/tasks/exit",
      "/tasks/paused",
      "/tasks/resumed",
      "/tasks/exit",
      "/tasks/delete",
    ]);
    await assert.rejects(
      client.call(Task, "checkpoint", { id: "c2" }),
      (e) => isKind(e, "not_implemented") && /checkpoint/.test((e as Error).message),
    );
    await client.call(Task, "shutdown", { id: "c2" });
    await waitFor("the shim to exit", () => Promise.resolve(!alive(pids[0]!)));
  } finally {
    await cleanup(w, client, pids);
  }
});

Deno.test("shim: outlives its daemon; an exit while the daemon is away reaches it later", async () => {
  const w = await world();
  let client: TtrpcClient | undefined;
  const pids: number[] = [];
  try {
    const b = await bundle(w, "c3", ["sleep", "1000"]);
    const address = await startShim(w, "c3", b);
    pids.push(await shimPid(b));
    client = await TtrpcClient.connect(address, { namespace: NS });
    await client.call(Task, "create", { id: "c3", bundle: b });
    await client.call(Task, "start", { id: "c3" });
    await w.sink.waitTopic("c3", "/tasks/start");
    client.close();

    w.sink.down(); // the daemon goes away
    client = await TtrpcClient.connect(address, { namespace: NS });
    await client.call(Task, "kill", { id: "c3", signal: 9 });
    await client.call(Task, "wait", { id: "c3" });
    client.close();
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(alive(pids[0]!), "the shim keeps running without its daemon");
    assert.ok(!w.sink.topics("c3").includes("/tasks/exit"));

    w.sink.up(); // the daemon comes back and reconnects
    client = await TtrpcClient.connect(address, { namespace: NS });
    const st = await client.call(Task, "state", { id: "c3" });
    assert.equal(st.status, Status.STOPPED);
    assert.equal(st.exitStatus, 137);
    const exit = await w.sink.waitTopic("c3", "/tasks/exit");
    assert.equal(fromBinary(TaskExitSchema, exit.event!.value).exitStatus, 137);
    await client.call(Task, "delete", { id: "c3" });
    await client.call(Task, "shutdown", { id: "c3" });
    await waitFor("the shim to exit", () => Promise.resolve(!alive(pids[0]!)));
  } finally {
    await cleanup(w, client, pids);
  }
});

Deno.test("shim: `delete` cleans up after a killed shim", async () => {
  const w = await world();
  let client: TtrpcClient | undefined;
  const pids: number[] = [];
  try {
    const b = await bundle(w, "c4", ["sleep", "1000"]);
    const address = await startShim(w, "c4", b);
    pids.push(await shimPid(b));
    client = await TtrpcClient.connect(address, { namespace: NS });
    const { pid } = await client.call(Task, "create", { id: "c4", bundle: b });
    await client.call(Task, "start", { id: "c4" });
    pids.push(pid);
    client.close();
    client = undefined;
    Deno.kill(pids[0]!, "SIGKILL");
    await waitFor("the shim to die", () => Promise.resolve(!alive(pids[0]!)));
    assert.ok(alive(pid), "the container outlives its shim");

    // The reply is binary protobuf: read stdout as bytes.
    const r = await new Deno.Command(Deno.execPath(), {
      args: shimArgs(w, "c4", "delete"),
      cwd: b,
      env: { TTRPC_ADDRESS: w.sink.path },
      stdin: "null",
    }).output();
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    const res = fromBinary(DeleteResponseSchema, r.stdout);
    assert.equal(res.exitStatus, 137);
    // The dead shim's socket is cleaned up too.
    await assert.rejects(Deno.stat(address.slice("unix://".length)), Deno.errors.NotFound);
    assert.ok(res.exitedAt && Number(res.exitedAt.seconds) > 0);
    await waitFor("the container to be gone", () => Promise.resolve(!alive(pid)));
    const rs = await run("runc", ["--root", `${w.dir}/runc/${NS}`, "state", "c4"]);
    assert.notEqual(rs.code, 0);
  } finally {
    await cleanup(w, client, pids);
  }
});

Deno.test("shim: a terminal through runc's console socket, resized by ResizePty", async () => {
  const w = await world();
  let client: TtrpcClient | undefined;
  const pids: number[] = [];
  try {
    const b = await bundle(
      w,
      "c5",
      ["sh", "-c", "read line; stty size; echo got:$line; exit 5"],
      (s) => {
        (s.process as { terminal: boolean }).terminal = true;
      },
    );
    const address = await startShim(w, "c5", b);
    pids.push(await shimPid(b));
    client = await TtrpcClient.connect(address, { namespace: NS });
    const inFifo = await mkfifo(`${w.dir}/c5-in`);
    const outFifo = await mkfifo(`${w.dir}/c5-out`);
    const out = readFifo(outFifo);
    await client.call(Task, "create", {
      id: "c5",
      bundle: b,
      terminal: true,
      stdin: inFifo,
      stdout: outFifo,
    });
    await client.call(Task, "resizePty", { id: "c5", width: 123, height: 45 });
    await client.call(Task, "start", { id: "c5" });
    const stdin = await Deno.open(inFifo, { write: true });
    await stdin.write(new TextEncoder().encode("hello\n"));
    stdin.close();
    assert.equal((await client.call(Task, "wait", { id: "c5" })).exitStatus, 5);
    const text = await out;
    // A terminal echoes input and ends lines with CRLF.
    assert.match(text, /45 123\r\n/);
    assert.match(text, /got:hello\r\n/);
    await client.call(Task, "delete", { id: "c5" });
    await client.call(Task, "shutdown", { id: "c5" });
  } finally {
    await cleanup(w, client, pids);
  }
});

Deno.test("shim: containers of one group share a shim, which exits after the last", async () => {
  const w = await world();
  let client: TtrpcClient | undefined;
  const pids: number[] = [];
  try {
    const group = (s: Record<string, unknown>) => {
      s.annotations = { "io.containerd.runc.v2.group": "pod1" };
    };
    const b1 = await bundle(w, "g1", ["sleep", "1000"], group);
    const b2 = await bundle(w, "g2", ["sleep", "1000"], group);
    const b3 = await bundle(w, "g3", ["sleep", "1000"]);
    const [a1, a2, a3] = await Promise.all([
      startShim(w, "g1", b1),
      startShim(w, "g2", b2),
      startShim(w, "g3", b3),
    ]);
    assert.equal(a1, a2);
    assert.notEqual(a1, a3);
    // Only the start that spawned the group's shim knows its pid; Create records it in each bundle.
    const c3 = await TtrpcClient.connect(a3, { namespace: NS });
    pids.push((await c3.call(Task, "connect", { id: "g3" })).shimPid);
    await c3.call(Task, "shutdown", { id: "g3" });
    c3.close();
    client = await TtrpcClient.connect(a1, { namespace: NS });
    pids.unshift((await client.call(Task, "connect", { id: "g1" })).shimPid);
    for (const [id, b] of [["g1", b1], ["g2", b2]]) {
      await client.call(Task, "create", { id: id!, bundle: b! });
      await client.call(Task, "start", { id: id! });
      assert.equal(await shimPid(b!), pids[0]);
    }
    await client.call(Task, "kill", { id: "g1", signal: 9 });
    await client.call(Task, "wait", { id: "g1" });
    await client.call(Task, "delete", { id: "g1" });
    // g2 still runs: Shutdown is refused silently and the shim stays.
    await client.call(Task, "shutdown", { id: "g1" });
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(alive(pids[0]!));
    assert.equal((await client.call(Task, "state", { id: "g2" })).status, Status.RUNNING);
    await client.call(Task, "kill", { id: "g2", signal: 9 });
    await client.call(Task, "wait", { id: "g2" });
    await client.call(Task, "delete", { id: "g2" });
    await client.call(Task, "shutdown", { id: "g2" });
    await waitFor("the group's shim to exit", () => Promise.resolve(!alive(pids[0]!)));
    await waitFor("g3's shim to exit", () => Promise.resolve(!alive(pids[1]!)));
  } finally {
    await cleanup(w, client, pids);
  }
});

// ---- real containerd 1.6 driving berth's shim ----

const REFENV = "/work/shared/refenv/containerd";

async function sha256File(path: string): Promise<{ digest: string; size: number }> {
  const data = await Deno.readFile(path);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  const hex = [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
  return { digest: `sha256:${hex}`, size: data.length };
}

/** A one-layer OCI image archive of busybox, named `name`, for `ctr images import`. */
async function busyboxImageTar(dir: string, name: string): Promise<string> {
  const lay = `${dir}/layer`;
  const img = `${dir}/img`;
  await Deno.mkdir(`${lay}/bin`, { recursive: true });
  await Deno.mkdir(`${img}/blobs/sha256`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${lay}/bin/busybox`);
  await Deno.chmod(`${lay}/bin/busybox`, 0o755);
  for (const app of ["sh", "echo", "cat", "sleep", "true"]) {
    await Deno.symlink("busybox", `${lay}/bin/${app}`);
  }
  await run("tar", ["-C", lay, "-cf", `${dir}/layer.tar`, "bin"], { check: true });
  const blob = async (path: string) => {
    const d = await sha256File(path);
    await Deno.copyFile(path, `${img}/blobs/sha256/${d.digest.slice(7)}`);
    return d;
  };
  const layer = await blob(`${dir}/layer.tar`);
  const json = async (file: string, v: unknown) => {
    await Deno.writeTextFile(`${dir}/${file}`, JSON.stringify(v));
    return await blob(`${dir}/${file}`);
  };
  const config = await json("config.json", {
    architecture: "amd64",
    os: "linux",
    config: { Env: ["PATH=/bin"], Cmd: ["sh"] },
    rootfs: { type: "layers", diff_ids: [layer.digest] },
  });
  const manifest = await json("manifest.json", {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
  });
  await Deno.writeTextFile(`${img}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await Deno.writeTextFile(
    `${img}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        ...manifest,
        annotations: { "io.containerd.image.name": name },
        platform: { architecture: "amd64", os: "linux" },
      }],
    }),
  );
  await run("tar", ["-C", img, "-cf", `${dir}/image.tar`, "oci-layout", "index.json", "blobs"], {
    check: true,
  });
  return `${dir}/image.tar`;
}

Deno.test("shim: containerd 1.6 runs containers through berth's shim (io.containerd.berth.v2)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-shim-ctrd-" });
  const env = {
    REFENV_DIR: `${dir}/refenv`,
    PATH: `${REPO}/packaging:${Deno.env.get("PATH")}`,
    // containerd passes its environment to shims: a private runc root, so that
    // concurrent runs of this test (same container ids) cannot collide.
    BERTH_SHIM_STATE: `${dir}/st`,
  };
  // A hung call must not leave containerd behind: every ctr call has a deadline.
  const ctr = (args: string[], stdin?: string) =>
    run("timeout", ["-k", "5", "60", REFENV, "ctr", "-n", "shimtest", ...args], {
      env,
      ...(stdin === undefined ? {} : { stdin }),
    });
  const image = "localhost/berth-shim-test:latest";
  const rt = ["--runtime", "io.containerd.berth.v2"];
  try {
    const tar = await busyboxImageTar(dir, image);
    const started = await run(REFENV, ["start"], { env });
    assert.equal(started.code, 0, started.stderr);
    ok(await ctr(["images", "import", tar]), "ctr images import");

    const r = await ctr([
      "run",
      "--rm",
      ...rt,
      image,
      "r1",
      "sh",
      "-c",
      "echo hi; echo oops >&2; exit 3",
    ]);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, "hi\n");
    assert.match(r.stderr, /^oops$/m);

    // stdin through the FIFO ctr creates; ctr's CloseIO gives the container its EOF.
    const cat = await ctr(["run", "--rm", ...rt, image, "r3", "cat"], "piped through\n");
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout, "piped through\n");

    ok(await ctr(["run", "-d", ...rt, image, "r2", "sleep", "1000"]), "ctr run -d");
    assert.match((await ctr(["tasks", "ls"])).stdout, /r2\s+\d+\s+RUNNING/);
    const ex = await ctr([
      "tasks",
      "exec",
      "--exec-id",
      "e1",
      "r2",
      "sh",
      "-c",
      "echo from-exec; exit 2",
    ]);
    assert.equal(ex.code, 2);
    assert.equal(ex.stdout, "from-exec\n");
    const metrics = await ctr(["tasks", "metrics", "r2"]);
    assert.equal(metrics.code, 0, metrics.stderr);
    assert.match(metrics.stdout, /pids\.current\s+1\b/);
    assert.match(metrics.stdout, /memory\.usage_in_bytes\s+[1-9]/);
    ok(await ctr(["tasks", "pause", "r2"]), "ctr tasks pause");
    assert.match((await ctr(["tasks", "ls"])).stdout, /r2\s+\d+\s+PAUSED/);
    ok(await ctr(["tasks", "resume", "r2"]), "ctr tasks resume");
    ok(await ctr(["tasks", "kill", "-s", "SIGKILL", "r2"]), "ctr tasks kill");
    await waitFor(
      "r2 to stop",
      async () => /r2\s+\d+\s+STOPPED/.test((await ctr(["tasks", "ls"])).stdout),
    );
    ok(await ctr(["tasks", "rm", "r2"]), "ctr tasks rm");
    ok(await ctr(["containers", "rm", "r2"]), "ctr containers rm");
    assert.doesNotMatch((await ctr(["tasks", "ls"])).stdout, /r2/);
  } finally {
    await run(REFENV, ["stop"], { env });
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/** Children of `ppid` as /proc shows them: pid and state letter. */
function childrenOf(ppid: number): { pid: number; state: string }[] {
  const out: { pid: number; state: string }[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const [state, parent] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(parent) === ppid) out.push({ pid: Number(e.name), state: state! });
    } catch { /* gone */ }
  }
  return out;
}

Deno.test("shim: in the host pid namespace, orphans are reaped and killed with their init", async () => {
  const w = await world();
  let client: TtrpcClient | undefined;
  const pids: number[] = [];
  try {
    const b = await bundle(
      w,
      "c6",
      ["sh", "-c", "(sleep 0.2 &); (sleep 1000 &); exec sleep 1000"],
      (s) => {
        const linux = s.linux as { namespaces: { type: string }[] };
        linux.namespaces = linux.namespaces.filter((n) => n.type !== "pid");
      },
    );
    const address = await startShim(w, "c6", b);
    const shim = await shimPid(b);
    pids.push(shim);
    client = await TtrpcClient.connect(address, { namespace: NS });
    const { pid } = await client.call(Task, "create", { id: "c6", bundle: b });
    await client.call(Task, "start", { id: "c6" });
    // The two orphaned sleeps became the shim's children; the short one's exit is collected.
    await waitFor(
      "the orphans to reach the shim",
      () => Promise.resolve(childrenOf(shim).filter((c) => c.pid !== pid).length >= 1),
    );
    await new Promise((r) => setTimeout(r, 500));
    await waitFor(
      "the exited orphan to be reaped",
      () => Promise.resolve(childrenOf(shim).every((c) => c.state !== "Z")),
      8000,
    );
    const orphan = childrenOf(shim).find((c) => c.pid !== pid);
    assert.ok(orphan, "the long-running orphan is the shim's child");
    // Its init ends: the shim kills what is left of the container (it has no pid namespace).
    await client.call(Task, "kill", { id: "c6", signal: 9 });
    assert.equal((await client.call(Task, "wait", { id: "c6" })).exitStatus, 137);
    await waitFor(
      "the orphan to be killed and reaped",
      () => Promise.resolve(!alive(orphan.pid) && childrenOf(shim).length === 0),
      8000,
    );
    await client.call(Task, "delete", { id: "c6" });
    await client.call(Task, "shutdown", { id: "c6" });
  } finally {
    await cleanup(w, client, pids);
  }
});

Deno.test("shim: an OOM kill is reported as /tasks/oom, then the exit", async () => {
  const w = await world();
  let client: TtrpcClient | undefined;
  const pids: number[] = [];
  try {
    const b = await bundle(w, "c7", ["sh", "-c", "a=0123456789; while :; do a=$a$a; done"], (s) => {
      const linux = s.linux as { resources: Record<string, unknown> };
      linux.resources.memory = { limit: 16 * 1024 * 1024 };
    });
    const address = await startShim(w, "c7", b);
    pids.push(await shimPid(b));
    client = await TtrpcClient.connect(address, { namespace: NS });
    await client.call(Task, "create", { id: "c7", bundle: b });
    await client.call(Task, "start", { id: "c7" });
    assert.equal((await client.call(Task, "wait", { id: "c7" })).exitStatus, 137);
    await w.sink.waitTopic("c7", "/tasks/oom");
    await client.call(Task, "delete", { id: "c7" });
    await w.sink.waitTopic("c7", "/tasks/delete");
    assert.equal(w.sink.topics("c7").filter((t) => t === "/tasks/oom").length, 1);
    await client.call(Task, "shutdown", { id: "c7" });
  } finally {
    await cleanup(w, client, pids);
  }
});
