/**
 * berth's default seccomp profile, with the semantics of containerd 1.6's
 * default profile (the one `ctr run --seccomp` and the CRI's
 * `runtime/default` apply, itself Docker's): everything not listed fails
 * with EPERM; a base set is allowed; more syscalls are allowed when the
 * container's bounding set holds the capability that makes them useful
 * (mount needs CAP_SYS_ADMIN anyway, so allowing it without that capability
 * only widens the kernel surface); without CAP_SYS_ADMIN, clone may not
 * create namespaces and clone3 (whose flags live in memory a filter cannot
 * read) answers ENOSYS so libc falls back to clone.
 *
 * The data is kept as plain tables below; {@link defaultSeccompProfile}
 * turns them into rules in the order containerd emits them, so a profile
 * diff against containerd's reads line by line.
 *
 * @module
 */

import type { LinuxSeccomp, SeccompSyscall, Spec } from "./runtime_types.ts";

/** Syscalls every container may make, whatever its capabilities. */
export const BASE_SYSCALLS: readonly string[] = `
  _llseek _newselect accept accept4 access adjtimex alarm bind brk capget capset chdir chmod
  chown chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
  clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
  copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
  epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
  exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
  fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
  flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
  ftruncate64 futex futex_time64 futex_waitv futimesat get_robust_list get_thread_area getcpu
  getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups
  getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom
  getresgid getresgid32 getresuid getresuid32 getrlimit getrusage getsid getsockname getsockopt
  gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1
  inotify_rm_watch io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64
  io_setup io_submit io_uring_enter io_uring_register io_uring_setup ioctl ioprio_get
  ioprio_set ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
  lchown32 lgetxattr link linkat listen listxattr llistxattr lremovexattr lseek lsetxattr lstat
  lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
  mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
  mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget
  msgrcv msgsnd msync munlock munlockall munmap nanosleep newfstatat open openat openat2
  pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
  ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64
  pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom
  recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2
  restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
  rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
  sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
  sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity
  sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl semget
  semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto
  set_robust_list set_thread_area set_tid_address setfsgid setfsgid32 setfsuid setfsuid32
  setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid setregid32
  setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit setsid setsockopt
  setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
  sigprocmask sigreturn socket socketcall socketpair splice stat stat64 statfs statfs64
  statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
  timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
  timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
  times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
  utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
`.trim().split(/\s+/);

/**
 * personality(2) personas a container may switch to: PER_LINUX (0),
 * PER_LINUX32 (0x8), UNAME26 (0x20000), PER_LINUX32|UNAME26 (0x20008), and
 * 0xffffffff, which only queries the current persona. Other personas (e.g.
 * ADDR_NO_RANDOMIZE) would weaken ASLR.
 */
export const PERSONALITY_VALUES: readonly number[] = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

/** Go-style architecture name (what containerd switches on) of this machine. */
export type GoArch = "amd64" | "arm64" | "386" | "arm" | "s390x" | "ppc64le" | "riscv64";

/** libseccomp architectures the filter covers per machine: the native ABI and its compat ABIs. */
export const SECCOMP_ARCHES: Readonly<Record<GoArch, readonly string[]>> = {
  amd64: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  arm64: ["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
  "386": [],
  arm: [],
  s390x: ["SCMP_ARCH_S390", "SCMP_ARCH_S390X"],
  ppc64le: [],
  riscv64: ["SCMP_ARCH_RISCV64"],
};

/** Architecture-specific syscalls allowed in addition to the base set. */
export const ARCH_SYSCALLS: Readonly<Record<GoArch, readonly string[]>> = {
  amd64: ["arch_prctl", "modify_ldt"],
  "386": ["modify_ldt"],
  arm64: [
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
  ],
  arm: [
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
  ],
  s390x: ["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
  ppc64le: ["sync_file_range2", "swapcontext"],
  riscv64: ["riscv_flush_icache"],
};

/**
 * Syscalls allowed only when the bounding set holds the capability. Looked
 * up for each capability of the bounding set, in the set's order.
 */
export const CAPABILITY_SYSCALLS: Readonly<Record<string, readonly string[]>> = {
  CAP_DAC_READ_SEARCH: ["open_by_handle_at"],
  CAP_SYS_ADMIN: [
    "bpf",
    "clone",
    "clone3",
    "fanotify_init",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "open_tree",
    "perf_event_open",
    "quotactl",
    "quotactl_fd",
    "setdomainname",
    "sethostname",
    "setns",
    "syslog",
    "umount",
    "umount2",
    "unshare",
  ],
  CAP_SYS_BOOT: ["reboot"],
  CAP_SYS_CHROOT: ["chroot"],
  CAP_SYS_MODULE: ["delete_module", "init_module", "finit_module"],
  CAP_SYS_PACCT: ["acct"],
  CAP_SYS_PTRACE: [
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
  ],
  CAP_SYS_RAWIO: ["iopl", "ioperm"],
  CAP_SYS_TIME: ["settimeofday", "stime", "clock_settime", "clock_settime64"],
  CAP_SYS_TTY_CONFIG: ["vhangup"],
  CAP_SYS_NICE: ["get_mempolicy", "mbind", "set_mempolicy"],
  CAP_SYSLOG: ["syslog"],
  CAP_BPF: ["bpf"],
  CAP_PERFMON: ["perf_event_open"],
};

/**
 * The namespace flags of clone(2): CLONE_NEWNS 0x20000, CLONE_NEWCGROUP
 * 0x2000000, CLONE_NEWUTS 0x4000000, CLONE_NEWIPC 0x8000000, CLONE_NEWUSER
 * 0x10000000, CLONE_NEWPID 0x20000000, CLONE_NEWNET 0x40000000.
 */
export const CLONE_NAMESPACE_FLAGS = 0x20000 | 0x2000000 | 0x4000000 | 0x8000000 | 0x10000000 |
  0x20000000 | 0x40000000;

/** ENOSYS on Linux (all architectures berth runs on). */
export const ENOSYS = 38;

/** Options of {@link defaultSeccompProfile}; each defaults to this machine. */
export interface SeccompProfileOptions {
  /** Machine architecture; defaults to this one. */
  arch?: GoArch;
  /** Kernel version as [major, minor]; defaults to the running kernel. */
  kernel?: readonly [number, number];
}

/** The Go-style name of this machine's architecture. */
export function hostGoArch(): GoArch {
  switch (Deno.build.arch) {
    case "x86_64":
      return "amd64";
    case "aarch64":
      return "arm64";
    default:
      throw new Error(`Unsupported architecture for seccomp: ${Deno.build.arch}`);
  }
}

/** Major and minor of a kernel release string such as "6.18.0-1-amd64". */
export function parseKernelRelease(release: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) throw new Error(`Cannot parse kernel release: ${JSON.stringify(release)}`);
  return [Number(m[1]), Number(m[2])];
}

function allow(names: readonly string[]): SeccompSyscall {
  return { names: [...names], action: "SCMP_ACT_ALLOW" };
}

/**
 * The default seccomp profile for a spec, computed from the bounding set of
 * `spec.process.capabilities` (so apply it after every option that changes
 * capabilities, as containerd requires of `WithDefaultProfile`).
 *
 * @example
 * ```ts
 * const spec = defaultSpec({ namespace: "default", id: "c1" });
 * spec.linux!.seccomp = defaultSeccompProfile(spec);
 * ```
 */
export function defaultSeccompProfile(
  spec: Pick<Spec, "process">,
  opts: SeccompProfileOptions = {},
): LinuxSeccomp {
  const arch = opts.arch ?? hostGoArch();
  const kernel = opts.kernel ?? parseKernelRelease(Deno.osRelease());
  const rules: SeccompSyscall[] = [allow(BASE_SYSCALLS)];
  for (const value of PERSONALITY_VALUES) {
    rules.push({
      names: ["personality"],
      action: "SCMP_ACT_ALLOW",
      args: [{ index: 0, value, op: "SCMP_CMP_EQ" }],
    });
  }
  // Since Linux 4.8 seccomp filters run again after a ptrace stop, so ptrace
  // can no longer be used to slip past the filter; it is then safe for all.
  if (kernel[0] > 4 || (kernel[0] === 4 && kernel[1] >= 8)) rules.push(allow(["ptrace"]));
  const archExtra = ARCH_SYSCALLS[arch];
  if (archExtra.length > 0) rules.push(allow(archExtra));

  let admin = false;
  for (const cap of spec.process?.capabilities?.bounding ?? []) {
    const names = CAPABILITY_SYSCALLS[cap];
    if (!names) continue;
    if (cap === "CAP_SYS_ADMIN") admin = true;
    rules.push(allow(names));
  }
  if (!admin) {
    // On s390 the flags are clone's second argument.
    const index = arch === "s390x" ? 1 : 0;
    rules.push({
      names: ["clone"],
      action: "SCMP_ACT_ALLOW",
      // valueTwo (the value the masked argument must equal) is 0: no namespace flag set.
      args: [{ index, value: CLONE_NAMESPACE_FLAGS, op: "SCMP_CMP_MASKED_EQ" }],
    });
    rules.push({ names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS });
  }
  return {
    defaultAction: "SCMP_ACT_ERRNO",
    architectures: [...SECCOMP_ARCHES[arch]],
    syscalls: rules,
  };
}

/**
 * Decides what a profile does with a syscall made with the given first
 * arguments (a small evaluator used to state the profile's behaviour in
 * tests and to explain a denial): the first matching rule wins, as in
 * libseccomp where allow rules for the same syscall are OR-ed together.
 */
export function seccompVerdict(
  profile: LinuxSeccomp,
  name: string,
  args: readonly number[] = [],
): { action: string; errno?: number } {
  for (const rule of profile.syscalls ?? []) {
    if (!rule.names.includes(name)) continue;
    const conds = rule.args ?? [];
    const ok = conds.every((c) => {
      const a = BigInt(args[c.index] ?? 0);
      const v = BigInt(c.value);
      switch (c.op) {
        case "SCMP_CMP_EQ":
          return a === v;
        case "SCMP_CMP_NE":
          return a !== v;
        case "SCMP_CMP_LT":
          return a < v;
        case "SCMP_CMP_LE":
          return a <= v;
        case "SCMP_CMP_GT":
          return a > v;
        case "SCMP_CMP_GE":
          return a >= v;
        case "SCMP_CMP_MASKED_EQ":
          return (a & v) === BigInt(c.valueTwo ?? 0);
      }
    });
    if (!ok) continue;
    return rule.errnoRet === undefined
      ? { action: rule.action }
      : { action: rule.action, errno: rule.errnoRet };
  }
  const errno = profile.defaultAction === "SCMP_ACT_ERRNO"
    ? (profile.defaultErrnoRet ?? 1)
    : undefined;
  return errno === undefined
    ? { action: profile.defaultAction }
    : { action: profile.defaultAction, errno };
}
