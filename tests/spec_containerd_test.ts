/**
 * berth's runtime spec against the one containerd 1.6 itself generates.
 *
 * The reference is real containerd: `ctr oci spec` (no daemon) for the bare
 * default, and for everything else a private containerd daemon (temp root,
 * state and socket, CRI off) in which Debian's `ctr containers create`
 * builds specs from an imported test image or a rootfs with the same flags
 * `ctr run` takes; `ctr containers info --spec` prints what containerd
 * generated. berth's spec, built from the same inputs with src/oci, must be
 * equal as a whole JSON document (or, for privileged host devices, equal
 * field by field). Needs root (containerd, overlay unpack).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { run } from "./_harness.ts";
import { currentCapabilities } from "../src/oci/caps.ts";
import { defaultSpec, generateSpec, type SpecOpt } from "../src/oci/spec.ts";
import * as o from "../src/oci/spec_opts.ts";
import type { Spec } from "../src/oci/runtime_types.ts";
import { type Containerd, startContainerd } from "./_containerd.ts";

const NS = "spec-test";

/** The spec as JSON would carry it: undefined fields gone, key order irrelevant to deepEqual. */
function plain(v: unknown): unknown {
  const spec = JSON.parse(JSON.stringify(v));
  // Syscall names in one seccomp rule are a set: containerd lists them in
  // its source order, berth alphabetically.
  for (const rule of spec?.linux?.seccomp?.syscalls ?? []) rule.names.sort();
  return spec;
}

async function ok(
  p: Promise<{ code: number; stdout: string; stderr: string }>,
  what: string,
): Promise<string> {
  const r = await p;
  assert.equal(r.code, 0, `${what} failed: ${r.stderr}`);
  return r.stdout;
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

const PASSWD = [
  "root:x:0:0:root:/root:/bin/sh",
  "app:x:1000:1000:app user:/home/app:/bin/sh",
  "other:x:1001:1001::/home/other:/bin/sh",
  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false",
  "",
].join("\n");

const GROUP = [
  "root:x:0:",
  "audio:x:29:root,app",
  "staff:x:50:app",
  "app:x:1000:app",
  "other:x:1001:",
  "docker:x:999:other,app",
  "nogroup:x:65534:",
  "",
].join("\n");

/** The users the test image variants declare (`USER` of each config). */
const USERS = ["", "app", "1000", "4242", "app:staff", "1000:50", "other:999", "1001:staff"];

/** What containerd resolved each of USERS to, against PASSWD and GROUP. */
const EXPECTED_USERS = [
  { uid: 0, gid: 0, additionalGids: [0, 29] },
  { uid: 1000, gid: 1000, additionalGids: [1000, 29, 50, 999] },
  { uid: 1000, gid: 1000, additionalGids: [1000, 29, 50, 999] },
  { uid: 4242, gid: 0, additionalGids: [0] }, // not in passwd: gid 0, no file needed
  { uid: 1000, gid: 50, additionalGids: [29, 50, 999] },
  { uid: 1000, gid: 50, additionalGids: [29, 50, 999] },
  { uid: 1001, gid: 999, additionalGids: [999] },
  { uid: 1001, gid: 50, additionalGids: [50, 999] },
];

const GHOST_IMAGE = "example.test/berth/spec:ghost";

function imageName(i: number): string {
  return `example.test/berth/spec:u${i}`;
}

function goArch(): string {
  return Deno.build.arch === "x86_64" ? "amd64" : "arm64";
}

/**
 * Writes a rootfs (with /etc/group reached through an absolute symlink, so
 * both sides must resolve links inside the root) and an OCI archive with one
 * image per entry of USERS, all sharing that rootfs as their only layer.
 */
async function buildImages(dir: string): Promise<{ rootfs: string; archive: string }> {
  const rootfs = `${dir}/rootfs`;
  await Deno.mkdir(`${rootfs}/etc`, { recursive: true });
  await Deno.mkdir(`${rootfs}/work`);
  await Deno.writeTextFile(`${rootfs}/etc/passwd`, PASSWD);
  await Deno.writeTextFile(`${rootfs}/etc/group.real`, GROUP);
  await Deno.symlink("/etc/group.real", `${rootfs}/etc/group`);
  const layout = `${dir}/layout`;
  await Deno.mkdir(`${layout}/blobs/sha256`, { recursive: true });
  await ok(
    run("tar", [
      "--numeric-owner",
      "--owner=0",
      "--group=0",
      "-C",
      rootfs,
      "-cf",
      `${dir}/layer.tar`,
      ".",
    ]),
    "tar layer",
  );
  const put = async (data: Uint8Array) => {
    const d = sha256(data);
    await Deno.writeFile(`${layout}/blobs/sha256/${d}`, data);
    return { digest: `sha256:${d}`, size: data.length };
  };
  const layer = await put(await Deno.readFile(`${dir}/layer.tar`));
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  const manifests = [];
  for (const [i, user] of USERS.entries()) {
    const config = await put(enc({
      architecture: goArch(),
      os: "linux",
      config: {
        User: user,
        Env: ["PATH=/usr/bin:/bin", "FOO=from-image", "KEEP=1"],
        Entrypoint: ["/bin/echo"],
        Cmd: ["hello", String(i)],
        WorkingDir: "/work",
      },
      rootfs: { type: "layers", diff_ids: [layer.digest] },
    }));
    const manifest = await put(enc({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
    }));
    manifests.push({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      ...manifest,
      annotations: { "io.containerd.image.name": imageName(i) },
    });
  }
  // One more image whose USER is missing from /etc/passwd.
  {
    const config = await put(enc({
      architecture: goArch(),
      os: "linux",
      config: { User: "ghost", Cmd: ["/bin/true"] },
      rootfs: { type: "layers", diff_ids: [layer.digest] },
    }));
    const manifest = await put(enc({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
    }));
    manifests.push({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      ...manifest,
      annotations: { "io.containerd.image.name": GHOST_IMAGE },
    });
  }
  await Deno.writeTextFile(`${layout}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await Deno.writeTextFile(
    `${layout}/index.json`,
    JSON.stringify({ schemaVersion: 2, manifests }),
  );
  const archive = `${dir}/images.tar`;
  await ok(run("tar", ["-C", layout, "-cf", archive, "."]), "tar archive");
  return { rootfs, archive };
}

/** A rootfs with busybox-static and the applets the security probe uses. */
async function busyboxRootfs(work: string): Promise<string> {
  const root = `${work}/bbroot`;
  for (const d of ["bin", "mnt", "proc", "dev", "sys", "tmp", "etc"]) {
    await Deno.mkdir(`${root}/${d}`, { recursive: true });
  }
  await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
  await Deno.chmod(`${root}/bin/busybox`, 0o755);
  for (const applet of ["sh", "grep", "mount", "head", "wc", "cat", "echo", "ls"]) {
    await Deno.symlink("busybox", `${root}/bin/${applet}`);
  }
  return root;
}

/**
 * What a container sees of its own confinement, one `key=value` (or Cap
 * line) per line. /proc/timer_list stands for the masked files (this kernel
 * has no /proc/kcore); /proc/sys/kernel/hostname for the read-only /proc/sys
 * (writing it back is harmless: it is the container's own UTS namespace).
 */
const PROBE = [
  "grep -E '^Cap(Eff|Bnd):' /proc/self/status",
  "if mount -t tmpfs probe /mnt 2>/dev/null; then echo mount=ok; else echo mount=denied; fi",
  "echo timer_list=$(head -c 16 /proc/timer_list 2>/dev/null | wc -c)",
  "echo firmware=$(ls /sys/firmware | wc -l)",
  "if (cat /proc/sys/kernel/hostname > /proc/sys/kernel/hostname) 2>/dev/null; " +
  "then echo proc_sys=writable; else echo proc_sys=readonly; fi",
].join("\n");

let runcSeq = 0;

/**
 * Runs the probe in `spec` with runc (own root dir, own cgroup, which runc
 * removes again), returning its stdout.
 */
async function runInRunc(work: string, spec: Spec): Promise<string> {
  const n = ++runcSeq;
  const bundle = `${work}/bundle-${n}`;
  await Deno.mkdir(bundle);
  const s = structuredClone(spec);
  s.process!.args = ["/bin/sh", "-c", PROBE];
  s.process!.env = ["PATH=/bin"];
  s.linux!.cgroupsPath = `/berth-spec-test-${Deno.pid}-${n}`;
  await Deno.writeTextFile(`${bundle}/config.json`, JSON.stringify(s));
  const r = await run("runc", ["--root", `${work}/runc`, "run", "--bundle", bundle, `probe-${n}`]);
  assert.equal(r.code, 0, `runc run failed: ${r.stderr}`);
  return r.stdout;
}

/** The spec containerd generated for container `id`. */
async function containerdSpec(cd: Containerd, id: string): Promise<Spec> {
  return JSON.parse(
    await ok(cd.ctr(["containers", "info", "--spec", id]), `ctr containers info ${id}`),
  );
}

/** `ctr containers create` with flags, then its spec. */
async function ctrCreate(cd: Containerd, args: string[], id: string): Promise<Spec> {
  await ok(cd.ctr(["containers", "create", ...args]), `ctr containers create ${args.join(" ")}`);
  return await containerdSpec(cd, id);
}

Deno.test("the bare default spec equals `ctr oci spec` (no daemon)", async () => {
  const out = await ok(run("ctr", ["oci", "spec"]), "ctr oci spec");
  const theirs = JSON.parse(out);
  // ctr oci spec runs in namespace "default" with no container, so id "".
  const ours = defaultSpec({ namespace: "default", id: "", bareDevices: true });
  assert.deepEqual(plain(ours), theirs);
});

Deno.test("specs equal containerd's: image config, users, flags, seccomp, privileged", async (t) => {
  const work = await Deno.makeTempDir({ prefix: "berth-spec-img-" });
  try {
    await using cd = await startContainerd(NS);
    const { rootfs, archive } = await buildImages(work);
    await ok(cd.ctr(["images", "import", archive]), "ctr images import");
    const imageConfig = (i: number): o.ImageConfigLike => ({
      User: USERS[i]!,
      Env: ["PATH=/usr/bin:/bin", "FOO=from-image", "KEEP=1"],
      Entrypoint: ["/bin/echo"],
      Cmd: ["hello", String(i)],
      WorkingDir: "/work",
    });
    const ours = (id: string, ...opts: SpecOpt[]) =>
      generateSpec({ namespace: NS, id }, ...opts).then(plain);

    await t.step("image config with each USER form: whole spec equal", async () => {
      for (const [i, user] of USERS.entries()) {
        const id = `img-${i}`;
        const theirs = await ctrCreate(cd, [imageName(i), id], id);
        const mine = await ours(id, o.withImageConfig(imageConfig(i), rootfs));
        assert.deepEqual(mine, theirs, `USER ${JSON.stringify(user)}`);
        // And what that is, spelled out: primary gid first, then the groups
        // listing the user (a group named like the user is not "supplementary").
        assert.deepEqual(theirs.process!.user, EXPECTED_USERS[i], `USER ${JSON.stringify(user)}`);
      }
    });

    await t.step("image with env, args, cwd, tty, read-only, memory, annotations", async () => {
      const id = "img-flags";
      const theirs = await ctrCreate(cd, [
        "--env",
        "FOO=from-flag",
        "--env",
        "NEW=2",
        "--cwd",
        "/tmp",
        "--tty",
        "--read-only",
        "--memory-limit",
        String(512 * 1024 * 1024),
        "--annotation",
        "a.b/c=d",
        "--allow-new-privs",
        imageName(1),
        id,
        "/bin/sh",
        "id",
      ], id);
      // ctr's order: env, mounts, image config, read-only, args, cwd, tty, ..., annotations.
      const mine = await ours(
        id,
        o.withEnv(["FOO=from-flag", "NEW=2"]),
        o.withImageConfig(imageConfig(1), rootfs),
        o.withReadonlyRootfs,
        o.withArgs(["/bin/sh", "id"]),
        o.withCwd("/tmp"),
        o.withTTY,
        o.withAnnotations({ "a.b/c": "d" }),
        o.withNewPrivileges,
        o.withMemoryLimit(o.parseMemorySize("512m")),
      );
      assert.deepEqual(mine, theirs);
    });

    await t.step("rootfs with bind mounts, host network, cap changes, seccomp", async () => {
      const id = "rootfs-net";
      const theirs = await ctrCreate(cd, [
        "--rootfs",
        "--mount",
        "type=bind,src=/srv,dst=/data,options=rbind:rprivate:ro",
        "--net-host",
        "--cap-add",
        "CAP_SYS_PTRACE",
        "--cap-drop",
        "CAP_NET_RAW",
        "--seccomp",
        rootfs,
        id,
        "/bin/echo",
        "x",
      ], id);
      const mine = await ours(
        id,
        o.withMounts([o.parseBindMount("/srv:/data:ro")]),
        o.withRootfsPath(rootfs),
        o.withArgs(["/bin/echo", "x"]),
        o.withHostNetwork(),
        o.withAddedCapabilities(["CAP_SYS_PTRACE"]),
        o.withDroppedCapabilities(["NET_RAW"]),
        o.withDefaultSeccomp(),
      );
      assert.deepEqual(mine, plain(theirs));
      // ctr put /etc/hosts and resolv.conf binds and HOSTNAME in, and no netns.
      assert.ok(!(mine as Spec).linux!.namespaces!.some((n) => n.type === "network"));
    });

    await t.step("default seccomp profile for the default capabilities", async () => {
      const id = "seccomp-default";
      const theirs = await ctrCreate(cd, ["--rootfs", "--seccomp", rootfs, id, "/bin/true"], id);
      const mine = await ours(
        id,
        o.withRootfsPath(rootfs),
        o.withArgs(["/bin/true"]),
        o.withDefaultSeccomp(),
      );
      assert.deepEqual((mine as Spec).linux!.seccomp, (plain(theirs) as Spec).linux!.seccomp);
      assert.deepEqual(mine, plain(theirs));
    });

    await t.step(
      "privileged with seccomp: all current caps, admin syscalls, host devices",
      async () => {
        const id = "priv";
        const theirs = await ctrCreate(
          cd,
          ["--rootfs", "--privileged", "--seccomp", rootfs, id, "/bin/true"],
          id,
        );
        const mine = await ours(
          id,
          o.withRootfsPath(rootfs),
          o.withArgs(["/bin/true"]),
          o.withPrivileged(),
          o.withDefaultSeccomp(),
        ) as Spec;
        // The capability set is this machine's effective set (ctr and this test both run as root here).
        assert.deepEqual(theirs.process!.capabilities!.bounding, currentCapabilities());
        assert.equal(theirs.linux!.maskedPaths, undefined);
        assert.equal(theirs.linux!.readonlyPaths, undefined);
        assert.deepEqual(theirs.linux!.resources!.devices, [{ allow: true, access: "rwm" }]);
        // Host devices: same nodes, numbers, modes and owners (both listed /dev just now).
        assert.ok((theirs.linux!.devices ?? []).length > 5, "containerd listed host devices");
        assert.deepEqual(mine.linux!.devices, theirs.linux!.devices);
        assert.deepEqual(plain(mine), plain(theirs));
      },
    );

    await t.step("privileged without seccomp and the sysfs mount made writable", async () => {
      const id = "priv-noseccomp";
      const theirs = await ctrCreate(cd, ["--rootfs", "--privileged", rootfs, id, "sh"], id);
      const mine = await ours(id, o.withRootfsPath(rootfs), o.withArgs(["sh"]), o.withPrivileged());
      assert.equal(theirs.linux!.seccomp, undefined);
      assert.deepEqual(mine, plain(theirs));
      const sys = (mine as Spec).mounts!.find((m) => m.destination === "/sys")!;
      assert.deepEqual(sys.options, ["nosuid", "noexec", "nodev", "rw"]);
    });

    await t.step("runc runs both specs with the same security answers", async () => {
      const bb = await busyboxRootfs(work);
      const cases: [string, string[], SpecOpt[]][] = [
        ["run-default", ["--seccomp"], [o.withDefaultSeccomp()]],
        ["run-priv", ["--privileged", "--seccomp"], [o.withPrivileged(), o.withDefaultSeccomp()]],
      ];
      const seen: Record<string, string> = {};
      for (const [id, flags, opts] of cases) {
        const theirs = await ctrCreate(cd, ["--rootfs", ...flags, bb, id, "/bin/sh"], id);
        const mine = await ours(id, o.withRootfsPath(bb), o.withArgs(["/bin/sh"]), ...opts) as Spec;
        const a = await runInRunc(work, mine);
        const b = await runInRunc(work, theirs);
        assert.equal(a, b, `${id}: berth's and containerd's specs behave alike under runc`);
        seen[id] = a;
      }
      // The default: containerd's 14 capabilities, no mount, masked and read-only /proc.
      const d = seen["run-default"]!;
      assert.match(d, /^CapEff:\s+00000000a80425fb$/m);
      assert.match(d, /^mount=denied$/m);
      assert.match(d, /^timer_list=0$/m);
      assert.match(d, /^firmware=0$/m);
      assert.match(d, /^proc_sys=readonly$/m);
      // Privileged lifts all of it: the capabilities this machine has, mount works, nothing masked.
      const p = seen["run-priv"]!;
      const eff = Deno.readTextFileSync("/proc/self/status").match(/^CapEff:\s+(\w+)$/m)![1];
      assert.match(p, new RegExp(`^CapEff:\\s+${eff}$`, "m"));
      assert.match(p, /^mount=ok$/m);
      assert.match(p, /^timer_list=16$/m);
      assert.doesNotMatch(p, /^firmware=0$/m);
      assert.match(p, /^proc_sys=writable$/m);
    });

    await t.step("an unknown USER fails in both", async () => {
      const r = await cd.ctr(["containers", "create", GHOST_IMAGE, "ghost"]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /no users found/);
      await assert.rejects(
        () => ours("x", o.withImageConfig({ ...imageConfig(0), User: "ghost" }, rootfs)),
        /user "ghost" in .*\/etc\/passwd: not found/,
      );
    });
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
