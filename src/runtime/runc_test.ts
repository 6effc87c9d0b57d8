import assert from "node:assert/strict";
import { readPidFile, Runc, RuntimeError } from "./runc.ts";
import { isKind } from "../core/errdefs.ts";

/** A bundle with a busybox rootfs (Debian's busybox-static) and runc's default spec. */
async function bundle(dir: string, args: string[]): Promise<string> {
  const b = `${dir}/bundle`;
  await Deno.mkdir(`${b}/rootfs/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${b}/rootfs/bin/busybox`);
  await Deno.chmod(`${b}/rootfs/bin/busybox`, 0o755);
  for (const app of ["sh", "echo", "sleep", "cat", "true"]) {
    await Deno.symlink("busybox", `${b}/rootfs/bin/${app}`);
  }
  const gen = await new Deno.Command("runc", { args: ["spec", "--bundle", b] }).output();
  assert.ok(gen.success, "runc spec");
  const spec = JSON.parse(await Deno.readTextFile(`${b}/config.json`));
  spec.process.terminal = false;
  spec.process.args = args;
  spec.root.readonly = false;
  await Deno.writeTextFile(`${b}/config.json`, JSON.stringify(spec));
  return b;
}

Deno.test("runc: create, start, output, state, delete", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-runc-" });
  const runc = new Runc({ root: `${dir}/state` });
  const id = `t-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const b = await bundle(dir, ["sh", "-c", "echo out; echo err >&2"]);
    const child = await runc.create(id, {
      bundle: b,
      pidFile: `${dir}/pid`,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
    const pid = readPidFile(`${dir}/pid`);
    assert.ok(pid > 1);
    assert.equal((await runc.state(id)).status, "created");
    const out = new Response(child.stdout).text();
    const err = new Response(child.stderr).text();
    await runc.start(id);
    assert.equal(await out, "out\n");
    assert.equal(await err, "err\n");
    for (let i = 0; i < 100 && (await runc.state(id)).status !== "stopped"; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((await runc.state(id)).status, "stopped");
    await runc.delete(id);
    await assert.rejects(runc.state(id), (e) => isKind(e, "not_found"));
  } finally {
    await runc.delete(id, true).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runc: a failure carries runc's own words", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-runc-" });
  const runc = new Runc({ root: `${dir}/state` });
  const id = `t-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const b = await bundle(dir, ["/no/such/binary"]);
    await assert.rejects(
      runc.create(id, { bundle: b, pidFile: `${dir}/pid`, stdout: "null", stderr: "null" }),
      (e) =>
        e instanceof RuntimeError &&
        /runc create ".*": .*no such file or directory/i.test(e.message),
    );
  } finally {
    await runc.delete(id, true).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
