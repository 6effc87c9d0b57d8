/**
 * The shim's terminal path end to end with real runc: runc sends the pty
 * master to berth's console socket, berth resizes and drives the terminal, and
 * collects the container's exit as a subreaper (the container's init is
 * orphaned when `runc create` exits). Needs root and runc.
 */
import assert from "node:assert/strict";
import { ConsoleSocket } from "../src/sys/console.ts";
import { Reaper, setChildSubreaper } from "../src/sys/proc.ts";
import { run } from "./_harness.ts";

Deno.test("runc --console-socket hands berth a working terminal; the exit is reaped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-console-runc-" });
  const bundle = `${dir}/bundle`;
  const root = `${dir}/runc`;
  const id = `console-${crypto.randomUUID().slice(0, 8)}`;
  setChildSubreaper(true);
  const reaper = new Reaper();
  // A stuck container must fail the test, not hang it: killing it hangs up the terminal.
  const guard = setTimeout(() => run("runc", ["--root", root, "kill", id, "KILL"]), 30_000);
  try {
    await Deno.mkdir(`${bundle}/rootfs/bin`, { recursive: true });
    await Deno.copyFile("/bin/busybox", `${bundle}/rootfs/bin/busybox`);
    await Deno.chmod(`${bundle}/rootfs/bin/busybox`, 0o755);
    await run("runc", ["spec", "--bundle", bundle], { check: true });
    const spec = JSON.parse(await Deno.readTextFile(`${bundle}/config.json`));
    spec.process.terminal = true;
    spec.process.args = [
      "/bin/busybox",
      "sh",
      "-c",
      "/bin/busybox stty size; read line; echo got:$line; exit 5",
    ];
    spec.root.readonly = false;
    await Deno.writeTextFile(`${bundle}/config.json`, JSON.stringify(spec));

    using sock = ConsoleSocket.listen(`${dir}/console.sock`);
    const receiving = sock.receive();
    await run("runc", [
      "--root",
      root,
      "create",
      "--bundle",
      bundle,
      "--console-socket",
      sock.path,
      "--pid-file",
      `${dir}/pid`,
      id,
    ], { check: true });
    using pty = await receiving;
    assert.equal(pty.name, "/dev/ptmx"); // runc names the master it sends.
    const pid = Number(await Deno.readTextFile(`${dir}/pid`));
    // runc create has exited: its container init is now ours to reap.
    const exited = reaper.wait(pid);

    pty.resize({ width: 120, height: 40 });
    await run("runc", ["--root", root, "start", id], { check: true });
    let out = "";
    const buf = new Uint8Array(1024);
    const readUntil = async (want: string) => {
      while (!out.includes(want)) {
        const n = await pty.read(buf);
        if (n === null) throw new Error(`terminal ended before ${want}: ${JSON.stringify(out)}`);
        out += new TextDecoder().decode(buf.subarray(0, n));
      }
    };
    await readUntil("40 120");
    await pty.writeAll(new TextEncoder().encode("hello\n"));
    await readUntil("got:hello");
    // The terminal's line discipline turns \n into \r\n, as any real terminal would.
    assert.match(out, /40 120\r\nhello\r\ngot:hello\r\n/);
    const st = await exited;
    assert.equal(st.exitStatus, 5);
    assert.equal(st.pid, pid);
  } finally {
    clearTimeout(guard);
    reaper.close();
    setChildSubreaper(false);
    await run("runc", ["--root", root, "delete", "--force", id]);
    await Deno.remove(dir, { recursive: true });
  }
});
