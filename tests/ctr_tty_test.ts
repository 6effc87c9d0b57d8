/** `ctr run -t` against berth, driven through a real pseudo-terminal. */
import assert from "node:assert/strict";
import { ok, run, startDaemon } from "./_harness.ts";
import { busyboxImageArchive } from "./_images.ts";

const IMAGE = "localhost/tasks-bb:latest";

// Runs ctr on the slave side of a pty (python3's pty module), types into it,
// and prints everything the terminal showed, then the exit code.
const DRIVER = `
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp("ctr", sys.argv[1:])
time.sleep(1.5)
os.write(fd, b"echo typed-$((6*7))\\r")
time.sleep(0.5)
os.write(fd, b"exit 3\\r")
out = b""
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    out += data
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.stdout.write("\\nEXIT=%d\\n" % os.waitstatus_to_exitcode(status))
`;

Deno.test("ctr run -t: an interactive shell in a terminal through berth", async () => {
  await using d = await startDaemon();
  const archive = await busyboxImageArchive(`${d.dir}/image`);
  ok(await d.ctr(["images", "import", archive]), "ctr images import");
  const r = ok(
    await run("python3", [
      "-c",
      DRIVER,
      "ctr",
      "-a",
      d.sock,
      "run",
      "-t",
      "--rm",
      IMAGE,
      "tty1",
      "sh",
      "-c",
      "busybox tty; busybox stty size; exec sh",
    ]),
    "python pty driver",
  );
  assert.match(r.stdout, /\/dev\/pts\/\d+/, "the shell has a terminal");
  assert.match(r.stdout, /typed-42/, "typed input reached the shell and its output came back");
  assert.match(r.stdout, /EXIT=3/, "ctr exits with the shell's code");
  const left = ok(await d.ctr(["containers", "ls", "-q"])).stdout.trim();
  assert.equal(left, "", "--rm removed the container");
});
