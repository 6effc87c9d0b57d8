/**
 * berth's ttrpc against the real thing: Debian's containerd-shim-runc-v2
 * (containerd 1.6.20, Go ttrpc 1.1) started with the shim v2 binary protocol.
 *
 * - berth's client drives the real shim's containerd.task.v2.Task service.
 * - The real shim's Go ttrpc client forwards its task events to berth's
 *   server (containerd.services.events.ttrpc.v1.Events/Forward on
 *   TTRPC_ADDRESS), which is exactly how a shim reports exits to a daemon.
 *
 * Needs root, runc and containerd-shim-runc-v2 (Debian packages).
 */
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { Task } from "../src/gen/containerd/task/v2/shim_pb.ts";
import { type Envelope, Events } from "../src/gen/containerd/services/ttrpc/events/v1/events_pb.ts";
import {
  TaskCreateSchema,
  TaskDeleteSchema,
  TaskExitSchema,
  TaskStartSchema,
} from "../src/gen/containerd/events/task_pb.ts";
import { Status } from "../src/gen/containerd/types/task/task_pb.ts";
import { TtrpcClient } from "../src/ttrpc/client.ts";
import { TtrpcServer } from "../src/ttrpc/server.ts";
import { isKind } from "../src/core/errdefs.ts";
import { Logger } from "../src/util/log.ts";
import { run, waitFor } from "./_harness.ts";

const SHIM = "/usr/bin/containerd-shim-runc-v2";

interface ShimRun {
  dir: string;
  bundle: string;
  ns: string;
  id: string;
  address: string;
  /** The shim's own log (its `log` FIFO, drained by cat). */
  log(): Promise<string>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Makes a bundle (busybox rootfs, config.json from `runc spec` running `cmd`)
 * and runs `containerd-shim-runc-v2 start` in it, as containerd does.
 */
async function startShim(cmd: string[], ttrpcAddress: string): Promise<ShimRun> {
  const dir = await Deno.makeTempDir({ prefix: "berth-shim-interop-" });
  const bundle = `${dir}/bundle`;
  const suffix = crypto.randomUUID().slice(0, 8);
  const ns = `berth-ttrpc-${suffix}`;
  const id = `t-${suffix}`;
  await Deno.mkdir(`${bundle}/rootfs/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${bundle}/rootfs/bin/busybox`);
  await Deno.chmod(`${bundle}/rootfs/bin/busybox`, 0o755);
  await run("runc", ["spec", "--bundle", bundle], { check: true });
  const spec = JSON.parse(await Deno.readTextFile(`${bundle}/config.json`));
  spec.process.terminal = false;
  spec.process.args = cmd;
  spec.root.readonly = false;
  await Deno.writeTextFile(`${bundle}/config.json`, JSON.stringify(spec));
  // The serving shim writes its log to the FIFO `log` in its working directory
  // (containerd reads it); it refuses to start without one.
  await run("mkfifo", [`${bundle}/log`], { check: true });
  const cat = new Deno.Command("sh", {
    args: ["-c", `exec cat "${bundle}/log" > "${dir}/shim.log"`],
    stdin: "null",
  }).spawn();
  const start = await run(SHIM, [
    "-namespace",
    ns,
    "-id",
    id,
    "-address",
    `${dir}/containerd.sock`,
    "-publish-binary",
    "/bin/false",
    "start",
  ], { cwd: bundle, env: { TTRPC_ADDRESS: ttrpcAddress } });
  const cleanup = async () => {
    // Whatever the test left behind: the shim, the container, runc's state, the FIFO reader.
    const addr = start.stdout.trim().replace(/^unix:\/\//, "");
    const pid = await shimPid(ns, id);
    if (pid) Deno.kill(pid, "SIGKILL");
    await run("runc", ["--root", `/run/containerd/runc/${ns}`, "delete", "--force", id]);
    await Deno.remove(`/run/containerd/runc/${ns}`, { recursive: true }).catch(() => {});
    if (addr) await Deno.remove(addr).catch(() => {});
    try {
      cat.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await cat.status;
    await Deno.remove(dir, { recursive: true });
  };
  if (start.code !== 0 || !start.stdout.startsWith("unix://")) {
    await cleanup();
    throw new Error(`shim start failed (${start.code}): ${start.stdout} ${start.stderr}`);
  }
  return {
    dir,
    bundle,
    ns,
    id,
    address: start.stdout.trim(),
    log: () => Deno.readTextFile(`${dir}/shim.log`).catch(() => ""),
    [Symbol.asyncDispose]: cleanup,
  };
}

/** The pid of the serving shim for (ns, id), found by its command line. */
async function shimPid(ns: string, id: string): Promise<number | undefined> {
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    let argv: string[];
    try {
      argv = (await Deno.readTextFile(`/proc/${e.name}/cmdline`)).split("\0");
    } catch {
      continue;
    }
    if (
      argv[0] === SHIM && argv.includes(ns) && argv.includes(id) && !argv.includes("start")
    ) {
      const stat = await Deno.readTextFile(`/proc/${e.name}/stat`).catch(() => "");
      if (!/\) Z /.test(stat)) return Number(e.name);
    }
  }
  return undefined;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test("berth's ttrpc client calls Connect and Shutdown on the real containerd-shim-runc-v2", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-ttrpc-" });
  try {
    await using shim = await startShim(["/bin/busybox", "true"], `${tmp}/events.sock`);
    const pid = await shimPid(shim.ns, shim.id);
    assert.ok(pid, "the serving shim runs");
    const socket = shim.address.slice("unix://".length);
    assert.ok(await exists(socket));
    assert.equal(await Deno.readTextFile(`${shim.bundle}/address`), shim.address);

    const client = await TtrpcClient.connect(shim.address, { namespace: shim.ns });
    try {
      const c = await client.call(Task, "connect", { id: shim.id });
      assert.equal(c.shimPid, pid);
      assert.equal(c.taskPid, 0); // No container was created.

      // The shim's own errors come back with their kind and text.
      const err = await client.call(Task, "state", { id: shim.id }).catch((e) => e);
      assert.ok(isKind(err, "not_found"), String(err));
      assert.equal(err.message, "container not created: not found");

      const bye = await client.call(Task, "shutdown", { id: shim.id });
      assert.equal(bye.$typeName, "google.protobuf.Empty");
      // The shim exits after answering: the connection ends, the socket goes away.
      await client.done;
      assert.ok(client.closed);
      await waitFor("the shim to exit", async () => !(await shimPid(shim.ns, shim.id)));
      await waitFor("the shim socket to be removed", async () => !(await exists(socket)));
    } finally {
      client.close();
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("the real shim forwards its task events to berth's ttrpc server", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-ttrpc-" });
  const received: { ns: string | undefined; env: Envelope }[] = [];
  const server = new TtrpcServer({ log: new Logger("error", {}, () => {}) });
  server.register(Events, {
    forward: (req, ctx) => {
      received.push({ ns: ctx.namespaceOrUndefined, env: req.envelope! });
      return {};
    },
  });
  server.listen(`${tmp}/events.sock`);
  try {
    await using shim = await startShim(
      ["/bin/busybox", "sh", "-c", "echo hi from busybox; echo oops >&2; exit 3"],
      `${tmp}/events.sock`,
    );
    const client = await TtrpcClient.connect(shim.address, { namespace: shim.ns });
    const topic = async (t: string) => {
      await waitFor(
        `event ${t} (shim log: ${await shim.log()})`,
        () => received.some((e) => e.env.topic === t),
      );
      const e = received.find((x) => x.env.topic === t)!;
      // Namespace both in the ttrpc metadata of the Forward call and in the envelope.
      assert.equal(e.ns, shim.ns);
      assert.equal(e.env.namespace, shim.ns);
      assert.ok(e.env.timestamp && Number(e.env.timestamp.seconds) > 1_600_000_000);
      return e.env.event!;
    };
    try {
      const out = `${shim.dir}/out.log`;
      const created = await client.call(Task, "create", {
        id: shim.id,
        bundle: shim.bundle,
        stdout: `file://${out}`,
        stderr: `file://${out}`,
      });
      assert.ok(created.pid > 0);
      const ce = await topic("/tasks/create");
      assert.equal(ce.typeUrl, "containerd.events.TaskCreate");
      const create = fromBinary(TaskCreateSchema, ce.value);
      assert.equal(create.containerId, shim.id);
      assert.equal(create.bundle, shim.bundle);
      assert.equal(create.pid, created.pid);
      assert.equal(create.io?.stdout, `file://${out}`);

      const state = await client.call(Task, "state", { id: shim.id });
      assert.equal(state.status, Status.CREATED);
      assert.equal(state.pid, created.pid);

      const started = await client.call(Task, "start", { id: shim.id });
      assert.equal(started.pid, created.pid);
      const start = fromBinary(TaskStartSchema, (await topic("/tasks/start")).value);
      assert.deepEqual([start.containerId, start.pid], [shim.id, created.pid]);

      const waited = await client.call(Task, "wait", { id: shim.id }, { timeout: 10_000 });
      assert.equal(waited.exitStatus, 3);
      const exit = fromBinary(TaskExitSchema, (await topic("/tasks/exit")).value);
      assert.equal(exit.containerId, shim.id);
      assert.equal(exit.id, shim.id);
      assert.equal(exit.pid, created.pid);
      assert.equal(exit.exitStatus, 3);
      assert.ok(exit.exitedAt);
      // stdout and stderr reach the file through separate pipes copied by the shim:
      // their order may vary, and the copies may finish just after the exit is reported.
      const text = () => Deno.readTextFile(out).catch(() => "");
      await waitFor("both output lines", async () => (await text()).split("\n").length === 3, 5000);
      const lines = (await text()).split("\n");
      assert.deepEqual(lines.sort(), ["", "hi from busybox", "oops"]);

      const deleted = await client.call(Task, "delete", { id: shim.id });
      assert.equal(deleted.exitStatus, 3);
      assert.equal(deleted.pid, created.pid);
      const del = fromBinary(TaskDeleteSchema, (await topic("/tasks/delete")).value);
      assert.deepEqual([del.containerId, del.pid, del.exitStatus], [shim.id, created.pid, 3]);

      await client.call(Task, "shutdown", { id: shim.id });
      await client.done;
      await waitFor("the shim to exit", async () => !(await shimPid(shim.ns, shim.id)));
      assert.deepEqual(received.map((e) => e.env.topic), [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
      ]);
    } finally {
      client.close();
    }
  } finally {
    server.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
