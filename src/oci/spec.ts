/**
 * The default OCI runtime spec of a berth container, with containerd 1.6's
 * defaults (`oci.populateDefaultUnixSpec` plus `oci.WithDefaultUnixDevices`,
 * which is what `ctr run` starts from), and the way options compose on it.
 *
 * A spec is built by taking {@link defaultSpec} and applying options from
 * ./spec_opts.ts in order; each option edits the spec in place, and later
 * options see what earlier ones did (the seccomp profile, for one, depends
 * on the capabilities, so it goes last):
 *
 * @example
 * ```ts
 * import { generateSpec } from "./spec.ts";
 * import * as o from "./spec_opts.ts";
 *
 * const spec = await generateSpec(
 *   { namespace: "default", id: "web", hostname: "web" },
 *   o.withImageConfig(imageConfig, "/run/berth/tmpmount/web"), // args, env, cwd, user
 *   o.withEnv(["DEBUG=1"]),
 *   o.withMounts([o.parseBindMount("/srv/data:/data:ro")]),
 *   o.withMemoryLimit(o.parseMemorySize("512m")),
 *   o.withCpus(1.5),
 *   o.withDefaultSeccomp(), // after every capability change
 * );
 * await Deno.writeTextFile(`${bundle}/config.json`, JSON.stringify(spec));
 * ```
 *
 * @module
 */

import { DEFAULT_CAPABILITIES } from "./caps.ts";
import type { LinuxDeviceCgroup, Mount, Spec } from "./runtime_types.ts";
import { OCI_RUNTIME_VERSION } from "./runtime_types.ts";

export type { Spec } from "./runtime_types.ts";

/** The PATH a container gets when its image sets no environment. */
export const DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The rootfs path of a default spec: `rootfs` inside the bundle. */
export const DEFAULT_ROOTFS_PATH = "rootfs";

/** containerd's default mounts, in order (`oci.defaultMounts` of 1.6, /run included). */
export const DEFAULT_MOUNTS: readonly Readonly<Mount>[] = [
  { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
  {
    destination: "/dev",
    type: "tmpfs",
    source: "tmpfs",
    options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
  },
  {
    destination: "/dev/pts",
    type: "devpts",
    source: "devpts",
    // gid=5 is the "tty" group of Debian-like images, ptmxmode lets anyone open ptmx.
    options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
  },
  {
    destination: "/dev/shm",
    type: "tmpfs",
    source: "shm",
    options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
  },
  {
    destination: "/dev/mqueue",
    type: "mqueue",
    source: "mqueue",
    options: ["nosuid", "noexec", "nodev"],
  },
  {
    destination: "/sys",
    type: "sysfs",
    source: "sysfs",
    options: ["nosuid", "noexec", "nodev", "ro"],
  },
  {
    destination: "/run",
    type: "tmpfs",
    source: "tmpfs",
    options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
  },
];

/** Paths of /proc and /sys that leak host information; runc bind-mounts /dev/null (or an empty tmpfs) on them. */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/sys/firmware",
  "/proc/scsi",
];

/** Paths of /proc that stay visible but are remounted read-only. */
export const DEFAULT_READONLY_PATHS: readonly string[] = [
  "/proc/bus",
  "/proc/fs",
  "/proc/irq",
  "/proc/sys",
  "/proc/sysrq-trigger",
];

/** The namespaces a container gets of its own. */
export const DEFAULT_NAMESPACES = ["pid", "ipc", "uts", "mount", "network"] as const;

/**
 * The devices cgroup rules: deny everything, then allow the character
 * devices every program expects (containerd's `WithDefaultUnixDevices`).
 */
export const DEFAULT_DEVICE_RULES: readonly Readonly<LinuxDeviceCgroup>[] = [
  { allow: false, access: "rwm" },
  { allow: true, type: "c", major: 1, minor: 3, access: "rwm" }, // /dev/null
  { allow: true, type: "c", major: 1, minor: 8, access: "rwm" }, // /dev/random
  { allow: true, type: "c", major: 1, minor: 7, access: "rwm" }, // /dev/full
  { allow: true, type: "c", major: 5, minor: 0, access: "rwm" }, // /dev/tty
  { allow: true, type: "c", major: 1, minor: 5, access: "rwm" }, // /dev/zero
  { allow: true, type: "c", major: 1, minor: 9, access: "rwm" }, // /dev/urandom
  { allow: true, type: "c", major: 5, minor: 1, access: "rwm" }, // /dev/console
  { allow: true, type: "c", major: 136, access: "rwm" }, // /dev/pts/* (any minor)
  { allow: true, type: "c", major: 5, minor: 2, access: "rwm" }, // /dev/ptmx
];

/** What {@link defaultSpec} needs to know about the container. */
export interface DefaultSpecOptions {
  /** containerd namespace; the cgroup is `/<namespace>/<id>` (cgroupfs driver). */
  namespace: string;
  /** Container id. */
  id: string;
  /** Root filesystem path; defaults to "rootfs" in the bundle. */
  rootfs?: string;
  /** Hostname inside the container's UTS namespace; unset keeps the runtime's default. */
  hostname?: string;
  /**
   * Leave out the default device allow rules (only deny-all stays), giving
   * exactly containerd's bare `populateDefaultUnixSpec` (what `ctr oci spec`
   * prints). Default false.
   */
  bareDevices?: boolean;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/**
 * A fresh default spec for container `id` in `namespace`: root with uid/gid
 * 0 and cwd `/`, containerd's 14 default capabilities in the bounding,
 * effective and permitted sets, RLIMIT_NOFILE 1024/1024, no new privileges,
 * the default mounts, masked and read-only paths, pid/ipc/uts/mount/network
 * namespaces, the default device rules and cgroup `/<namespace>/<id>`.
 * No args, env or seccomp yet: options add them (see the module example).
 */
export function defaultSpec(opts: DefaultSpecOptions): Spec {
  if (!opts.namespace) throw new Error("Cannot build a spec: namespace is required");
  const caps = [...DEFAULT_CAPABILITIES];
  const devices = opts.bareDevices ? DEFAULT_DEVICE_RULES.slice(0, 1) : DEFAULT_DEVICE_RULES;
  const spec: Spec = {
    ociVersion: OCI_RUNTIME_VERSION,
    process: {
      user: { uid: 0, gid: 0 },
      cwd: "/",
      capabilities: { bounding: caps, effective: [...caps], permitted: [...caps] },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: opts.rootfs ?? DEFAULT_ROOTFS_PATH },
    mounts: clone(DEFAULT_MOUNTS as Mount[]),
    linux: {
      resources: { devices: clone(devices as LinuxDeviceCgroup[]) },
      cgroupsPath: cgroupsPathFor(opts.namespace, opts.id),
      namespaces: DEFAULT_NAMESPACES.map((type) => ({ type })),
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
    },
  };
  if (opts.hostname !== undefined) spec.hostname = opts.hostname;
  return spec;
}

/** `/<namespace>/<id>`, the cgroupfs-driver path containerd gives a container. */
export function cgroupsPathFor(namespace: string, id: string): string {
  return ("/" + [namespace, id].filter((p) => p !== "").join("/")).replace(/\/+/g, "/");
}

/** One change to a spec; may read files (user lookup) and so may be async. */
export type SpecOpt = (spec: Spec) => void | Promise<void>;

/** Applies options to `spec` in order, in place, and returns it. */
export async function applySpecOpts(spec: Spec, ...opts: SpecOpt[]): Promise<Spec> {
  for (const o of opts) await o(spec);
  return spec;
}

/** {@link defaultSpec} followed by `opts` in order. */
export function generateSpec(base: DefaultSpecOptions, ...opts: SpecOpt[]): Promise<Spec> {
  return applySpecOpts(defaultSpec(base), ...opts);
}
