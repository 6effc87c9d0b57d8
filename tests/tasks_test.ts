/**
 * Tasks end to end: a real daemon starts real shims (Debian's
 * containerd-shim-runc-v2, and berth's own shim) that run real runc, driven
 * by Debian's `ctr` and by the tasks API.
 */
import assert from "node:assert/strict";
import { ok, run, startDaemon, type TestDaemon, waitFor } from "./_harness.ts";
import { busyboxImageArchive, busyboxRootfs } from "./_images.ts";
import { Client } from "../src/cmd/cli/client.ts";
import { Containers } from "../src/gen/containerd/services/containers/v1/containers_pb.ts";
import { Tasks } from "../src/gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Status } from "../src/gen/containerd/types/task/task_pb.ts";
import { Events } from "../src/gen/containerd/services/events/v1/events_pb.ts";
import type { Envelope } from "../src/gen/containerd/services/events/v1/events_pb.ts";
import { TaskExitSchema } from "../src/gen/containerd/events/task_pb.ts";
import { fromBinary } from "@bufbuild/protobuf";
import { DEFAULT_PATH_ENV, generateSpec } from "../src/oci/spec.ts";
import { withArgs, withEnv } from "../src/oci/spec_opts.ts";
import { isKind } from "../src/core/errdefs.ts";

const SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const DEBIAN_SHIM = "/usr/bin/containerd-shim-runc-v2";
const NS = "default";

/** A runtime mapping for the daemon's config file. */
type Shim = "debian" | "berth";

function configFor(shim: Shim): string {
  return shim === "debian"
    ? `[runtimes."io.containerd.runc.v2"]\nbinary = "${DEBIAN_SHIM}"\n`
    : `[runtimes."io.containerd.runc.v2"]\nshim = "berth"\n`;
}

/**
 * A daemon whose io.containerd.runc.v2 runs `shim`: Debian's through the
 * config file, berth's by default (no config at all).
 */
async function daemonWith(shim: Shim, extraToml = ""): Promise<TestDaemon> {
  const dir = await Deno.makeTempDir({ prefix: "berth-tasks-" });
  if (shim === "berth" && !extraToml) return await startDaemon({ dir });
  await Deno.writeTextFile(`${dir}/config.toml`, extraToml + configFor(shim));
  return await startDaemon({ dir, extraArgs: ["--config", `${dir}/config.toml`] });
}

function uniq(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

/** Creates container `id` through the containers API with a default spec running `args`. */
async function createContainer(
  c: Client,
  id: string,
  args: string[],
  snapshot?: { snapshotter: string; key: string },
  runtime = "io.containerd.runc.v2",
): Promise<void> {
  const spec = await generateSpec(
    { namespace: NS, id },
    withArgs(args),
    withEnv([DEFAULT_PATH_ENV]),
  );
  await c.call(Containers, "create", {
    container: {
      id,
      runtime: { name: runtime },
      spec: { typeUrl: SPEC_URL, value: new TextEncoder().encode(JSON.stringify(spec)) },
      ...(snapshot ? { snapshotter: snapshot.snapshotter, snapshotKey: snapshot.key } : {}),
    },
  });
}

/**
 * A native snapshot holding a busybox rootfs, so that `ctr tasks start`
 * (which asks the snapshotter for the rootfs mounts itself) has one.
 */
async function busyboxSnapshot(d: TestDaemon, key: string): Promise<void> {
  ok(await d.ctr(["snapshots", "--snapshotter", "native", "prepare", key]), "snapshot prepare");
  const m = ok(await d.ctr(["snapshots", "--snapshotter", "native", "mounts", "/x", key]));
  const src = m.stdout.match(/mount -t bind (\S+) \/x/)?.[1];
  assert.ok(src, `bind mount of the snapshot in: ${m.stdout}`);
  await busyboxRootfs(src);
}

/** `ctr tasks ls` as id → [pid, status]. */
async function tasksLs(d: TestDaemon): Promise<Map<string, [string, string]>> {
  const out = ok(await d.ctr(["tasks", "ls"]), "ctr tasks ls").stdout;
  const m = new Map<string, [string, string]>();
  for (const line of out.trim().split("\n").slice(1)) {
    const [id, pid, status] = line.trim().split(/\s+/);
    if (id && pid && status) m.set(id, [pid, status]);
  }
  return m;
}

/** Pids of the shims started for daemon `d`: their `-address` is its socket. */
async function shimPids(d: TestDaemon): Promise<number[]> {
  const out: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const argv = (await Deno.readTextFile(`/proc/${e.name}/cmdline`)).split("\0");
      const i = argv.indexOf("-address");
      if (i >= 0 && argv[i + 1] === d.sock && alive(Number(e.name))) out.push(Number(e.name));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    const st = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(st);
  } catch {
    return false;
  }
}

/**
 * Removes whatever a failed test may leave: its tasks (through the daemon),
 * then shims started for this daemon and their containers, then mounts.
 */
async function cleanup(d: TestDaemon, ids: string[]): Promise<void> {
  if (d.pid !== undefined) {
    for (const id of ids) {
      await d.ctr(["tasks", "kill", "-s", "SIGKILL", id]);
      await d.ctr(["tasks", "delete", "-f", id]);
    }
  }
  await d.stop();
  // Shims of this daemon carry its socket path in their arguments.
  for (const pid of await shimPids(d)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  for (const id of ids) {
    for (const root of ["/run/containerd/runc/default", `${d.state}/runc/default`]) {
      await run("runc", ["--root", root, "delete", "-f", id]);
    }
  }
  const mounts = await Deno.readTextFile("/proc/self/mountinfo");
  const under = mounts.split("\n").map((l) => l.split(" ")[4] ?? "").filter((p) =>
    p.startsWith(d.dir)
  ).reverse();
  for (const p of under) await run("umount", ["-l", p]);
}

async function lifecycleWithCtr(shim: Shim): Promise<void> {
  const d = await daemonWith(shim);
  const id = uniq("t");
  const hello = uniq("hello");
  const c = new Client({ address: d.sock, namespace: NS });
  try {
    await busyboxSnapshot(d, `${id}-snap`);
    // pid 1 ignores signals it has no handler for: trap TERM to exit 42.
    await createContainer(c, id, ["sh", "-c", "trap 'exit 42' TERM; sleep 300 & wait"], {
      snapshotter: "native",
      key: `${id}-snap`,
    });

    ok(await d.ctr(["tasks", "start", "-d", id]), "ctr tasks start -d");
    const ls = await tasksLs(d);
    const [pid, status] = ls.get(id) ?? [];
    assert.equal(status, "RUNNING", `ctr tasks ls: ${[...ls]}`);
    assert.ok(Number(pid) > 1 && alive(Number(pid)), `pid ${pid} is a live process`);

    const ps = ok(await d.ctr(["tasks", "ps", id]), "ctr tasks ps").stdout;
    assert.match(ps, new RegExp(`^${pid}\\s`, "m"));

    const exec = ok(
      await d.ctr(["tasks", "exec", "--exec-id", "e1", id, "sh", "-c", "echo hi"]),
      "ctr tasks exec",
    );
    assert.equal(exec.stdout, "hi\n");

    ok(await d.ctr(["tasks", "pause", id]), "ctr tasks pause");
    assert.equal((await tasksLs(d)).get(id)?.[1], "PAUSED");
    ok(await d.ctr(["tasks", "resume", id]), "ctr tasks resume");
    assert.equal((await tasksLs(d)).get(id)?.[1], "RUNNING");

    const metrics = ok(await d.ctr(["tasks", "metrics", id]), "ctr tasks metrics").stdout;
    assert.match(metrics, new RegExp(`^${id}\\s`, "m"));

    // A running task cannot be deleted, and the container of a task cannot either.
    const del = await d.ctr(["tasks", "delete", id]);
    assert.notEqual(del.code, 0);
    assert.match(del.stderr, /FailedPrecondition|failed precondition/i);
    assert.match(del.stderr, /running/);
    await assert.rejects(
      c.call(Containers, "delete", { id }),
      (e) => isKind(e, "failed_precondition"),
    );

    ok(await d.ctr(["tasks", "kill", id]), "ctr tasks kill");
    await waitFor("the task to stop", async () => (await tasksLs(d)).get(id)?.[1] === "STOPPED");

    const rm = ok(await d.ctr(["tasks", "delete", id]), "ctr tasks delete");
    // ctr reports the exit status it got from Delete.
    assert.match(rm.stderr, /exit with non-zero exit code 42/);
    assert.equal((await tasksLs(d)).has(id), false);
    assert.equal(alive(Number(pid)), false);
    ok(await d.ctr(["containers", "rm", id]), "ctr containers rm");

    // Attached: ctr relays the task's stdout and stderr through FIFOs, then
    // deletes the task and exits with its code.
    await busyboxSnapshot(d, `${hello}-snap`);
    await createContainer(c, hello, ["sh", "-c", "echo out; echo err >&2; exit 3"], {
      snapshotter: "native",
      key: `${hello}-snap`,
    });
    const att = await d.ctr(["tasks", "start", hello]);
    assert.equal(att.code, 3, `ctr tasks start: ${JSON.stringify(att)}`);
    assert.equal(att.stdout, "out\n");
    assert.match(att.stderr, /^err$/m);
    assert.equal((await tasksLs(d)).has(hello), false);
    await waitFor("the shim to exit", async () => (await shimPids(d)).length === 0);
  } finally {
    c.close();
    await cleanup(d, [id, hello]);
    await Deno.remove(d.dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("tasks: ctr start, ls, ps, exec, kill, delete through Debian's shim", async () => {
  await lifecycleWithCtr("debian");
});

Deno.test("tasks: ctr start, ls, ps, exec, kill, delete through berth's shim", async () => {
  await lifecycleWithCtr("berth");
});

async function lifecycleWithApi(shim: Shim): Promise<void> {
  const d = await daemonWith(shim);
  const id = uniq("api");
  const bad = uniq("bad");
  const c = new Client({ address: d.sock, namespace: NS });
  const stop = new AbortController();
  const topics: string[] = [];
  const events = (async () => {
    for await (
      const e of c.stream(Events, "subscribe", { filters: [`topic~="/tasks/"`] }, stop.signal)
    ) {
      const ev = e as { topic: string; namespace: string };
      if (ev.namespace === NS) topics.push(ev.topic);
    }
  })();
  try {
    const rootfs = await busyboxRootfs(`${d.dir}/rootfs-${id}`);
    const bind = [{ type: "bind", source: rootfs, options: ["rbind", "rw"] }];
    await createContainer(c, id, ["sh", "-c", "sleep 0.5; exit 7"]);

    const created = await c.call(Tasks, "create", { containerId: id, rootfs: bind });
    assert.ok(created.pid > 1);
    await assert.rejects(
      c.call(Tasks, "create", { containerId: id, rootfs: bind }),
      (e) => isKind(e, "already_exists"),
    );
    let got = await c.call(Tasks, "get", { containerId: id });
    assert.equal(got.process?.status, Status.CREATED);
    assert.equal(got.process?.pid, created.pid);

    const started = await c.call(Tasks, "start", { containerId: id });
    assert.equal(started.pid, created.pid);
    got = await c.call(Tasks, "get", { containerId: id });
    assert.equal(got.process?.status, Status.RUNNING);
    await assert.rejects(
      c.call(Tasks, "delete", { containerId: id }),
      (e) => isKind(e, "failed_precondition") && /running/.test((e as Error).message),
    );
    await assert.rejects(
      c.call(Tasks, "checkpoint", { containerId: id }),
      (e) => isKind(e, "not_implemented") && /checkpoint/.test((e as Error).message),
    );

    const waited = await c.call(Tasks, "wait", { containerId: id });
    assert.equal(waited.exitStatus, 7);
    got = await c.call(Tasks, "get", { containerId: id });
    assert.equal(got.process?.status, Status.STOPPED);
    assert.equal(got.process?.exitStatus, 7);

    const deleted = await c.call(Tasks, "delete", { containerId: id });
    assert.equal(deleted.exitStatus, 7);
    assert.equal(deleted.pid, created.pid);
    await assert.rejects(
      c.call(Tasks, "get", { containerId: id }),
      (e) => isKind(e, "not_found"),
    );
    await assert.rejects(Deno.stat(`${d.state}/tasks/${NS}/${id}`), Deno.errors.NotFound);

    // Events the shim forwarded to the daemon's ttrpc socket reach subscribers.
    await waitFor("task events", () => topics.includes("/tasks/delete"));
    for (const t of ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]) {
      assert.ok(topics.includes(t), `${t} in ${topics}`);
    }

    // runc's own words for a command missing from the rootfs; nothing is left behind.
    await createContainer(c, bad, ["/no/such/binary"]);
    await assert.rejects(
      c.call(Tasks, "create", { containerId: bad, rootfs: bind }),
      (e) => /no such file or directory|not found/.test((e as Error).message),
    );
    await assert.rejects(Deno.stat(`${d.state}/tasks/${NS}/${bad}`), Deno.errors.NotFound);
    assert.deepEqual((await c.call(Tasks, "list", {})).tasks, []);
    await assert.rejects(
      c.call(Tasks, "create", { containerId: "nope", rootfs: bind }),
      (e) => isKind(e, "not_found") && /container "nope"/.test((e as Error).message),
    );
    await waitFor("the shims to exit", async () => (await shimPids(d)).length === 0);
  } finally {
    stop.abort();
    await events.catch(() => {});
    c.close();
    await cleanup(d, [id, bad]);
    await Deno.remove(d.dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("tasks API: create, start, wait, exit codes, events, bad input (Debian's shim)", async () => {
  await lifecycleWithApi("debian");
});

Deno.test("tasks API: create, start, wait, exit codes, events, bad input (berth's shim)", async () => {
  await lifecycleWithApi("berth");
});

/** The pid of the long-lived shim serving task `id` of daemon `d`. */
async function shimPidOf(d: TestDaemon, id: string): Promise<number> {
  for (const pid of await shimPids(d)) {
    const argv = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
    const i = argv.indexOf("-id");
    if (i >= 0 && argv[i + 1] === id && !argv.includes("start")) return pid;
  }
  throw new Error(`No shim process for task ${id}`);
}

async function survivesDaemonCrash(shim: Shim): Promise<void> {
  // One shim per container, so that killing one task's shim leaves the others
  // (berth's default shares one shim per namespace; tests/daemonless_test.ts covers that).
  const d = await daemonWith(shim, 'shim_group = "container"\n');
  const [long, ends, orphan] = [uniq("long"), uniq("ends"), uniq("orphan")];
  const c = new Client({ address: d.sock, namespace: NS });
  try {
    const rootfs = await busyboxRootfs(`${d.dir}/rootfs`);
    const bind = [{ type: "bind", source: rootfs, options: ["rbind", "rw"] }];
    await createContainer(c, long, ["sh", "-c", "trap 'exit 42' TERM; sleep 300 & wait"]);
    await createContainer(c, ends, [
      "sh",
      "-c",
      `while [ ! -e /tmp/go-${ends} ]; do sleep 0.1; done; exit 5`,
    ]);
    await createContainer(c, orphan, ["sleep", "300"]);
    const pids = new Map<string, number>();
    for (const id of [long, ends, orphan]) {
      await c.call(Tasks, "create", { containerId: id, rootfs: bind });
      pids.set(id, (await c.call(Tasks, "start", { containerId: id })).pid);
    }
    const orphanShim = await shimPidOf(d, orphan);

    // A crash: the tasks keep running without the daemon.
    c.close();
    await d.kill();
    for (const [id, pid] of pids) assert.ok(alive(pid), `${id} (pid ${pid}) runs on`);
    // While it is down, one task ends on its own and one shim dies.
    await Deno.writeTextFile(`${rootfs}/tmp/go-${ends}`, "");
    await waitFor(`${ends} to exit`, () => !alive(pids.get(ends)!));
    Deno.kill(orphanShim, "SIGKILL");
    await waitFor("the orphan's shim to die", () => !alive(orphanShim));

    await d.start();
    const ls = await tasksLs(d);
    assert.deepEqual(ls.get(long), [String(pids.get(long)), "RUNNING"], `ls: ${[...ls]}`);
    assert.equal(ls.get(ends)?.[1], "STOPPED", `ls: ${[...ls]}`);
    // The dead shim was cleaned up: its task, container process and bundle are gone.
    assert.equal(ls.has(orphan), false, `ls: ${[...ls]}`);
    await waitFor("the orphan's container to be killed", () => !alive(pids.get(orphan)!));
    await assert.rejects(Deno.stat(`${d.state}/tasks/${NS}/${orphan}`), Deno.errors.NotFound);

    const c2 = new Client({ address: d.sock, namespace: NS });
    try {
      const got = await c2.call(Tasks, "get", { containerId: ends });
      assert.equal(got.process?.exitStatus, 5);
    } finally {
      c2.close();
    }
    const rm = ok(await d.ctr(["tasks", "delete", ends]), "ctr tasks delete");
    assert.match(rm.stderr, /exit with non-zero exit code 5\b/);

    // The reloaded task is fully usable.
    const exec = ok(await d.ctr(["tasks", "exec", "--exec-id", "e2", long, "echo", "back"]));
    assert.equal(exec.stdout, "back\n");
    ok(await d.ctr(["tasks", "kill", long]));
    await waitFor(
      "the long task to stop",
      async () => (await tasksLs(d)).get(long)?.[1] === "STOPPED",
    );
    const rmLong = ok(await d.ctr(["tasks", "delete", long]));
    assert.match(rmLong.stderr, /exit with non-zero exit code 42/);
    await waitFor("the shims to exit", async () => (await shimPids(d)).length === 0);
  } catch (err) {
    if (Deno.env.get("TASKS_TEST_LOG")) console.error((await d.log()).slice(-6000));
    throw err;
  } finally {
    c.close();
    await cleanup(d, [long, ends, orphan]);
    await Deno.remove(d.dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("tasks: survive kill -9 of the daemon; exits meanwhile and dead shims reconciled (Debian's shim)", async () => {
  await survivesDaemonCrash("debian");
});

Deno.test("tasks: survive kill -9 of the daemon; exits meanwhile and dead shims reconciled (berth's shim)", async () => {
  await survivesDaemonCrash("berth");
});

Deno.test("tasks: runtime names resolve as in containerd; a shim that dies is cleaned up and its exit published", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-tasks-" });
  // A mapped runtime whose runc options name a missing OCI runtime binary.
  await Deno.writeTextFile(
    `${dir}/config.toml`,
    `[runtimes."io.containerd.bogus.v2"]\nbinary = "${DEBIAN_SHIM}"\n` +
      `options = { binary_name = "no-such-runc" }\n`,
  );
  const d = await startDaemon({ dir, extraArgs: ["--config", `${dir}/config.toml`] });
  const [dies, nope, bad, bogus] = [uniq("dies"), uniq("nope"), uniq("bad"), uniq("bogus")];
  const c = new Client({ address: d.sock, namespace: NS });
  const stop = new AbortController();
  const seen: Envelope[] = [];
  const events = (async () => {
    for await (
      const e of c.stream(Events, "subscribe", { filters: [`topic=="/tasks/exit"`] }, stop.signal)
    ) seen.push(e as Envelope);
  })();
  try {
    const rootfs = await busyboxRootfs(`${d.dir}/rootfs`);
    const bind = [{ type: "bind", source: rootfs, options: ["rbind", "rw"] }];

    await createContainer(c, nope, ["true"], undefined, "io.containerd.nope.v1");
    await assert.rejects(
      c.call(Tasks, "create", { containerId: nope, rootfs: bind }),
      (e) => isKind(e, "not_found") && /containerd-shim-nope-v1/.test((e as Error).message),
    );
    await createContainer(c, bad, ["true"], undefined, "nodots");
    await assert.rejects(
      c.call(Tasks, "create", { containerId: bad, rootfs: bind }),
      (e) => isKind(e, "invalid_argument") && /runtime name "nodots"/.test((e as Error).message),
    );

    await createContainer(c, bogus, ["true"], undefined, "io.containerd.bogus.v2");
    await assert.rejects(
      c.call(Tasks, "create", { containerId: bogus, rootfs: bind }),
      (e) => /no-such-runc/.test((e as Error).message),
    );
    await assert.rejects(Deno.stat(`${d.state}/tasks/${NS}/${bogus}`), Deno.errors.NotFound);

    // An absolute path as the runtime name is the shim binary itself.
    await createContainer(c, dies, ["sleep", "300"], undefined, DEBIAN_SHIM);
    await c.call(Tasks, "create", { containerId: dies, rootfs: bind });
    const { pid } = await c.call(Tasks, "start", { containerId: dies });
    const argv = await Deno.readTextFile(`/proc/${await shimPidOf(d, dies)}/cmdline`);
    assert.ok(argv.startsWith(DEBIAN_SHIM), `the shim runs ${DEBIAN_SHIM}: ${argv}`);

    Deno.kill(await shimPidOf(d, dies), "SIGKILL");
    await waitFor("the dead shim's task to go", async () => {
      try {
        await c.call(Tasks, "get", { containerId: dies });
        return false;
      } catch (e) {
        return isKind(e, "not_found");
      }
    });
    await waitFor("the container to be killed", () => !alive(pid));
    await waitFor("the exit event", () => seen.length > 0);
    const exit = fromBinary(TaskExitSchema, seen[0]!.event!.value);
    assert.equal(exit.containerId, dies);
    assert.equal(exit.exitStatus, 137);
    await assert.rejects(Deno.stat(`${d.state}/tasks/${NS}/${dies}`), Deno.errors.NotFound);
    // The daemon keeps serving.
    assert.deepEqual((await c.call(Tasks, "list", {})).tasks, []);
  } finally {
    stop.abort();
    await events.catch(() => {});
    c.close();
    await cleanup(d, [dies, nope, bad, bogus]);
    await Deno.remove(d.dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("tasks: a bad runtime mapping in the config stops the daemon with a clear error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-tasks-" });
  try {
    await Deno.writeTextFile(
      `${dir}/config.toml`,
      `[runtimes."io.containerd.x.v1"]\nshim = "other"\n`,
    );
    await assert.rejects(
      startDaemon({ dir, extraArgs: ["--config", `${dir}/config.toml`] }),
      /runtimes\."io\.containerd\.x\.v1"\.shim must be "berth"/,
    );
    await Deno.writeTextFile(
      `${dir}/config.toml`,
      `[runtimes."io.containerd.x.v1"]\nbinary = "shim"\n`,
    );
    await assert.rejects(
      startDaemon({ dir, extraArgs: ["--config", `${dir}/config.toml`] }),
      /binary must be an absolute path/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

async function ctrRun(shim: Shim): Promise<void> {
  const d = await daemonWith(shim);
  const [r1, r2] = [uniq("run"), uniq("rund")];
  try {
    const archive = await busyboxImageArchive(`${d.dir}/image`);
    ok(await d.ctr(["images", "import", archive]), "ctr images import");
    const img = "localhost/tasks-bb:latest";

    const r = ok(await d.ctr(["run", "--rm", img, r1, "echo", "hi"]), "ctr run --rm");
    assert.equal(r.stdout, "hi\n");
    assert.equal((await tasksLs(d)).has(r1), false);
    assert.doesNotMatch(ok(await d.ctr(["containers", "ls", "-q"])).stdout, new RegExp(r1));

    ok(await d.ctr(["run", "-d", img, r2, "sleep", "300"]), "ctr run -d");
    assert.equal((await tasksLs(d)).get(r2)?.[1], "RUNNING");
    ok(await d.ctr(["tasks", "kill", "-s", "SIGKILL", r2]));
    await waitFor("the task to stop", async () => (await tasksLs(d)).get(r2)?.[1] === "STOPPED");
    assert.match(
      ok(await d.ctr(["tasks", "delete", r2])).stderr,
      /exit with non-zero exit code 137/,
    );
    ok(await d.ctr(["containers", "rm", r2]));
    await waitFor("the shims to exit", async () => (await shimPids(d)).length === 0);
  } finally {
    await cleanup(d, [r1, r2]);
    await Deno.remove(d.dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("tasks: ctr run --rm and run -d of an imported image (Debian's shim)", async () => {
  await ctrRun("debian");
});

Deno.test("tasks: ctr run --rm and run -d of an imported image (berth's shim)", async () => {
  await ctrRun("berth");
});
