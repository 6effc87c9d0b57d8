/**
 * The container CLI end to end: `berth run`, `ps`, `exec`, `logs`, `stop`,
 * `kill`, `pause`, `rm`, ... against a real daemon, real shim and real runc,
 * with an image built here from the host's busybox-static and imported with
 * `berth import` (no registry needed).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ok, run, type Run, startDaemon, type TestDaemon, waitFor } from "./_harness.ts";

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
  const list = ok(await run("/bin/busybox", ["--list"])).stdout.split("\n").filter((x) => x && x !== "busybox");
  for (const a of list) await Deno.symlink("busybox", `${root}/bin/${a}`);
  await Deno.writeTextFile(
    `${root}/etc/passwd`,
    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
  );
  await Deno.writeTextFile(`${root}/etc/group`, "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n");
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
async function daemonWithImages(): Promise<TestDaemon & { b(args: string[], opts?: Parameters<TestDaemon["berth"]>[1]): Promise<Run> }> {
  const d = await startDaemon({ logLevel: "info" });
  const archive = await buildTestArchive(await Deno.makeTempDir({ dir: d.dir, prefix: "img-" }));
  const b = (args: string[], opts?: Parameters<TestDaemon["berth"]>[1]) => d.berth(["-n", NS, ...args], opts);
  ok(await b(["import", archive]), "berth import");
  return Object.assign(d, { b });
}

/** Removes every container of NS (so the daemon's shims end before it stops). */
async function cleanup(d: TestDaemon & { b(args: string[]): Promise<Run> }) {
  const ids = (await d.b(["ps", "-a", "-q"])).stdout.split("\n").filter(Boolean);
  if (ids.length) await d.b(["rm", "-f", ...ids]);
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

      await t.step("run: stdout and stderr are kept apart, options after IMAGE are the command's", async () => {
        const r = ok(await d.b(["run", "--rm", BUSYBOX, "sh", "-c", "echo out; echo err >&2; echo -n tail"]));
        assert.equal(r.stdout, "out\ntail");
        assert.equal(r.stderr, "err\n");
      });

      await t.step("run -i: stdin reaches the process and its EOF ends it", async () => {
        const r = ok(await d.b(["run", "--rm", "-i", BUSYBOX, "sh", "-c", "wc -l; cat"], {
          stdin: "a\nb\nc\n",
        }));
        assert.equal(r.stdout.trim(), "3");
      });

      await t.step("run: env, user and workdir come from the image; flags override them", async () => {
        const r = ok(await d.b(["run", "--rm", APP, "sh", "-c", 'echo "$GREETING"; id; pwd']));
        assert.deepEqual(lines(r.stdout), [
          "hello from the image",
          "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)",
          "/home/app",
        ]);
        const o = ok(
          await d.b(["run", "--rm", "-e", "GREETING=overridden", "-u", "root", "-w", "/tmp", APP, "sh", "-c", 'echo "$GREETING"; id -u; pwd']),
        );
        assert.deepEqual(lines(o.stdout), ["overridden", "0", "/tmp"]);
      });

      await t.step("run -v: bind mounts, read-write and read-only", async () => {
        const host = await Deno.makeTempDir({ dir: d.dir, prefix: "bind-" });
        await Deno.writeTextFile(`${host}/in.txt`, "from the host\n");
        const r = ok(await d.b(["run", "--rm", "-v", `${host}:/data`, BUSYBOX, "sh", "-c", "cat /data/in.txt; echo written > /data/out.txt"]));
        assert.equal(r.stdout, "from the host\n");
        assert.equal(await Deno.readTextFile(`${host}/out.txt`), "written\n");
        const ro = await d.b(["run", "--rm", "-v", `${host}:/data:ro`, BUSYBOX, "sh", "-c", "echo x > /data/no.txt"]);
        assert.notEqual(ro.code, 0);
        assert.match(ro.stderr, /Read-only file system/);
      });

      await t.step("run -it: a terminal session driven through a pty", async () => {
        // script(1) gives berth a real terminal; the session sees a tty of the given size.
        const r = await run("script", [
          "-qec",
          `stty cols 91 rows 27; ${Deno.execPath()} run -A ${new URL("../main.ts", import.meta.url).pathname} -a ${d.sock} -n ${NS} run --rm -it ${BUSYBOX} sh -c 'tty; stty size; read line; echo got:$line; exit 3'`,
          "/dev/null",
        ], { stdin: "hello\n" });
        assert.match(r.stdout, /\/dev\/pts\/\d+/, r.stdout);
        assert.match(r.stdout, /27 91/);
        assert.match(r.stdout, /got:hello/);
        assert.equal(r.code, 3, r.stdout);
      });

      await t.step("run -d and ps", async () => {
        const id = ok(await d.b(["run", "-d", "--name", "sleeper", APP, "sleep", "300"])).stdout.trim();
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
        const u = ok(await d.b(["exec", "-u", "root", "-e", "X=1", "-w", "/tmp", "sleeper", "sh", "-c", 'id -u; echo $X; pwd']));
        assert.deepEqual(lines(u.stdout), ["0", "1", "/tmp"]);
        const i = ok(await d.b(["exec", "-i", "sleeper", "cat"], { stdin: "piped in\n" }));
        assert.equal(i.stdout, "piped in\n");
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
        const frozen = await Deno.readTextFile(`/sys/fs/cgroup/freezer/${NS}/sleeper/freezer.state`).catch(() => "");
        if (frozen) assert.equal(frozen.trim(), "FROZEN");
        ok(await d.b(["unpause", "sleeper"]));
        assert.match(ok(await d.b(["ps"])).stdout, /^sleeper\s+\S+\s+running/m);
        const r = ok(await d.b(["exec", "sleeper", "echo", "alive"]));
        assert.equal(r.stdout, "alive\n");
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
        ok(await d.b(["run", "--name", "talker", BUSYBOX, "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo bad >&2"]));
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
        ok(await d.b(["run", "-d", "--name", "ticker", BUSYBOX, "sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.3; done"]));
        const r = ok(await d.b(["logs", "-f", "ticker"]));
        assert.equal(r.stdout, "tick1\ntick2\ntick3\n");
        ok(await d.b(["rm", "ticker"]));
      });

      await t.step("stop: the image's stop signal, then SIGKILL after the grace period", async () => {
        // APP's StopSignal is SIGUSR1: a shell trapping it exits 42 at once.
        ok(await d.b(["run", "-d", "--name", "polite", APP, "sh", "-c", "trap 'exit 42' USR1; while true; do sleep 0.1; done"]));
        await waitFor("polite running", async () => /running/.test((await d.b(["ps"])).stdout));
        await new Promise((r) => setTimeout(r, 300));
        ok(await d.b(["stop", "polite"]));
        assert.equal(ok(await d.b(["wait", "polite"])).stdout, "42\n");
        // A process that ignores TERM is killed after -t seconds.
        ok(await d.b(["run", "-d", "--name", "stubborn", BUSYBOX, "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]));
        await new Promise((r) => setTimeout(r, 300));
        const t0 = performance.now();
        ok(await d.b(["stop", "-t", "1", "stubborn"]));
        const took = performance.now() - t0;
        assert.ok(took >= 900, `stop waited the grace period (${took} ms)`);
        assert.ok(took < 8000, `stop did not hang (${took} ms)`);
        assert.equal(ok(await d.b(["wait", "stubborn"])).stdout, "137\n");
        ok(await d.b(["rm", "polite", "stubborn"]));
      });

      await t.step("kill -s, start and restart", async () => {
        ok(await d.b(["run", "-d", "--name", "k1", BUSYBOX, "sleep", "300"]));
        ok(await d.b(["kill", "-s", "KILL", "k1"]));
        assert.equal(ok(await d.b(["wait", "k1"])).stdout, "137\n");
        const again = ok(await d.b(["start", "-a", "k1"]));
        assert.equal(again.stdout, "");
        ok(await d.b(["rm", "-f", "k1"]));
        ok(await d.b(["run", "-d", "--name", "r1", BUSYBOX, "sh", "-c", "echo started; sleep 300"]));
        ok(await d.b(["restart", "-t", "1", "r1"]));
        await waitFor("r1 running again", async () => /^r1\s+\S+\s+running/m.test((await d.b(["ps"])).stdout));
        await waitFor("two starts logged", async () => (await d.b(["logs", "r1"])).stdout === "started\nstarted\n");
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
        assert.match(dup.stderr, /already exists/);
        ok(await d.b(["rm", "-f", "dup"]));
        assert.equal(ok(await d.b(["ps", "-a", "-q"])).stdout, "");
      });
    } finally {
      await cleanup(d).catch(() => {});
    }
  },
});
