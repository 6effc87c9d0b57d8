/**
 * Types for the part of the OCI runtime spec (config.json, runtime-spec 1.0.2)
 * that berth writes and reads. Field names are the JSON names of the spec
 * (https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config.md and
 * config-linux.md); optional fields are left out of the JSON when unset,
 * as the spec's own Go types do with `omitempty`.
 *
 * @module
 */

/** The OCI runtime spec version berth writes, the one containerd 1.6 writes. */
export const OCI_RUNTIME_VERSION = "1.0.2-dev";

/** config.json: the whole runtime spec of one container. */
export interface Spec {
  ociVersion: string;
  process?: Process;
  root?: Root;
  hostname?: string;
  domainname?: string;
  mounts?: Mount[];
  hooks?: Hooks;
  annotations?: Record<string, string>;
  linux?: Linux;
}

/** The container's first process (or an exec'd one, which uses the same shape). */
export interface Process {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: User;
  args?: string[];
  env?: string[];
  cwd: string;
  capabilities?: LinuxCapabilities;
  rlimits?: PosixRlimit[];
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  oomScoreAdj?: number;
  selinuxLabel?: string;
}

/** Numeric identity of a process; `additionalGids` are the supplementary groups. */
export interface User {
  uid: number;
  gid: number;
  umask?: number;
  additionalGids?: number[];
  username?: string;
}

/** The five capability sets of a process, as `CAP_*` names. */
export interface LinuxCapabilities {
  bounding?: string[];
  effective?: string[];
  inheritable?: string[];
  permitted?: string[];
  ambient?: string[];
}

/** One resource limit, `type` as `RLIMIT_*`. */
export interface PosixRlimit {
  type: string;
  hard: number;
  soft: number;
}

/** The root filesystem; a relative `path` is relative to the bundle. */
export interface Root {
  path: string;
  readonly?: boolean;
}

/** One mount, applied in order after the root filesystem. */
export interface Mount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

/** One hook (berth writes none by default; kept for specs read back). */
export interface Hook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

/** Lifecycle hooks. */
export interface Hooks {
  prestart?: Hook[];
  createRuntime?: Hook[];
  createContainer?: Hook[];
  startContainer?: Hook[];
  poststart?: Hook[];
  poststop?: Hook[];
}

/** The namespace types of runtime-spec config-linux.md. */
export type LinuxNamespaceType =
  | "pid"
  | "network"
  | "mount"
  | "ipc"
  | "uts"
  | "user"
  | "cgroup";

/** A namespace to create (no path) or to join (path to a /proc/PID/ns file or a pinned one). */
export interface LinuxNamespace {
  type: LinuxNamespaceType;
  path?: string;
}

/** One user-namespace id mapping range. */
export interface LinuxIdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** A device node to create in the container's /dev. */
export interface LinuxDevice {
  path: string;
  /** "c" (char), "b" (block), "u" (unbuffered char) or "p" (fifo). */
  type: string;
  major: number;
  minor: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

/** One rule of the devices cgroup, applied in order. */
export interface LinuxDeviceCgroup {
  allow: boolean;
  /** "a", "c" or "b"; absent means all. */
  type?: string;
  /** Absent means all majors (a wildcard). */
  major?: number;
  minor?: number;
  access?: string;
}

/** Memory cgroup limits in bytes. */
export interface LinuxMemory {
  limit?: number;
  reservation?: number;
  swap?: number;
  kernel?: number;
  kernelTCP?: number;
  swappiness?: number;
  disableOOMKiller?: boolean;
}

/** CPU cgroup settings. */
export interface LinuxCpu {
  shares?: number;
  quota?: number;
  period?: number;
  realtimeRuntime?: number;
  realtimePeriod?: number;
  cpus?: string;
  mems?: string;
}

/** Pids cgroup limit. */
export interface LinuxPids {
  limit: number;
}

/** Cgroup resources of a container. */
export interface LinuxResources {
  devices?: LinuxDeviceCgroup[];
  memory?: LinuxMemory;
  cpu?: LinuxCpu;
  pids?: LinuxPids;
  unified?: Record<string, string>;
}

/** A seccomp action name as libseccomp spells it. */
export type SeccompAction =
  | "SCMP_ACT_KILL"
  | "SCMP_ACT_KILL_PROCESS"
  | "SCMP_ACT_KILL_THREAD"
  | "SCMP_ACT_TRAP"
  | "SCMP_ACT_ERRNO"
  | "SCMP_ACT_TRACE"
  | "SCMP_ACT_ALLOW"
  | "SCMP_ACT_LOG"
  | "SCMP_ACT_NOTIFY";

/** A comparison operator for a seccomp argument filter. */
export type SeccompOperator =
  | "SCMP_CMP_NE"
  | "SCMP_CMP_LT"
  | "SCMP_CMP_LE"
  | "SCMP_CMP_EQ"
  | "SCMP_CMP_GE"
  | "SCMP_CMP_GT"
  | "SCMP_CMP_MASKED_EQ";

/** One condition on a syscall argument. */
export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: SeccompOperator;
}

/** One rule: the action for the named syscalls (when all `args` conditions hold). */
export interface SeccompSyscall {
  names: string[];
  action: SeccompAction;
  errnoRet?: number;
  args?: SeccompArg[];
}

/** A seccomp filter as given to runc. */
export interface LinuxSeccomp {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number;
  /** `SCMP_ARCH_*` names. */
  architectures?: string[];
  flags?: string[];
  syscalls?: SeccompSyscall[];
}

/** The Linux section of the spec. */
export interface Linux {
  uidMappings?: LinuxIdMapping[];
  gidMappings?: LinuxIdMapping[];
  sysctl?: Record<string, string>;
  resources?: LinuxResources;
  cgroupsPath?: string;
  namespaces?: LinuxNamespace[];
  devices?: LinuxDevice[];
  seccomp?: LinuxSeccomp;
  rootfsPropagation?: string;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  mountLabel?: string;
}
