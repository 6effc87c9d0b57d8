import assert from "node:assert/strict";
import { DEFAULT_CAPABILITIES, knownCapabilities } from "./caps.ts";
import {
  BASE_SYSCALLS,
  CLONE_NAMESPACE_FLAGS,
  defaultSeccompProfile,
  ENOSYS,
  hostGoArch,
  parseKernelRelease,
  seccompVerdict,
} from "./seccomp.ts";
import type { Spec } from "./runtime_types.ts";

function specWith(bounding: readonly string[]): Pick<Spec, "process"> {
  return {
    process: { user: { uid: 0, gid: 0 }, cwd: "/", capabilities: { bounding: [...bounding] } },
  };
}

const CLONE_NEWNS = 0x20000;
const CLONE_NEWUSER = 0x10000000;
const CLONE_THREAD_FLAGS = 0x3d0f00; // what glibc's pthread_create passes
const EPERM = 1;

const amd64 = { arch: "amd64", kernel: [6, 18] } as const;
const dflt = defaultSeccompProfile(specWith(DEFAULT_CAPABILITIES), amd64);
const admin = defaultSeccompProfile(specWith([...DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"]), amd64);

Deno.test("default action is EPERM; architectures cover x86_64 and its compat ABIs", () => {
  assert.equal(dflt.defaultAction, "SCMP_ACT_ERRNO");
  assert.equal(dflt.defaultErrnoRet, undefined); // runc's default errno for ERRNO is EPERM
  assert.deepEqual(dflt.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
  const arm = defaultSeccompProfile(specWith([]), { arch: "arm64", kernel: [6, 1] });
  assert.deepEqual(arm.architectures, ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]);
});

Deno.test("the base allow list: everyday syscalls allowed, dangerous ones not", () => {
  assert.equal(BASE_SYSCALLS.length, 349);
  assert.equal(new Set(BASE_SYSCALLS).size, BASE_SYSCALLS.length);
  for (const ok of ["read", "write", "openat", "execve", "futex", "io_uring_setup", "statx"]) {
    assert.deepEqual(seccompVerdict(dflt, ok), { action: "SCMP_ACT_ALLOW" }, ok);
  }
  for (
    const no of [
      "mount",
      "umount2",
      "unshare",
      "setns",
      "reboot",
      "init_module",
      "kexec_load",
      "bpf",
      "keyctl",
      "add_key",
      "open_by_handle_at",
      "chroot_nope",
    ]
  ) {
    assert.deepEqual(seccompVerdict(dflt, no), { action: "SCMP_ACT_ERRNO", errno: EPERM }, no);
  }
});

Deno.test("capability-gated syscalls follow the bounding set", () => {
  // CAP_SYS_CHROOT is a default capability, so chroot is allowed by default.
  assert.equal(seccompVerdict(dflt, "chroot").action, "SCMP_ACT_ALLOW");
  assert.equal(seccompVerdict(admin, "mount").action, "SCMP_ACT_ALLOW");
  assert.equal(seccompVerdict(admin, "unshare").action, "SCMP_ACT_ALLOW");
  const ptrace = defaultSeccompProfile(specWith(["CAP_SYS_PTRACE"]), amd64);
  assert.equal(seccompVerdict(ptrace, "process_vm_readv").action, "SCMP_ACT_ALLOW");
  assert.equal(seccompVerdict(dflt, "process_vm_readv").action, "SCMP_ACT_ERRNO");
  const time = defaultSeccompProfile(specWith(["CAP_SYS_TIME"]), amd64);
  assert.equal(seccompVerdict(time, "settimeofday").action, "SCMP_ACT_ALLOW");
  assert.equal(seccompVerdict(dflt, "settimeofday").action, "SCMP_ACT_ERRNO");
  const all = defaultSeccompProfile(specWith(knownCapabilities(40)), amd64);
  for (
    const s of ["reboot", "init_module", "acct", "iopl", "vhangup", "mbind", "open_by_handle_at"]
  ) {
    assert.equal(seccompVerdict(all, s).action, "SCMP_ACT_ALLOW", s);
  }
});

Deno.test("ptrace is allowed for all from Linux 4.8 on, before that only with CAP_SYS_PTRACE", () => {
  assert.equal(seccompVerdict(dflt, "ptrace").action, "SCMP_ACT_ALLOW");
  const old = defaultSeccompProfile(specWith(DEFAULT_CAPABILITIES), {
    arch: "amd64",
    kernel: [4, 4],
  });
  assert.equal(seccompVerdict(old, "ptrace").action, "SCMP_ACT_ERRNO");
  const oldPtrace = defaultSeccompProfile(specWith(["CAP_SYS_PTRACE"]), {
    arch: "amd64",
    kernel: [4, 4],
  });
  assert.equal(seccompVerdict(oldPtrace, "ptrace").action, "SCMP_ACT_ALLOW");
});

Deno.test("without CAP_SYS_ADMIN clone may not create namespaces and clone3 gives ENOSYS", () => {
  assert.equal(CLONE_NAMESPACE_FLAGS, 0x7e020000);
  assert.equal(seccompVerdict(dflt, "clone", [CLONE_THREAD_FLAGS]).action, "SCMP_ACT_ALLOW");
  assert.equal(seccompVerdict(dflt, "clone", [0x11]).action, "SCMP_ACT_ALLOW"); // fork: SIGCHLD
  assert.deepEqual(seccompVerdict(dflt, "clone", [CLONE_NEWNS | 0x11]), {
    action: "SCMP_ACT_ERRNO",
    errno: EPERM,
  });
  assert.equal(seccompVerdict(dflt, "clone", [CLONE_NEWUSER]).action, "SCMP_ACT_ERRNO");
  assert.deepEqual(seccompVerdict(dflt, "clone3"), { action: "SCMP_ACT_ERRNO", errno: ENOSYS });
  // With CAP_SYS_ADMIN both are allowed outright.
  assert.equal(seccompVerdict(admin, "clone", [CLONE_NEWUSER]).action, "SCMP_ACT_ALLOW");
  assert.equal(seccompVerdict(admin, "clone3").action, "SCMP_ACT_ALLOW");
  // s390x passes the flags in the second argument.
  const s390 = defaultSeccompProfile(specWith([]), { arch: "s390x", kernel: [6, 1] });
  const rule = s390.syscalls!.find((r) => r.names[0] === "clone")!;
  assert.equal(rule.args![0]!.index, 1);
});

Deno.test("personality only to the safe personas", () => {
  for (const v of [0x0, 0x8, 0x20000, 0x20008, 0xffffffff]) {
    assert.equal(seccompVerdict(dflt, "personality", [v]).action, "SCMP_ACT_ALLOW", v.toString(16));
  }
  // ADDR_NO_RANDOMIZE would turn ASLR off.
  assert.equal(seccompVerdict(dflt, "personality", [0x0040000]).action, "SCMP_ACT_ERRNO");
});

Deno.test("architecture extras", () => {
  assert.equal(seccompVerdict(dflt, "arch_prctl").action, "SCMP_ACT_ALLOW");
  assert.equal(seccompVerdict(dflt, "set_tls").action, "SCMP_ACT_ERRNO");
  const arm = defaultSeccompProfile(specWith([]), { arch: "arm64", kernel: [6, 1] });
  assert.equal(seccompVerdict(arm, "set_tls").action, "SCMP_ACT_ALLOW");
  assert.equal(seccompVerdict(arm, "arch_prctl").action, "SCMP_ACT_ERRNO");
});

Deno.test("rules come in containerd's order and with its shape", () => {
  const kinds = dflt.syscalls!.map((r) => r.names.length > 1 ? `${r.names.length}` : r.names[0]);
  assert.deepEqual(kinds, [
    "349",
    "personality",
    "personality",
    "personality",
    "personality",
    "personality",
    "ptrace",
    "2", // arch_prctl, modify_ldt
    "chroot", // CAP_SYS_CHROOT, in the bounding set's order
    "clone",
    "clone3",
  ]);
  // Empty argument lists are left out, as the spec's Go types write them.
  assert.ok(!("args" in dflt.syscalls![0]!));
});

Deno.test("host helpers", () => {
  assert.deepEqual(parseKernelRelease("6.18.0-1-amd64"), [6, 18]);
  assert.deepEqual(parseKernelRelease("3.12-1-amd64"), [3, 12]);
  assert.throws(() => parseKernelRelease("x"), /Cannot parse kernel release/);
  assert.equal(hostGoArch(), Deno.build.arch === "x86_64" ? "amd64" : "arm64");
  // Defaults come from this machine.
  assert.deepEqual(defaultSeccompProfile(specWith([])).architectures!.length > 0, true);
});
