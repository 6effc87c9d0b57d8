/**
 * Daemonless containers (issue 4): containers keep running while the daemon
 * is dead, exits that happen meanwhile are not lost, and their logs go on.
 */
import assert from "node:assert/strict";
import { ok, startDaemon, waitFor } from "./_harness.ts";
import { busyboxImageArchive } from "./_images.ts";

const COUNT = 20;
const ENDED = 5;
const IMAGE = "localhost/tasks-bb:latest";

async function tasks(d: { ctr(a: string[]): Promise<{ stdout: string }> }) {
  const out = (await d.ctr(["tasks", "ls"])).stdout.trim().split("\n").slice(1);
  return new Map(
    out.map((l) => l.trim().split(/\s+/)).map((
      [id, pid, st],
    ) => [id!, { pid: Number(pid), status: st! }]),
  );
}

Deno.test("daemonless: 20 containers outlive a kill -9 of the daemon; exits meanwhile keep their codes", async () => {
  await using d = await startDaemon();
  const archive = await busyboxImageArchive(`${d.dir}/image`);
  ok(await d.ctr(["images", "import", archive]), "ctr images import");
  const ids = Array.from({ length: COUNT }, (_, i) => `dl-${i}`);
  try {
    // Each prints a line a tick to its log file; TERM makes it exit with 10+i.
    for (const [i, id] of ids.entries()) {
      const script = `trap 'echo bye-${i}; exit ${
        10 + i
      }' TERM; n=0; while :; do echo ${id} $n; n=$((n+1)); sleep 0.2; done`;
      ok(
        await d.ctr([
          "run",
          "-d",
          "--log-uri",
          `file://${d.dir}/logs/${id}.log`,
          IMAGE,
          id,
          "sh",
          "-c",
          script,
        ]),
        `ctr run -d ${id}`,
      );
    }
    const before = await tasks(d);
    assert.equal([...before.values()].filter((t) => t.status === "RUNNING").length, COUNT);

    assert.equal(await d.kill(), 137);
    // The daemon is gone; every container still runs.
    for (const id of ids) assert.ok(alive(before.get(id)!.pid), `${id} still runs`);
    // End five of them while the daemon is down, each with its own code.
    for (const id of ids.slice(0, ENDED)) Deno.kill(before.get(id)!.pid, "SIGTERM");
    await waitFor(
      "the five to exit",
      () => ids.slice(0, ENDED).every((id) => !alive(before.get(id)!.pid)),
    );
    const sizes = await Promise.all(
      ids.map((id) => Deno.stat(`${d.dir}/logs/${id}.log`).then((s) => s.size)),
    );

    await d.start();
    const after = await tasks(d);
    for (const [i, id] of ids.entries()) {
      const t = after.get(id);
      assert.ok(t, `${id} is listed after the restart`);
      assert.equal(t.status, i < ENDED ? "STOPPED" : "RUNNING", `${id} status`);
    }
    // Exit codes of the five, as `ctr tasks delete` reports them.
    for (const [i, id] of ids.slice(0, ENDED).entries()) {
      const del = ok(await d.ctr(["tasks", "delete", id]));
      assert.match(del.stderr, new RegExp(`exit code ${10 + i}\\b`), `${id} exit code`);
      const log = await Deno.readTextFile(`${d.dir}/logs/${id}.log`);
      assert.match(log, new RegExp(`^${id} 0$`, "m"));
      assert.match(log, new RegExp(`^bye-${i}$`, "m"), `${id} log has its last words`);
    }
    // The survivors' logs kept growing across the restart.
    await new Promise((r) => setTimeout(r, 500));
    for (const [i, id] of ids.entries()) {
      if (i < ENDED) continue;
      const size = (await Deno.stat(`${d.dir}/logs/${id}.log`)).size;
      assert.ok(size > sizes[i]!, `${id}'s log grew after the restart`);
    }
  } finally {
    for (const id of ids) {
      await d.ctr(["tasks", "kill", "-s", "SIGKILL", id]).catch(() => {});
    }
    for (const id of ids) {
      await waitFor(
        `${id} to stop`,
        async () => (await tasks(d)).get(id)?.status !== "RUNNING",
        10_000,
      )
        .catch(() => {});
      await d.ctr(["tasks", "delete", id]).catch(() => {});
      await d.ctr(["containers", "rm", id]).catch(() => {});
    }
  }
});

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    // A zombie still answers signals: look at its state.
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** Pids of berth shim processes serving the daemon at `state`. */
async function shimsOf(state: string): Promise<number[]> {
  const out: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = (await Deno.readTextFile(`/proc/${e.name}/cmdline`)).split("\0");
      if (cmd.includes("shim") && cmd.includes("serve") && cmd.some((a) => a.startsWith(state))) {
        out.push(Number(e.name));
      }
    } catch { /* gone */ }
  }
  return out;
}

Deno.test("shim groups: one shim serves a namespace and lingers for the next container", async () => {
  await using d = await startDaemon({ env: { BERTH_SHIM_LINGER_MS: "20000" } });
  const archive = await busyboxImageArchive(`${d.dir}/image`);
  ok(await d.ctr(["images", "import", archive]), "ctr images import");
  assert.equal(ok(await d.ctr(["run", "--rm", IMAGE, "first", "echo", "one"])).stdout, "one\n");
  const [shim] = await shimsOf(d.state);
  assert.ok(shim, "the namespace's shim stays after its last container is gone");
  assert.equal(ok(await d.ctr(["run", "--rm", IMAGE, "second", "echo", "two"])).stdout, "two\n");
  assert.deepEqual(await shimsOf(d.state), [shim], "the second container used the same shim");
  // Another namespace gets a shim of its own.
  ok(await d.ctr(["-n", "other", "images", "import", archive]));
  assert.equal(
    ok(await d.ctr(["-n", "other", "run", "--rm", IMAGE, "third", "echo", "3"])).stdout,
    "3\n",
  );
  assert.equal((await shimsOf(d.state)).length, 2);
  for (const pid of await shimsOf(d.state)) Deno.kill(pid, "SIGKILL");
});
