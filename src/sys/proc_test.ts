import assert from "node:assert/strict";
import {
  decodeWaitStatus,
  isChildSubreaper,
  kill,
  Reaper,
  setChildSubreaper,
  signalNumber,
  tryWait,
} from "./proc.ts";
import { SysError } from "./libc.ts";

/**
 * Starts `sh -c script` where the script backgrounds a subshell and prints its
 * pid; sh exits at once (Deno.Command reaps it), orphaning the subshell.
 */
async function orphan(script: string): Promise<number> {
  const out = await new Deno.Command("sh", {
    args: ["-c", `(${script}) </dev/null >/dev/null 2>&1 & echo $!`],
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).output();
  assert.equal(out.code, 0);
  return Number(new TextDecoder().decode(out.stdout).trim());
}

function ppidOf(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

Deno.test("decodeWaitStatus reads the wait(2) status word", () => {
  assert.deepEqual(decodeWaitStatus(0), { kind: "exited", code: 0 });
  assert.deepEqual(decodeWaitStatus(3 << 8), { kind: "exited", code: 3 });
  assert.deepEqual(decodeWaitStatus(255 << 8), { kind: "exited", code: 255 });
  assert.deepEqual(decodeWaitStatus(9), { kind: "signaled", signal: 9, coreDumped: false });
  assert.deepEqual(decodeWaitStatus(0x80 | 11), { kind: "signaled", signal: 11, coreDumped: true });
  assert.deepEqual(decodeWaitStatus((19 << 8) | 0x7f), { kind: "stopped", signal: 19 });
  assert.deepEqual(decodeWaitStatus(0xffff), { kind: "continued" });
});

Deno.test("signalNumber takes numbers and names", () => {
  assert.equal(signalNumber("SIGTERM"), 15);
  assert.equal(signalNumber("kill"), 9);
  assert.equal(signalNumber("10"), 10);
  assert.equal(signalNumber(2), 2);
  assert.throws(() => signalNumber("SIGNOPE"), /Unknown signal "SIGNOPE"/);
  assert.throws(() => signalNumber(99), /Invalid signal 99/);
});

Deno.test("without subreaper an orphan goes elsewhere and waiting for it is ECHILD", async () => {
  setChildSubreaper(false);
  assert.equal(isChildSubreaper(), false);
  const pid = await orphan("sleep 5");
  try {
    assert.notEqual(ppidOf(pid), Deno.pid);
    const reaper = new Reaper();
    const err = await reaper.wait(pid).catch((e) => e);
    assert.ok(err instanceof SysError);
    assert.equal(err.code, "ECHILD");
    assert.equal(reaper.watching.length, 0);
  } finally {
    kill(pid, "SIGKILL");
  }
});

Deno.test("as subreaper, orphaned grandchildren are reparented here and reaped with their exit codes", async () => {
  setChildSubreaper(true);
  // A long poll interval: only SIGCHLD can make the reaper notice exits quickly.
  const reaper = new Reaper({ pollMs: 60_000 });
  try {
    assert.equal(isChildSubreaper(), true);
    const a = await orphan("sleep 0.3; exit 7");
    const b = await orphan("exec sleep 30");
    assert.equal(ppidOf(a), Deno.pid);
    assert.equal(ppidOf(b), Deno.pid);
    assert.equal(tryWait(a), null); // Still running.

    const t0 = performance.now();
    const ea = await reaper.wait(a);
    assert.equal(ea.pid, a);
    assert.equal(ea.exitStatus, 7);
    assert.equal(ea.signal, undefined);
    assert.ok(performance.now() - t0 < 2000);

    const pb = reaper.wait(b);
    assert.equal(reaper.wait(b), pb); // One shared wait per pid.
    assert.equal(kill(b, "SIGKILL"), true);
    const t1 = performance.now();
    const eb = await pb;
    const latency = performance.now() - t1;
    assert.deepEqual([eb.exitStatus, eb.signal, eb.coreDumped], [137, 9, false]);
    assert.ok(latency < 1000, `SIGCHLD-driven reap took ${latency} ms`);
    // Collected: the zombie is gone, a second wait is ECHILD, signalling it finds nothing.
    assert.equal(await Deno.stat(`/proc/${b}`).then(() => true, () => false), false);
    assert.equal((await reaper.wait(b).catch((e) => e)).code, "ECHILD");
    assert.equal(kill(b, 0), false);
  } finally {
    reaper.close();
    setChildSubreaper(false);
  }
});

Deno.test("the reaper never steals Deno.Command's children", async () => {
  setChildSubreaper(true);
  const reaper = new Reaper({ pollMs: 5 });
  try {
    const o = await orphan("sleep 0.5; exit 4");
    const waiting = reaper.wait(o);
    // While the reaper polls hard and SIGCHLDs fly, Deno's own children keep their statuses.
    const codes = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const s = await new Deno.Command("sh", { args: ["-c", `exit ${i}`] }).output();
        return s.code;
      }),
    );
    assert.deepEqual(codes, Array.from({ length: 20 }, (_, i) => i));
    const child = new Deno.Command("sleep", { args: ["0.2"] }).spawn();
    assert.equal((await child.status).success, true);
    assert.equal((await waiting).exitStatus, 4);
  } finally {
    reaper.close();
    setChildSubreaper(false);
  }
});

Deno.test("waiting keeps the process alive until the exit, then lets it end", async () => {
  // A child Deno process: subreaper, orphan, wait; it must exit by itself once reaped.
  const script = `
    import { Reaper, setChildSubreaper } from ${
    JSON.stringify(new URL("./proc.ts", import.meta.url).href)
  };
    setChildSubreaper();
    const out = await new Deno.Command("sh", { args: ["-c", "(sleep 0.3; exit 5) >/dev/null & echo $!"], stdout: "piped" }).output();
    const pid = Number(new TextDecoder().decode(out.stdout));
    new Reaper().wait(pid).then((s) => console.log(s.exitStatus));
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(script));
  await w.close();
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  const res = await child.output();
  clearTimeout(timer);
  assert.equal(res.code, 0, new TextDecoder().decode(res.stderr));
  assert.equal(new TextDecoder().decode(res.stdout).trim(), "5");
});

Deno.test("tryWait and kill refuse what is not ours", () => {
  assert.throws(() => tryWait(1), (e) => e instanceof SysError && e.code === "ECHILD");
  assert.throws(() => tryWait(0), /Invalid pid 0/);
  assert.throws(() => kill(1, 99), /Invalid signal 99/);
});
