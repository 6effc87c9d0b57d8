import assert from "node:assert/strict";
import { InFlight, Limiter } from "./concurrency.ts";

Deno.test("concurrency: InFlight shares one run per key and forgets it after", async () => {
  const f = new InFlight<string, number>();
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const task = async () => {
    runs++;
    await gate;
    return runs;
  };
  const a = f.run("k", task);
  const b = f.run("k", task);
  assert.equal(a, b);
  assert.ok(f.has("k"));
  release();
  assert.deepEqual(await Promise.all([a, b]), [1, 1]);
  assert.equal(f.has("k"), false);
  // A failure is shared too, and the next call starts afresh.
  const failing = f.run("x", () => Promise.reject(new Error("boom")));
  await assert.rejects(f.run("x", task), /boom/);
  await assert.rejects(failing, /boom/);
  assert.equal(await f.run("x", () => Promise.resolve(7)), 7);
});

Deno.test("concurrency: Limiter bounds parallel work, FIFO, abortable waits", async () => {
  const l = new Limiter(2);
  let active = 0;
  let peak = 0;
  const order: number[] = [];
  await Promise.all([0, 1, 2, 3, 4, 5].map((i) =>
    l.run(async () => {
      active++;
      peak = Math.max(peak, active);
      order.push(i);
      await new Promise((r) => setTimeout(r, 5));
      active--;
    })
  ));
  assert.equal(peak, 2);
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
  const r1 = await l.acquire();
  const r2 = await l.acquire();
  const ac = new AbortController();
  const waiting = l.acquire(ac.signal);
  assert.equal(l.pending, 1);
  ac.abort(new Error("stop"));
  await assert.rejects(waiting, /stop/);
  assert.equal(l.pending, 0);
  r1();
  r1(); // releasing twice gives back one slot only
  r2();
  assert.equal(l.active, 0);
  assert.throws(() => new Limiter(0), RangeError);
});
