/**
 * The container CLI end to end: `berth run`, `ps`, `exec`, `logs`, `stop`,
 * `kill`, `pause`, `rm`, ... against a real daemon, real shim and real runc,
 * with an image built here from the host's busybox-static and imported with
 * `berth import` (no registry needed).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ok, type Run, run, startDaemon, type TestDaemon, waitFor } from "./_harness.ts";

const NS = "clitest";
/** Root user, Cmd echo; the plain image. */
const BUSYBOX = "test.local/busybox:latest";
/** USER app, WorkingDir /home/app, Env, StopSignal SIGUSR1. */
const APP = "test.local/app:latest";

function sha256(b: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(b).digest("hex");
}

/**
 * Writes an OCI archive holding BUSYBOX and APP: one layer with busybox and
 * its applet links, /etc/passwd and /etc/group with an `app` user (1000,
 * member of `extra` 2000), /home/app owned by app.
 */
export async function buildTestArchive(dir: string): Promise<string> {
  const root = `${dir}/rootfs`;
  for (const d of ["bin", "etc", "home/app", "tmp", "proc", "sys", "dev", "data"]) {
    await Deno.mkdir(`${root}/${d}`, { recursive: true });
  }
  await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
  await Deno.chmod(`${root}/bin/busybox`, 0o755);
  const list = ok(await run("/bin/busybox", ["--list"])).stdout.split("\n").filter((x) =>
    x && x !== "busybox"
  );
  for (const a of list) await Deno.symlink("busybox", `${root}/bin/${a}`);
  await Deno.writeTextFile(
    `${root}/etc/passwd`,
    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
  );
  await Deno.writeTextFile(
    `${root}/etc/group`,
    "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n",
  );
  await Deno.chown(`${root}/home/app`, 1000, 1000);
  await Deno.chmod(`${root}/tmp`, 0o1777);
  const layerPath = `${dir}/layer.tar`;
  ok(
    await run("tar", ["--numeric-owner", "--sort=name", "-C", root, "-cf", layerPath, "."]),
    "tar layer",
  );
  const layer = await Deno.readFile(layerPath);
  const oci = `${dir}/oci`;
  await Deno.mkdir(`${oci}/blobs/sha256`, { recursive: true });
  const put = async (bytes: Uint8Array) => {
    const d = sha256(bytes);
    await Deno.writeFile(`${oci}/blobs/sha256/${d.slice(7)}`, bytes);
    return { digest: d, size: bytes.length };
  };
  const enc = new TextEncoder();
  const layerDesc = { mediaType: "application/vnd.oci.image.layer.v1.tar", ...(await put(layer)) };
  const arch = Deno.build.arch === "x86_64" ? "amd64" : "arm64";
  const manifests = [];
  for (
    const [name, config] of [
      [BUSYBOX, { Env: ["PATH=/bin"], Cmd: ["echo", "default command"] }],
      [APP, {
        User: "app",
        WorkingDir: "/home/app",
        Env: ["PATH=/bin", "GREETING=hello from the image"],
        Cmd: ["sh"],
        StopSignal: "SIGUSR1",
      }],
    ] as const
  ) {
    const cfg = enc.encode(JSON.stringify({
      architecture: arch,
      os: "linux",
      config,
      rootfs: { type: "layers", diff_ids: [layerDesc.digest] },
    }));
    const cfgDesc = { mediaType: "application/vnd.oci.image.config.v1+json", ...(await put(cfg)) };
    const man = enc.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: cfgDesc,
      layers: [layerDesc],
    }));
    manifests.push({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      ...(await put(man)),
      annotations: { "org.opencontainers.image.ref.name": name },
    });
  }
  await Deno.writeTextFile(`${oci}/oci-layout`, '{"imageLayoutVersion":"1.0.0"}');
  await Deno.writeTextFile(`${oci}/index.json`, JSON.stringify({ schemaVersion: 2, manifests }));
  const archive = `${dir}/images.tar`;
  ok(await run("tar", ["-C", oci, "-cf", archive, "."]), "tar archive");
  return archive;
}

/** A daemon with the two test images imported into namespace NS. */
async function daemonWithImages(): Promise<
  TestDaemon & { b(args: string[], opts?: Parameters<TestDaemon["berth"]>[1]): Promise<Run> }
> {
  const d = await startDaemon({ logLevel: "info" });
  const archive = await buildTestArchive(await Deno.makeTempDir({ dir: d.dir, prefix: "img-" }));
  const b = (args: string[], opts?: Parameters<TestDaemon["berth"]>[1]) =>
    d.berth(["-n", NS, ...args], opts);
  ok(await b(["import", archive]), "berth import");
  return Object.assign(d, { b });
}

/** Removes every container of NS (so the daemon's shims end before it stops). */
async function cleanup(d: TestDaemon & { b(args: string[]): Promise<Run> }) {
  const ids = (await d.b(["ps", "-a", "-q"])).stdout.split("\n").filter(Boolean);
  if (ids.length) await d.b(["rm", "-f", ...ids]);
}

/**
 * Runs argv[1:] on a new pty of 27 rows and 91 columns, types "hello" and
 * Enter once "27 91" appeared, prints all output and then `exit N`.
 */
const PTY_DRIVER = `
import os, pty, sys, time, select, struct, fcntl, termios
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 27, 91, 0, 0))
out = b""
sent = False
end = time.time() + 60
while time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            d = os.read(fd, 4096)
        except OSError:
            break
        if not d:
            break
        out += d
    if not sent and b"27 91" in out:
        os.write(fd, b"hello\\r")
        sent = True
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace") + "\\nexit %d\\n" % os.waitstatus_to_exitcode(st))
`;

/** `berth -a SOCK -n NS ARGS…` run on a pty by PTY_DRIVER. */
function berthOnPty(sock: string, args: string[]): Promise<Run> {
  return run("python3", [
    "-c",
    PTY_DRIVER,
    Deno.execPath(),
    "run",
    "-A",
    new URL("../main.ts", import.meta.url).pathname,
    "-a",
    sock,
    "-n",
    NS,
    ...args,
  ]);
}

function lines(s: string): string[] {
  return s.split("\n").filter(Boolean);
}

Deno.test({
  name: "berth container CLI against a real daemon, shim and runc",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using d = await daemonWithImages();
    try {
      await t.step("run: exit codes are berth's exit code", async () => {
        const r = await d.b(["run", "--rm", BUSYBOX, "sh", "-c", "exit 7"]);
        assert.equal(r.code, 7, r.stderr);
        const z = await d.b(["run", "--rm", BUSYBOX, "true"]);
        assert.equal(z.code, 0, z.stderr);
        const dflt = ok(await d.b(["run", "--rm", BUSYBOX]));
        assert.equal(dflt.stdout, "default command\n", "the image's Cmd runs by default");
      });

      await t.step(
        "run: stdout and stderr are kept apart, options after IMAGE are the command's",
        async () => {
          const r = ok(
            await d.b(["run", "--rm", BUSYBOX, "sh", "-c", "echo out; echo err >&2; echo -n tail"]),
          );
          assert.equal(r.stdout, "out\ntail");
          assert.equal(r.stderr, "err\n");
        },
      );

      await t.step("run -i: stdin reaches the process and its EOF ends it", async () => {
        const r = ok(
          await d.b(["run", "--rm", "-i", BUSYBOX, "sh", "-c", "wc -l; cat"], {
            stdin: "a\nb\nc\n",
          }),
        );
        assert.equal(r.stdout.trim(), "3");
      });

      await t.step("run: Ctrl-C (SIGINT) to berth reaches the container", async () => {
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            new URL("../main.ts", import.meta.url).pathname,
            "-a",
            d.sock,
            "-n",
            NS,
            "run",
            "--rm",
            "--name",
            "sigint",
            BUSYBOX,
            "sh",
            "-c",
            "trap 'echo got INT; exit 9' INT; echo ready; while true; do sleep 0.1; done",
          ],
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let text = "";
        while (!text.includes("ready")) {
          const { value, done } = await out.read();
          if (done) break;
          text += value;
        }
        child.kill("SIGINT");
        for (;;) {
          const { value, done } = await out.read();
          if (done) break;
          text += value;
        }
        const st = await child.status;
        await child.stderr.cancel();
        assert.equal(text, "ready\ngot INT\n");
        assert.equal(st.code, 9);
      });

      await t.step(
        "run: env, user and workdir come from the image; flags override them",
        async () => {
          const r = ok(await d.b(["run", "--rm", APP, "sh", "-c", 'echo "$GREETING"; id; pwd']));
          assert.deepEqual(lines(r.stdout), [
            "hello from the image",
            "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)",
            "/home/app",
          ]);
          const o = ok(
            await d.b([
              "run",
              "--rm",
              "-e",
              "GREETING=overridden",
              "-u",
              "root",
              "-w",
              "/tmp",
              APP,
              "sh",
              "-c",
              'echo "$GREETING"; id -u; pwd',
            ]),
          );
          assert.deepEqual(lines(o.stdout), ["overridden", "0", "/tmp"]);
        },
      );

      await t.step("run -v: bind mounts, read-write and read-only", async () => {
        const host = await Deno.makeTempDir({ dir: d.dir, prefix: "bind-" });
        await Deno.writeTextFile(`${host}/in.txt`, "from the host\n");
        const r = ok(
          await d.b([
            "run",
            "--rm",
            "-v",
            `${host}:/data`,
            BUSYBOX,
            "sh",
            "-c",
            "cat /data/in.txt; echo written > /data/out.txt",
          ]),
        );
        assert.equal(r.stdout, "from the host\n");
        assert.equal(await Deno.readTextFile(`${host}/out.txt`), "written\n");
        const ro = await d.b([
          "run",
          "--rm",
          "-v",
          `${host}:/data:ro`,
          BUSYBOX,
          "sh",
          "-c",
          "echo x > /data/no.txt",
        ]);
        assert.notEqual(ro.code, 0);
        assert.match(ro.stderr, /Read-only file system/);
      });

      await t.step("run -it: a terminal session driven through a pty", async () => {
        // python3's pty module gives berth a real terminal of 27x91; the input
        // is typed once the session has shown its size.
        const r = await berthOnPty(d.sock, [
          "run",
          "--rm",
          "-it",
          BUSYBOX,
          "sh",
          "-c",
          "tty; stty size; read line; echo got:$line; exit 3",
        ]);
        assert.match(r.stdout, /\/dev\/pts\/\d+/, r.stdout);
        assert.match(r.stdout, /27 91/, r.stdout);
        assert.match(r.stdout, /got:hello/, r.stdout);
        assert.match(r.stdout, /exit 3$/m, r.stdout);
      });

      await t.step("run -d and ps", async () => {
        const id = ok(await d.b(["run", "-d", "--name", "sleeper", APP, "sleep", "300"])).stdout
          .trim();
        assert.equal(id, "sleeper");
        const ps = ok(await d.b(["ps"]));
        assert.match(ps.stdout, /^CONTAINER\s+IMAGE\s+STATUS\s+PID\s+COMMAND/);
        assert.match(ps.stdout, /^sleeper\s+test\.local\/app:latest\s+running\s+\d+\s+sleep 300$/m);
        assert.equal(ok(await d.b(["ps", "-q"])).stdout, "sleeper\n");
        const js = JSON.parse(ok(await d.b(["ps", "--json"])).stdout);
        assert.equal(js[0].id, "sleeper");
        assert.equal(js[0].status, "running");
      });

      await t.step("exec: output, exit code, user and env", async () => {
        const r = await d.b(["exec", "sleeper", "sh", "-c", "id -u; pwd; echo oops >&2; exit 4"]);
        assert.equal(r.code, 4, r.stderr);
        assert.deepEqual(lines(r.stdout), ["1000", "/home/app"]);
        assert.equal(r.stderr, "oops\n");
        const u = ok(
          await d.b([
            "exec",
            "-u",
            "root",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "sleeper",
            "sh",
            "-c",
            "id -u; echo $X; pwd",
          ]),
        );
        assert.deepEqual(lines(u.stdout), ["0", "1", "/tmp"]);
        const i = ok(await d.b(["exec", "-i", "sleeper", "cat"], { stdin: "piped in\n" }));
        assert.equal(i.stdout, "piped in\n");
      });

      await t.step("exec -it: a terminal session in a running container", async () => {
        const r = await berthOnPty(d.sock, [
          "exec",
          "-it",
          "sleeper",
          "sh",
          "-c",
          // The pause lets the resize that follows the exec's start land.
          "sleep 0.3; tty; stty size; read line; echo got:$line; exit 3",
        ]);
        assert.match(r.stdout, /\/dev\/pts\/\d+/, r.stdout);
        assert.match(r.stdout, /27 91/, r.stdout);
        assert.match(r.stdout, /got:hello/, r.stdout);
        assert.match(r.stdout, /exit 3$/m, r.stdout);
      });

      await t.step("inspect and top", async () => {
        const j = JSON.parse(ok(await d.b(["inspect", "sleeper"])).stdout);
        assert.equal(j[0].id, "sleeper");
        assert.equal(j[0].image, APP);
        assert.equal(j[0].task.status, "running");
        assert.ok(j[0].task.pid > 0);
        assert.equal(j[0].labels["io.containerd.image.config.stop-signal"], "SIGUSR1");
        const top = ok(await d.b(["top", "sleeper"]));
        assert.match(top.stdout, /^PID\s+USER\s+.*CMD/m);
        assert.match(top.stdout, new RegExp(`^${j[0].task.pid}\\s+1000\\s+.*sleep 300`, "m"));
      });

      await t.step("pause and unpause", async () => {
        ok(await d.b(["pause", "sleeper"]));
        assert.match(ok(await d.b(["ps"])).stdout, /^sleeper\s+\S+\s+paused/m);
        const pid = JSON.parse(ok(await d.b(["inspect", "sleeper"])).stdout)[0].task.pid;
        const st = await Deno.readTextFile(`/proc/${pid}/status`);
        assert.match(st, /^State:\s+D|^State:\s+S|^State:\s+T/m); // frozen by the freezer cgroup
        const frozen = await Deno.readTextFile(`/sys/fs/cgroup/freezer/${NS}/sleeper/freezer.state`)
          .catch(() => "");
        if (frozen) assert.equal(frozen.trim(), "FROZEN");
        ok(await d.b(["unpause", "sleeper"]));
        assert.match(ok(await d.b(["ps"])).stdout, /^sleeper\s+\S+\s+running/m);
        const r = ok(await d.b(["exec", "sleeper", "echo", "alive"]));
        assert.equal(r.stdout, "alive\n");
      });

      await t.step("--memory, --cpus and stats; --read-only, --privileged, --net", async () => {
        ok(
          await d.b([
            "run",
            "-d",
            "--name",
            "limited",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            BUSYBOX,
            "sleep",
            "300",
          ]),
        );
        const cg = "/sys/fs/cgroup";
        assert.equal(
          (await Deno.readTextFile(`${cg}/memory/${NS}/limited/memory.limit_in_bytes`)).trim(),
          "67108864",
        );
        assert.equal(
          (await Deno.readTextFile(`${cg}/cpu/${NS}/limited/cpu.cfs_quota_us`)).trim(),
          "50000",
        );
        const st = ok(await d.b(["stats", "--no-stream", "limited"]));
        assert.match(st.stdout, /^CONTAINER\s+CPU %\s+MEM USAGE \/ LIMIT\s+PIDS$/m);
        assert.match(st.stdout, /^limited\s+\d+\.\d\d%\s+[\d.]+ \w+ \/ 64\.0 MiB\s+1$/m);
        ok(await d.b(["rm", "-f", "limited"]));
        const ro = await d.b(["run", "--rm", "--read-only", BUSYBOX, "touch", "/x"]);
        assert.notEqual(ro.code, 0);
        assert.match(ro.stderr, /Read-only file system/);
        const capEff = (r: Run) => /^CapEff:\s+([0-9a-f]+)$/m.exec(r.stdout)?.[1];
        const dflt = ok(await d.b(["run", "--rm", BUSYBOX, "cat", "/proc/self/status"]));
        assert.equal(capEff(dflt), "00000000a80425fb", "containerd's default capability set");
        const priv = ok(
          await d.b(["run", "--rm", "--privileged", BUSYBOX, "cat", "/proc/self/status"]),
        );
        const own = /^CapEff:\s+([0-9a-f]+)$/m.exec(await Deno.readTextFile("/proc/self/status"))
          ?.[1];
        assert.equal(capEff(priv), own, "--privileged: every capability berth holds");
        const host = ok(await d.b(["run", "--rm", "--net", "host", BUSYBOX, "hostname"]));
        assert.equal(host.stdout.trim(), Deno.hostname());
        const none = ok(
          await d.b([
            "run",
            "--rm",
            "--name",
            "isolated",
            BUSYBOX,
            "sh",
            "-c",
            "hostname; ls /sys/class/net",
          ]),
        );
        assert.deepEqual(lines(none.stdout), ["isolated", "lo"]);
        const bad = await d.b(["run", "--rm", "--net", "bridge", BUSYBOX, "true"]);
        assert.equal(bad.code, 2);
        assert.match(bad.stderr, /--net must be host or none/);
      });

      await t.step("rm refuses a running container; rm -f kills and removes it", async () => {
        const r = await d.b(["rm", "sleeper"]);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /running/);
        ok(await d.b(["rm", "-f", "sleeper"]));
        assert.doesNotMatch(ok(await d.b(["ps", "-a"])).stdout, /sleeper/);
        const snaps = ok(await d.ctr(["-n", NS, "snapshots", "ls"])).stdout;
        assert.doesNotMatch(snaps, /sleeper/, "its snapshot is gone");
      });

      await t.step("logs after exit: both streams, --tail, --timestamps", async () => {
        ok(
          await d.b([
            "run",
            "--name",
            "talker",
            BUSYBOX,
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo line$i; done; echo bad >&2",
          ]),
        );
        const l = ok(await d.b(["logs", "talker"]));
        assert.equal(l.stdout, "line1\nline2\nline3\nline4\nline5\n");
        assert.equal(l.stderr, "bad\n");
        const tail = ok(await d.b(["logs", "--tail", "2", "talker"]));
        assert.equal(tail.stdout, "line5\n");
        assert.equal(tail.stderr, "bad\n");
        const ts = ok(await d.b(["logs", "--timestamps", "talker"]));
        assert.match(ts.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line1$/m);
        assert.match(ok(await d.b(["ps", "-a"])).stdout, /^talker\s+\S+\s+stopped\s+/m);
        const w = ok(await d.b(["wait", "talker"]));
        assert.equal(w.stdout, "0\n");
        ok(await d.b(["rm", "talker"]));
      });

      await t.step("logs -f follows until the task exits", async () => {
        ok(
          await d.b([
            "run",
            "-d",
            "--name",
            "ticker",
            BUSYBOX,
            "sh",
            "-c",
            "for i in 1 2 3; do echo tick$i; sleep 0.3; done",
          ]),
        );
        const r = ok(await d.b(["logs", "-f", "ticker"]));
        assert.equal(r.stdout, "tick1\ntick2\ntick3\n");
        ok(await d.b(["rm", "ticker"]));
      });

      await t.step(
        "stop: the image's stop signal, then SIGKILL after the grace period",
        async () => {
          // APP's StopSignal is SIGUSR1: a shell trapping it exits 42 at once.
          ok(
            await d.b([
              "run",
              "-d",
              "--name",
              "polite",
              APP,
              "sh",
              "-c",
              "trap 'exit 42' USR1; while true; do sleep 0.1; done",
            ]),
          );
          await waitFor("polite running", async () => /running/.test((await d.b(["ps"])).stdout));
          await new Promise((r) => setTimeout(r, 300));
          ok(await d.b(["stop", "polite"]));
          assert.equal(ok(await d.b(["wait", "polite"])).stdout, "42\n");
          // A process that ignores TERM is killed after -t seconds.
          ok(
            await d.b([
              "run",
              "-d",
              "--name",
              "stubborn",
              BUSYBOX,
              "sh",
              "-c",
              "trap '' TERM; while true; do sleep 0.1; done",
            ]),
          );
          await new Promise((r) => setTimeout(r, 300));
          const t0 = performance.now();
          ok(await d.b(["stop", "-t", "1", "stubborn"]));
          const took = performance.now() - t0;
          assert.ok(took >= 900, `stop waited the grace period (${took} ms)`);
          assert.ok(took < 8000, `stop did not hang (${took} ms)`);
          assert.equal(ok(await d.b(["wait", "stubborn"])).stdout, "137\n");
          ok(await d.b(["rm", "polite", "stubborn"]));
        },
      );

      await t.step("kill -s, start and restart", async () => {
        // The command sleeps the first time and exits 5 the second (a marker on a bind mount).
        const host = await Deno.makeTempDir({ dir: d.dir, prefix: "k1-" });
        const script =
          "if [ -e /data/again ]; then echo second; exit 5; fi; touch /data/again; echo first; sleep 300";
        ok(
          await d.b([
            "run",
            "-d",
            "--name",
            "k1",
            "-v",
            `${host}:/data`,
            BUSYBOX,
            "sh",
            "-c",
            script,
          ]),
        );
        await waitFor("k1 started", async () => (await d.b(["logs", "k1"])).stdout === "first\n");
        ok(await d.b(["kill", "-s", "KILL", "k1"]));
        assert.equal(ok(await d.b(["wait", "k1"])).stdout, "137\n");
        const again = await d.b(["start", "-a", "k1"]);
        assert.equal(again.code, 5, again.stderr);
        assert.equal(again.stdout, "second\n", "start -a shows only the new run's output");
        assert.equal(ok(await d.b(["logs", "k1"])).stdout, "first\nsecond\n");
        ok(await d.b(["rm", "-f", "k1"]));
        ok(
          await d.b(["run", "-d", "--name", "r1", BUSYBOX, "sh", "-c", "echo started; sleep 300"]),
        );
        ok(await d.b(["restart", "-t", "1", "r1"]));
        await waitFor(
          "r1 running again",
          async () => /^r1\s+\S+\s+running/m.test((await d.b(["ps"])).stdout),
        );
        await waitFor(
          "two starts logged",
          async () => (await d.b(["logs", "r1"])).stdout === "started\nstarted\n",
        );
        ok(await d.b(["rm", "-f", "r1"]));
      });

      await t.step("bad input: unknown image, missing command, duplicate name", async () => {
        const u = await d.b(["run", "--rm", "test.local/nope:latest", "true"]);
        assert.notEqual(u.code, 0);
        assert.match(u.stderr, /nope/);
        const m = await d.b(["run", "--rm", BUSYBOX, "/bin/no-such-program"]);
        assert.notEqual(m.code, 0);
        assert.match(m.stderr, /no-such-program/);
        ok(await d.b(["run", "-d", "--name", "dup", BUSYBOX, "sleep", "300"]));
        const dup = await d.b(["run", "--name", "dup", BUSYBOX, "true"]);
        assert.equal(dup.code, 1);
        assert.match(dup.stderr, /container "dup": already exists/);
        ok(await d.b(["rm", "-f", "dup"]));
        assert.doesNotMatch(ok(await d.b(["ps", "-a", "-q"])).stdout, /^dup$/m);
      });
    } finally {
      await cleanup(d).catch(() => {});
    }
  },
});

Deno.test({
  name: "berth run pulls a missing image from a registry, with progress on stderr",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using d = await startDaemon({ logLevel: "info" });
    const dir = await Deno.makeTempDir({ dir: d.dir, prefix: "img-" });
    await buildTestArchive(dir);
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = l.addr.port;
    l.close();
    await Deno.writeTextFile(
      `${dir}/registry.yml`,
      `version: 0.1\nlog: {level: warn}\nstorage:\n  filesystem: {rootdirectory: ${dir}/storage}\nhttp:\n  addr: 127.0.0.1:${port}\n`,
    );
    const registry = new Deno.Command("sh", {
      args: [
        "-c",
        `exec docker-registry serve "$1" >"$2" 2>&1`,
        "sh",
        `${dir}/registry.yml`,
        `${dir}/registry.log`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      await waitFor("the registry", async () => {
        try {
          const r = await fetch(`http://127.0.0.1:${port}/v2/`);
          await r.body?.cancel();
          return r.status === 200;
        } catch {
          return false;
        }
      });
      const ref = `localhost:${port}/busybox:latest`;
      ok(
        await run("skopeo", [
          "copy",
          "-q",
          "--dest-tls-verify=false",
          `oci:${dir}/oci:${BUSYBOX}`,
          `docker://${ref}`,
        ]),
        "skopeo push",
      );
      const r = ok(await d.berth(["-n", NS, "run", "--rm", ref, "echo", "pulled and ran"]));
      assert.equal(r.stdout, "pulled and ran\n");
      assert.match(r.stderr, /Unable to find image .* locally; pulling it/);
      assert.match(r.stderr, /[0-9a-f]{12}: \w+/, "per-layer progress lines");
      // The second run finds it: no pull.
      const again = ok(await d.berth(["-n", NS, "run", "--rm", ref, "true"]));
      assert.doesNotMatch(again.stderr, /pulling/);
      assert.match(
        ok(await d.berth(["-n", NS, "images"])).stdout,
        new RegExp(`^localhost:${port}/busybox\\s+latest\\s`, "m"),
      );
    } finally {
      registry.kill("SIGTERM");
      await registry.status;
    }
  },
});
