/**
 * A namespace's shim serving many containers at once stays responsive.
 *
 * Deno runs blocking work on a pool of 32 threads. `ctr run -d` leaves a
 * stdin FIFO that no client will ever open, and every container on cgroup v1
 * has an OOM eventfd to wait on: when each of those waits held a pool thread,
 * ~16-32 containers filled the pool and every file operation of the shim
 * queued behind them (Create, Start and Kill took 10-36 s each). They now
 * share one poll(2); this test runs more containers than the pool has threads.
 */
import assert from "node:assert/strict";
import { ok, startDaemon } from "./_harness.ts";
import { busyboxImageArchive } from "./_images.ts";

const COUNT = 34;
const IMAGE = "localhost/tasks-bb:latest";

Deno.test("shim scale: 34 detached containers in one shim; runs, stdin and teardown stay fast", async () => {
  await using d = await startDaemon();
  const archive = await busyboxImageArchive(`${d.dir}/image`);
  ok(await d.ctr(["images", "import", archive]), "ctr images import");
  const ids = Array.from({ length: COUNT }, (_, i) => `sc-${i}`);
  const started: string[] = [];
  try {
    for (const id of ids) {
      ok(await d.ctr(["run", "-d", IMAGE, id, "sleep", "600"]), `ctr run -d ${id}`);
      started.push(id);
    }
    // A container run now, with its output and stdin through FIFOs.
    let t = performance.now();
    const echo = ok(
      await d.ctr(["--timeout", "30s", "run", "--rm", IMAGE, "sc-echo", "echo", "still-here"]),
    );
    const runMs = performance.now() - t;
    assert.equal(echo.stdout.trim(), "still-here");
    assert.ok(runMs < 5000, `ctr run --rm took ${runMs.toFixed(0)} ms with ${COUNT} running`);
    const cat = ok(
      await d.ctr(["--timeout", "30s", "run", "--rm", IMAGE, "sc-cat", "cat"], {
        stdin: "through-stdin\n",
      }),
    );
    assert.equal(cat.stdout, "through-stdin\n", "stdin reaches the process, then EOF ends it");

    // Teardown as the run benchmark does it: kill all, then delete each.
    t = performance.now();
    for (const id of ids) ok(await d.ctr(["tasks", "kill", "-s", "SIGKILL", id]), `kill ${id}`);
    for (const id of ids) {
      for (let k = 0;; k++) {
        const r = await d.ctr(["tasks", "delete", id]);
        if (r.code === 0) break;
        assert.ok(k < 100, `tasks delete ${id} kept failing: ${r.stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      ok(await d.ctr(["containers", "rm", id]), `containers rm ${id}`);
      started.splice(started.indexOf(id), 1);
    }
    const perContainer = (performance.now() - t) / COUNT;
    assert.ok(perContainer < 1500, `teardown took ${perContainer.toFixed(0)} ms per container`);
  } finally {
    for (const id of started) {
      await d.ctr(["tasks", "kill", "-s", "SIGKILL", id]);
      await new Promise((r) => setTimeout(r, 100));
      await d.ctr(["tasks", "delete", id]);
      await d.ctr(["containers", "rm", id]);
    }
  }
});
