import assert from "node:assert/strict";
import { isKind } from "../core/errdefs.ts";
import { DEFAULT_CAPABILITIES } from "./caps.ts";
import { seccompVerdict } from "./seccomp.ts";
import { DEFAULT_PATH_ENV, defaultSpec, generateSpec, type Spec } from "./spec.ts";
import * as o from "./spec_opts.ts";

const base = { namespace: "default", id: "c1" };

async function withRootfs<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "berth-specopts-" });
  try {
    await Deno.mkdir(`${dir}/etc`);
    await Deno.writeTextFile(
      `${dir}/etc/passwd`,
      "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    );
    await Deno.writeTextFile(`${dir}/etc/group`, "root:x:0:\nstaff:x:50:app\napp:x:1000:\n");
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("mergeEnv replaces by key, appends new keys, unsets bare keys", () => {
  assert.deepEqual(
    o.mergeEnv(["PATH=/bin", "A=1", "B=2"], ["A=9", "C=3", "B", "Z"]),
    ["PATH=/bin", "A=9", "C=3"],
  );
  assert.deepEqual(o.mergeEnv([], ["X=a=b"]), ["X=a=b"]);
  assert.deepEqual(o.mergeEnv(["X=1"], ["X="]), ["X="]);
});

Deno.test("withEnv and withDefaultPathEnv", async () => {
  const s = await generateSpec(base, o.withEnv(["A=1", "B=2"]), o.withEnv(["A=3"]));
  assert.deepEqual(s.process!.env, ["A=3", "B=2"]);
  await o.withDefaultPathEnv(s);
  assert.equal(s.process!.env!.at(-1), DEFAULT_PATH_ENV);
  await o.withEnv(["PATH=/x"])(s);
  await o.withDefaultPathEnv(s);
  assert.equal(s.process!.env!.filter((e) => e.startsWith("PATH=")).length, 1);
  assert.throws(() => o.withEnv(["=x"])(s), /Invalid environment variable "=x": empty name/);
});

Deno.test("withImageConfig: entrypoint+cmd, env under flags, workdir, user with groups", async () => {
  await withRootfs(async (root) => {
    const cfg = {
      User: "app",
      Env: ["PATH=/usr/bin", "FOO=image", "KEEP=1"],
      Entrypoint: ["/entry"],
      Cmd: ["--flag", "x"],
      WorkingDir: "/srv",
    };
    const s = await generateSpec(
      base,
      o.withEnv(["FOO=cli", "NEW=1"]),
      o.withImageConfig(cfg, root),
    );
    const p = s.process!;
    assert.deepEqual(p.args, ["/entry", "--flag", "x"]);
    assert.deepEqual(p.env, ["PATH=/usr/bin", "FOO=cli", "KEEP=1", "NEW=1"]);
    assert.equal(p.cwd, "/srv");
    assert.deepEqual(p.user, { uid: 1000, gid: 1000, additionalGids: [1000, 50] });
    // Without USER the ids set earlier stay; root's groups are looked up.
    const k = await generateSpec(
      base,
      o.withUserIds(7, 8),
      o.withImageConfig({ Cmd: ["x"] }, root),
    );
    assert.deepEqual(k.process!.user, { uid: 7, gid: 8, additionalGids: [8] });
    // Args given by the user replace Cmd, not Entrypoint.
    const t = await generateSpec(base, o.withImageConfig(cfg, root, { args: ["sh"] }));
    assert.deepEqual(t.process!.args, ["/entry", "sh"]);
  });
});

Deno.test("withImageConfig defaults: PATH, cwd /, root", async () => {
  await withRootfs(async (root) => {
    const s = await generateSpec(base, o.withImageConfig({ Cmd: ["sh"], Env: null }, root));
    assert.deepEqual(s.process!.env, [DEFAULT_PATH_ENV]);
    assert.equal(s.process!.cwd, "/");
    assert.deepEqual(s.process!.user, { uid: 0, gid: 0, additionalGids: [0] });
    assert.deepEqual(s.process!.args, ["sh"]);
  });
  // No rootfs at all: a numeric USER still works, a name cannot.
  const n = await generateSpec(base, o.withImageConfig({ User: "5:6", Cmd: ["x"] }));
  assert.deepEqual(n.process!.user, { uid: 5, gid: 6, additionalGids: [6] });
  await assert.rejects(
    generateSpec(base, o.withImageConfig({ User: "app", Cmd: ["x"] })),
    /Cannot resolve user "app" without a rootfs/,
  );
});

Deno.test("withImageConfig reads the user from an absolute root.path when no rootfs is given", async () => {
  await withRootfs(async (root) => {
    const s = await generateSpec({ ...base, rootfs: root }, o.withImageConfig({ User: "app" }));
    assert.equal(s.process!.user.uid, 1000);
  });
});

Deno.test("withUser, withUserIds, withAdditionalGroups", async () => {
  await withRootfs(async (root) => {
    const s = await generateSpec(base, o.withUser("app", root));
    assert.deepEqual(s.process!.user, { uid: 1000, gid: 1000, additionalGids: [1000, 50] });
    await o.withUser("0:50", root)(s);
    assert.deepEqual(s.process!.user, { uid: 0, gid: 50, additionalGids: [50] });
    await o.withAdditionalGroups(["app", "7"], root)(s);
    assert.deepEqual(s.process!.user.additionalGids, [50, 1000, 7]);
    await assert.rejects(
      Promise.resolve(o.withUser("nobody", root)(s)),
      (e: Error) => isKind(e, "not_found") && /user "nobody" in .*etc\/passwd/.test(e.message),
    );
  });
  const t = defaultSpec(base);
  await o.withUserIds(10, 20)(t);
  assert.deepEqual(t.process!.user, { uid: 10, gid: 20, additionalGids: [20] });
  assert.throws(() => o.withUserIds(-1, 0)(t), /Invalid uid -1/);
});

Deno.test("withArgs, withCwd, withTTY, withHostname, no-new-privileges", async () => {
  const s = await generateSpec(
    base,
    o.withArgs(["echo", "hi"]),
    o.withCwd("/tmp"),
    o.withTTY,
    o.withHostname("box-1"),
    o.withNewPrivileges,
  );
  assert.deepEqual(s.process!.args, ["echo", "hi"]);
  assert.equal(s.process!.cwd, "/tmp");
  assert.equal(s.process!.terminal, true);
  assert.deepEqual(s.process!.env, ["TERM=xterm"]);
  assert.equal(s.hostname, "box-1");
  assert.equal(s.process!.noNewPrivileges, undefined);
  await o.withNoNewPrivileges(s);
  assert.equal(s.process!.noNewPrivileges, true);
  assert.throws(() => o.withCwd("rel")(s), /Invalid working directory "rel": must be absolute/);
  assert.throws(() => o.withHostname("bad name!")(s), /Invalid hostname "bad name!"/);
  assert.throws(() => o.withHostname("x".repeat(65))(s), /Invalid hostname/);
  await o.withHostname("c_1.example-2")(s);
  assert.equal(s.hostname, "c_1.example-2");
  assert.equal(o.withProcessCwd, o.withCwd);
});

Deno.test("parseBindMount: rbind, rprivate, ro; relative sources; bad input", () => {
  assert.deepEqual(o.parseBindMount("/srv/data:/data:ro"), {
    destination: "/data",
    type: "bind",
    source: "/srv/data",
    options: ["rbind", "rprivate", "ro"],
  });
  assert.deepEqual(o.parseBindMount("/a:/b").options, ["rbind", "rprivate"]);
  assert.deepEqual(o.parseBindMount("/a:/b:rw").options, ["rbind", "rprivate"]);
  assert.equal(o.parseBindMount("data:/d", { cwd: "/home/me" }).source, "/home/me/data");
  assert.equal(o.parseBindMount("/a/../b/:/c/./d/").destination, "/c/d/");
  for (const bad of ["/a", "/a:rel", "/a:/b:rx", ":/b", "/a:/b:ro:x"]) {
    assert.throws(() => o.parseBindMount(bad), (e: Error) => isKind(e, "invalid_argument"), bad);
  }
  assert.throws(() => o.parseBindMount("/a:/b:rx"), /mode "rx" is not ro or rw/);
  assert.throws(() => o.parseBindMount("/a:b"), /destination "b" must be absolute/);
});

Deno.test("withMounts appends after the defaults; withoutMounts removes", async () => {
  const m = o.parseBindMount("/srv:/data:ro");
  const s = await generateSpec(base, o.withMounts([m]), o.withoutMounts("/run"));
  const dests = s.mounts!.map((x) => x.destination);
  assert.equal(dests.at(-1), "/data");
  assert.ok(!dests.includes("/run"));
  m.options!.push("mutated");
  assert.deepEqual(s.mounts!.at(-1)!.options, ["rbind", "rprivate", "ro"]);
});

Deno.test("withReadonlyRootfs and withRootfsPath", async () => {
  const s = await generateSpec(base, o.withRootfsPath("/x"), o.withReadonlyRootfs);
  assert.deepEqual(s.root, { path: "/x", readonly: true });
});

Deno.test("withHostNetwork is ctr's --net-host", async () => {
  const s = await generateSpec(base, o.withHostNetwork({ hostname: "h1" }));
  assert.ok(!s.linux!.namespaces!.some((n) => n.type === "network"));
  assert.deepEqual(s.mounts!.slice(-2), [
    { destination: "/etc/hosts", type: "bind", source: "/etc/hosts", options: ["rbind", "ro"] },
    {
      destination: "/etc/resolv.conf",
      type: "bind",
      source: "/etc/resolv.conf",
      options: ["rbind", "ro"],
    },
  ]);
  assert.deepEqual(s.process!.env, ["HOSTNAME=h1"]);
  const d = await generateSpec(base, o.withHostNetwork());
  assert.deepEqual(d.process!.env, [`HOSTNAME=${Deno.hostname()}`]);
});

Deno.test("namespaces: join a path, host namespace, user namespace", async () => {
  const s = await generateSpec(
    base,
    o.withNetworkNamespace("/var/run/netns/pod1"),
    o.withHostNamespace("ipc"),
    o.withUserNamespace([{ containerID: 0, hostID: 100000, size: 65536 }], [
      { containerID: 0, hostID: 100000, size: 65536 },
    ]),
  );
  assert.deepEqual(s.linux!.namespaces, [
    { type: "pid" },
    { type: "uts" },
    { type: "mount" },
    { type: "network", path: "/var/run/netns/pod1" },
    { type: "user" },
  ]);
  assert.equal(s.linux!.uidMappings!.length, 1);
  // --net none is the default: a network namespace of its own.
  const n = await generateSpec(base, o.withNetworkNamespace());
  assert.deepEqual(n.linux!.namespaces!.find((x) => x.type === "network"), { type: "network" });
});

Deno.test("parseMemorySize understands human sizes", () => {
  assert.equal(o.parseMemorySize("1048576"), 1048576);
  assert.equal(o.parseMemorySize("512k"), 512 * 1024);
  assert.equal(o.parseMemorySize("512m"), 512 * 1024 * 1024);
  assert.equal(o.parseMemorySize("512M"), 512 * 1024 * 1024);
  assert.equal(o.parseMemorySize("1g"), 1024 ** 3);
  assert.equal(o.parseMemorySize("1.5G"), 1.5 * 1024 ** 3);
  assert.equal(o.parseMemorySize("2gb"), 2 * 1024 ** 3);
  assert.equal(o.parseMemorySize("2GiB"), 2 * 1024 ** 3);
  assert.equal(o.parseMemorySize("100b"), 100);
  for (const bad of ["", "m", "-1m", "1x", "1 g b", "1e9"]) {
    assert.throws(() => o.parseMemorySize(bad), /Invalid size/, bad);
  }
});

Deno.test("memory, cpu and pids limits", async () => {
  const s = await generateSpec(
    base,
    o.withMemoryLimit(o.parseMemorySize("256m")),
    o.withMemorySwap(-1),
    o.withCpus(1.5),
    o.withCpuShares(512),
    o.withPidsLimit(100),
  );
  const r = s.linux!.resources!;
  assert.deepEqual(r.memory, { limit: 268435456, swap: -1 });
  assert.deepEqual(r.cpu, { quota: 150000, period: 100000, shares: 512 });
  assert.deepEqual(r.pids, { limit: 100 });
  // The device rules stay.
  assert.equal(r.devices!.length, 10);
  assert.throws(() => o.withCpus(0)(s), /Invalid cpus 0/);
  assert.throws(() => o.withCpus(0.001)(s), /at least 0.01/);
  assert.throws(() => o.withCpus(NaN)(s), /Invalid cpus/);
  assert.throws(() => o.withMemoryLimit(0)(s), /Invalid memory limit 0/);
  assert.throws(() => o.withMemoryLimit(1.5)(s), /Invalid memory limit/);
  assert.throws(() => o.withCpuShares(1)(s), /Invalid cpu shares/);
  const c = await generateSpec(base, o.withCpus(0.25));
  assert.deepEqual(c.linux!.resources!.cpu, { quota: 25000, period: 100000 });
});

Deno.test("capability options", async () => {
  const s = await generateSpec(
    base,
    o.withAddedCapabilities(["sys_ptrace", "CAP_KILL"]),
    o.withDroppedCapabilities(["CAP_NET_RAW"]),
  );
  const c = s.process!.capabilities!;
  assert.equal(c.bounding!.length, 14);
  assert.ok(c.effective!.includes("CAP_SYS_PTRACE"));
  assert.ok(!c.permitted!.includes("CAP_NET_RAW"));
  assert.equal(c.inheritable, undefined);
  await o.withCapabilities(["CAP_CHOWN"])(s);
  assert.deepEqual(s.process!.capabilities, {
    bounding: ["CAP_CHOWN"],
    effective: ["CAP_CHOWN"],
    permitted: ["CAP_CHOWN"],
  });
  assert.throws(() => o.withAddedCapabilities(["CAP_NOPE"])(s), /Unknown capability/);
});

Deno.test("withDefaultSeccomp follows the capabilities set before it", async () => {
  const s = await generateSpec(base, o.withDefaultSeccomp({ arch: "amd64", kernel: [6, 1] }));
  assert.equal(seccompVerdict(s.linux!.seccomp!, "mount").action, "SCMP_ACT_ERRNO");
  const a = await generateSpec(
    base,
    o.withAddedCapabilities(["CAP_SYS_ADMIN"]),
    o.withDefaultSeccomp({ arch: "amd64", kernel: [6, 1] }),
  );
  assert.equal(seccompVerdict(a.linux!.seccomp!, "mount").action, "SCMP_ACT_ALLOW");
  await o.withSeccompUnconfined(a);
  assert.equal(a.linux!.seccomp, undefined);
});

Deno.test("withPrivileged lifts capabilities, paths, seccomp and device limits", async () => {
  const dev = await Deno.makeTempDir({ prefix: "berth-dev-" });
  try {
    // A fake /dev: a directory tree with no device nodes (mknod is not needed
    // for this: real nodes are compared against containerd in the e2e test).
    await Deno.mkdir(`${dev}/pts`);
    await Deno.writeTextFile(`${dev}/not-a-device`, "");
    const s = await generateSpec(
      base,
      o.withDefaultSeccomp(),
      o.withPrivileged({ capabilities: ["CAP_SYS_ADMIN", "CAP_CHOWN"], devDir: dev }),
    );
    assert.deepEqual(s.process!.capabilities, {
      bounding: ["CAP_SYS_ADMIN", "CAP_CHOWN"],
      effective: ["CAP_SYS_ADMIN", "CAP_CHOWN"],
      permitted: ["CAP_SYS_ADMIN", "CAP_CHOWN"],
    });
    assert.equal(s.linux!.maskedPaths, undefined);
    assert.equal(s.linux!.readonlyPaths, undefined);
    assert.equal(s.linux!.seccomp, undefined);
    assert.deepEqual(s.linux!.resources!.devices, [{ allow: true, access: "rwm" }]);
    assert.deepEqual(s.linux!.devices, []);
    assert.deepEqual(s.mounts!.find((m) => m.type === "sysfs")!.options, [
      "nosuid",
      "noexec",
      "nodev",
      "rw",
    ]);
  } finally {
    await Deno.remove(dev, { recursive: true });
  }
});

Deno.test("hostDevices lists /dev's device nodes like containerd", async () => {
  const devs = await o.hostDevices();
  const nul = devs.find((d) => d.path === "/dev/null");
  assert.deepEqual(nul && { type: nul.type, major: nul.major, minor: nul.minor }, {
    type: "c",
    major: 1,
    minor: 3,
  });
  assert.equal(nul!.fileMode, 0o666);
  assert.ok(!devs.some((d) => d.path.startsWith("/dev/pts/") || d.path === "/dev/console"));
  assert.ok(devs.every((d) => d.type === "c" || d.type === "b"));
});

Deno.test("dev_t decoding matches glibc's major/minor", () => {
  assert.equal(o.devMajor(0x103), 1);
  assert.equal(o.devMinor(0x103), 3);
  // major 259, minor 1048575 (large numbers use the high bits)
  const rdev = Number((259n & 0xfffn) << 8n | (1048575n & 0xffn) | ((1048575n & ~0xffn) << 12n));
  assert.equal(o.devMajor(rdev), 259);
  assert.equal(o.devMinor(rdev), 1048575);
});

Deno.test("annotations, cgroups path, rlimits, oom score", async () => {
  const s: Spec = await generateSpec(
    base,
    o.withAnnotations({ a: "1" }),
    o.withAnnotations({ b: "2", a: "3" }),
    o.withNamespacedCgroup("ns", "id"),
    o.withRlimit("RLIMIT_NOFILE", 4096, 8192),
    o.withOomScoreAdj(500),
  );
  assert.deepEqual(s.annotations, { a: "3", b: "2" });
  assert.equal(s.linux!.cgroupsPath, "/ns/id");
  assert.deepEqual(s.process!.rlimits, [{ type: "RLIMIT_NOFILE", hard: 8192, soft: 4096 }]);
  assert.equal(s.process!.oomScoreAdj, 500);
  await o.withCgroupsPath("")(s);
  assert.equal(s.linux!.cgroupsPath, "");
  assert.throws(() => o.withRlimit("NOFILE", 1, 1)(s), /Invalid rlimit type/);
  assert.throws(() => o.withRlimit("RLIMIT_NOFILE", 2, 1)(s), /soft 2 above hard 1/);
  assert.throws(() => o.withOomScoreAdj(2000)(s), /Invalid oom_score_adj/);
});

Deno.test("compose applies in order and options build on a bare spec", async () => {
  const s: Spec = { ociVersion: "1.0.2-dev" };
  await o.compose(o.withArgs(["a"]), o.withCpus(1), o.withTTY, o.withUserIds(1, 2))(s);
  assert.deepEqual(s.process!.args, ["a"]);
  assert.equal(s.linux!.resources!.cpu!.quota, 100000);
  // containerd adds TERM only to specs with a Linux section; withCpus made one.
  assert.deepEqual(s.process!.env, ["TERM=xterm"]);
  assert.deepEqual(s.process!.user, { uid: 1, gid: 2, additionalGids: [2] });
  const bare: Spec = { ociVersion: "1.0.2-dev" };
  await o.withTTY(bare);
  assert.equal(bare.process!.env, undefined);
  // A default spec's capabilities are untouched by options that do not concern them.
  const d = await generateSpec(base, o.withTTY, o.withCpus(2));
  assert.deepEqual(d.process!.capabilities!.bounding, [...DEFAULT_CAPABILITIES]);
});
