import assert from "node:assert/strict";
import { DEFAULT_CAPABILITIES } from "./caps.ts";
import {
  applySpecOpts,
  cgroupsPathFor,
  DEFAULT_DEVICE_RULES,
  DEFAULT_MASKED_PATHS,
  defaultSpec,
  generateSpec,
} from "./spec.ts";

Deno.test("defaultSpec: process defaults", () => {
  const s = defaultSpec({ namespace: "default", id: "c1" });
  assert.equal(s.ociVersion, "1.0.2-dev");
  const p = s.process!;
  assert.deepEqual(p.user, { uid: 0, gid: 0 });
  assert.equal(p.cwd, "/");
  assert.equal(p.noNewPrivileges, true);
  assert.deepEqual(p.rlimits, [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }]);
  assert.deepEqual(p.capabilities, {
    bounding: [...DEFAULT_CAPABILITIES],
    effective: [...DEFAULT_CAPABILITIES],
    permitted: [...DEFAULT_CAPABILITIES],
  });
  assert.equal(p.args, undefined);
  assert.equal(p.terminal, undefined);
});

Deno.test("defaultSpec: mounts in containerd's order with their options", () => {
  const s = defaultSpec({ namespace: "default", id: "c1" });
  assert.deepEqual(
    s.mounts!.map((m) => `${m.destination} ${m.type}`),
    [
      "/proc proc",
      "/dev tmpfs",
      "/dev/pts devpts",
      "/dev/shm tmpfs",
      "/dev/mqueue mqueue",
      "/sys sysfs",
      "/run tmpfs",
    ],
  );
  const byDest = Object.fromEntries(s.mounts!.map((m) => [m.destination, m.options]));
  assert.deepEqual(byDest["/dev"], ["nosuid", "strictatime", "mode=755", "size=65536k"]);
  assert.deepEqual(byDest["/dev/pts"], [
    "nosuid",
    "noexec",
    "newinstance",
    "ptmxmode=0666",
    "mode=0620",
    "gid=5",
  ]);
  assert.deepEqual(byDest["/dev/shm"], ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]);
  assert.deepEqual(byDest["/sys"], ["nosuid", "noexec", "nodev", "ro"]);
});

Deno.test("defaultSpec: linux section", () => {
  const s = defaultSpec({ namespace: "team-a", id: "web", rootfs: "/x/rootfs", hostname: "web" });
  const l = s.linux!;
  assert.equal(l.cgroupsPath, "/team-a/web");
  assert.deepEqual(l.namespaces!.map((n) => n.type), ["pid", "ipc", "uts", "mount", "network"]);
  assert.ok(l.maskedPaths!.includes("/proc/kcore"));
  assert.ok(l.maskedPaths!.includes("/sys/firmware"));
  assert.equal(l.maskedPaths!.length, 10);
  assert.deepEqual(l.readonlyPaths, [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
  ]);
  // Deny all first, then the standard character devices.
  assert.deepEqual(l.resources!.devices![0], { allow: false, access: "rwm" });
  assert.equal(l.resources!.devices!.length, 10);
  assert.ok(
    l.resources!.devices!.some((d) => d.allow && d.major === 1 && d.minor === 3), // /dev/null
  );
  assert.ok(l.resources!.devices!.some((d) => d.major === 136 && d.minor === undefined)); // pts
  assert.equal(l.seccomp, undefined);
  assert.deepEqual(s.root, { path: "/x/rootfs" });
  assert.equal(s.hostname, "web");
  const bare = defaultSpec({ namespace: "n", id: "i", bareDevices: true });
  assert.deepEqual(bare.linux!.resources!.devices, [{ allow: false, access: "rwm" }]);
  assert.equal(bare.hostname, undefined);
  assert.deepEqual(bare.root, { path: "rootfs" });
});

Deno.test("defaultSpec returns independent copies", () => {
  const a = defaultSpec({ namespace: "n", id: "a" });
  a.mounts![0]!.options!.push("x");
  a.linux!.maskedPaths!.pop();
  a.process!.capabilities!.bounding!.pop();
  a.linux!.resources!.devices!.pop();
  const b = defaultSpec({ namespace: "n", id: "b" });
  assert.deepEqual(b.mounts![0]!.options, ["nosuid", "noexec", "nodev"]);
  assert.equal(b.linux!.maskedPaths!.length, DEFAULT_MASKED_PATHS.length);
  assert.equal(b.process!.capabilities!.bounding!.length, 14);
  assert.equal(b.linux!.resources!.devices!.length, DEFAULT_DEVICE_RULES.length);
  // effective is its own array, not an alias of bounding.
  b.process!.capabilities!.bounding!.pop();
  assert.equal(b.process!.capabilities!.effective!.length, 14);
});

Deno.test("defaultSpec requires a namespace", () => {
  assert.throws(() => defaultSpec({ namespace: "", id: "x" }), /namespace is required/);
});

Deno.test("cgroupsPathFor joins like filepath.Join", () => {
  assert.equal(cgroupsPathFor("default", "c1"), "/default/c1");
  assert.equal(cgroupsPathFor("default", ""), "/default");
});

Deno.test("options apply in order, async ones awaited", async () => {
  const order: string[] = [];
  const s = await generateSpec(
    { namespace: "n", id: "i" },
    (spec) => {
      order.push("a");
      spec.hostname = "first";
    },
    async (spec) => {
      await new Promise((r) => setTimeout(r, 1));
      order.push("b");
      spec.hostname += "-second";
    },
    (spec) => {
      order.push("c");
      spec.hostname += "-third";
    },
  );
  assert.deepEqual(order, ["a", "b", "c"]);
  assert.equal(s.hostname, "first-second-third");
  const t = defaultSpec({ namespace: "n", id: "i" });
  assert.equal(await applySpecOpts(t), t);
  await assert.rejects(
    applySpecOpts(t, () => {
      throw new Error("boom");
    }),
    /boom/,
  );
});

Deno.test("the spec serializes as config.json with only the set fields", () => {
  const json = JSON.parse(JSON.stringify(defaultSpec({ namespace: "n", id: "i" })));
  assert.deepEqual(Object.keys(json).sort(), ["linux", "mounts", "ociVersion", "process", "root"]);
  assert.equal("hostname" in json, false);
});
