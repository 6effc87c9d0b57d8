/**
 * Options that change a runtime spec, one concern each, composable in order
 * (see the example in ./spec.ts). Each follows the containerd 1.6 option of
 * the same purpose (`oci.With*`, `ctr run` flags); where berth differs, the
 * JSDoc says so and why.
 *
 * @module
 */

import { isAbsolute, join, normalize, resolve } from "../util/path.ts";
import { invalidArgument } from "../core/errdefs.ts";
import { currentCapabilities, normalizeCapability } from "./caps.ts";
import type {
  LinuxDevice,
  LinuxIdMapping,
  LinuxNamespace,
  LinuxNamespaceType,
  Mount,
  Spec,
} from "./runtime_types.ts";
import { defaultSeccompProfile, type SeccompProfileOptions } from "./seccomp.ts";
import { cgroupsPathFor, DEFAULT_PATH_ENV, type SpecOpt } from "./spec.ts";
import { resolveGroups, resolveUser, supplementaryGroups, withPrimaryGid } from "./user.ts";

export type { SpecOpt } from "./spec.ts";

/** The fields of an OCI/Docker image config (`config` of the config blob) a spec uses. */
export interface ImageConfigLike {
  User?: string;
  Env?: string[] | null;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
}

function proc(spec: Spec) {
  spec.process ??= { user: { uid: 0, gid: 0 }, cwd: "/" };
  return spec.process;
}

function linux(spec: Spec) {
  spec.linux ??= {};
  return spec.linux;
}

function resources(spec: Spec) {
  const l = linux(spec);
  l.resources ??= {};
  return l.resources;
}

function caps(spec: Spec) {
  const p = proc(spec);
  p.capabilities ??= {};
  return p.capabilities;
}

/** One option made of several, applied in order. */
export function compose(...opts: SpecOpt[]): SpecOpt {
  return async (spec) => {
    for (const o of opts) await o(spec);
  };
}

// ---- process ----

/**
 * `overrides` merged into `env`: `K=V` replaces an entry with the same key
 * or is appended; a bare `K` removes `K` (containerd's replaceOrAppendEnvValues).
 */
export function mergeEnv(env: readonly string[], overrides: readonly string[]): string[] {
  const out: (string | undefined)[] = [...env];
  const index = new Map<string, number>();
  out.forEach((e, i) => index.set(e!.split("=", 1)[0]!, i));
  for (const o of overrides) {
    const eq = o.indexOf("=");
    const key = eq < 0 ? o : o.slice(0, eq);
    const i = index.get(key);
    if (eq < 0) {
      if (i !== undefined) out[i] = undefined;
      continue;
    }
    if (i !== undefined) out[i] = o;
    else {
      index.set(key, out.length);
      out.push(o);
    }
  }
  return out.filter((e): e is string => e !== undefined && e !== "");
}

/** Sets or replaces environment variables (`K=V`; a bare `K` unsets K). */
export function withEnv(env: readonly string[]): SpecOpt {
  return (spec) => {
    for (const e of env) {
      if (e.startsWith("=")) {
        throw invalidArgument(`Invalid environment variable ${JSON.stringify(e)}: empty name`);
      }
    }
    if (env.length === 0) return;
    const p = proc(spec);
    p.env = mergeEnv(p.env ?? [], env);
  };
}

/** Sets PATH to the default unless already set. */
export const withDefaultPathEnv: SpecOpt = (spec) => {
  const p = proc(spec);
  const has = (p.env ?? []).some((e) => e.startsWith("PATH="));
  if (!has) p.env = mergeEnv(p.env ?? [], [DEFAULT_PATH_ENV]);
};

/** Replaces the process arguments (argv, argv[0] being the program). */
export function withArgs(args: readonly string[]): SpecOpt {
  return (spec) => {
    proc(spec).args = [...args];
  };
}

/** Sets the working directory of the process; it must be absolute. */
export function withCwd(cwd: string): SpecOpt {
  return (spec) => {
    if (!cwd.startsWith("/")) {
      throw invalidArgument(`Invalid working directory ${JSON.stringify(cwd)}: must be absolute`);
    }
    proc(spec).cwd = cwd;
  };
}

/** Alias of {@link withCwd}, containerd's name. */
export const withProcessCwd = withCwd;

/**
 * Applies an image config the way containerd's `WithImageConfig` does:
 * args = Entrypoint + (`args` or Cmd); the image's Env (or the default PATH
 * when it has none) under the env already in the spec; cwd = WorkingDir or
 * `/`; the user from `User` (or root) resolved against `rootfs`, with its
 * supplementary groups from the rootfs's /etc/group.
 *
 * `rootfs` is the host path where the container's root filesystem can be
 * read now (a mounted snapshot); it defaults to `spec.root.path` when that
 * is absolute. It is only read for user and group lookups.
 */
export function withImageConfig(
  config: ImageConfigLike,
  rootfs?: string,
  opts: { args?: readonly string[] } = {},
): SpecOpt {
  return async (spec) => {
    const p = proc(spec);
    const imageEnv = config.Env && config.Env.length > 0 ? config.Env : [DEFAULT_PATH_ENV];
    p.env = mergeEnv(imageEnv, p.env ?? []);
    const cmd = opts.args && opts.args.length > 0 ? opts.args : (config.Cmd ?? []);
    p.args = [...(config.Entrypoint ?? []), ...cmd];
    p.cwd = config.WorkingDir || "/";
    const root = rootfsFor(spec, rootfs);
    if (config.User) {
      const u = await resolveUser(root, config.User);
      p.user = { ...p.user, uid: u.uid, gid: u.gid, additionalGids: u.additionalGids };
    } else {
      // No USER: the ids stay as they are (root in a default spec); the
      // supplementary groups are root's, as containerd looks them up.
      const extra = await supplementaryGroups(root, "root");
      p.user = { ...p.user, additionalGids: withPrimaryGid(p.user.gid, extra) };
    }
  };
}

function rootfsFor(spec: Spec, rootfs: string | undefined): string | undefined {
  if (rootfs !== undefined) return rootfs;
  const path = spec.root?.path;
  return path !== undefined && isAbsolute(path) ? path : undefined;
}

/**
 * Runs the process as `user` (`name`, `uid`, `uid:gid`, `name:group`, ...)
 * resolved against the rootfs's /etc/passwd and /etc/group, with the user's
 * supplementary groups from /etc/group. containerd's plain `WithUser` keeps
 * only the primary group; berth adds the supplementary ones as its image
 * path and Docker's `-u` do, so `-u app` equals an image's `USER app`.
 */
export function withUser(user: string, rootfs?: string): SpecOpt {
  return async (spec) => {
    const u = await resolveUser(rootfsFor(spec, rootfs), user);
    const p = proc(spec);
    p.user = { ...p.user, uid: u.uid, gid: u.gid, additionalGids: u.additionalGids };
  };
}

/** Sets uid and gid directly (no lookups); the gid is the only additional group. */
export function withUserIds(uid: number, gid: number): SpecOpt {
  return (spec) => {
    for (const [what, v] of [["uid", uid], ["gid", gid]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
        throw invalidArgument(`Invalid ${what} ${v}: want an integer from 0 to 2147483647`);
      }
    }
    const p = proc(spec);
    p.user = { ...p.user, uid, gid, additionalGids: [gid] };
  };
}

/** Adds supplementary groups by name or number (names looked up in the rootfs's /etc/group). */
export function withAdditionalGroups(groups: readonly string[], rootfs?: string): SpecOpt {
  return async (spec) => {
    const gids = await resolveGroups(rootfsFor(spec, rootfs), groups);
    const p = proc(spec);
    const merged = [...(p.user.additionalGids ?? [])];
    for (const g of gids) if (!merged.includes(g)) merged.push(g);
    p.user.additionalGids = withPrimaryGid(p.user.gid, merged);
  };
}

/** Gives the process a terminal, and TERM=xterm (appended, as containerd's `WithTTY`). */
export const withTTY: SpecOpt = (spec) => {
  const p = proc(spec);
  p.terminal = true;
  if (spec.linux) p.env = [...(p.env ?? []), "TERM=xterm"];
};

/** Sets no_new_privs: setuid binaries and file capabilities grant nothing. */
export const withNoNewPrivileges: SpecOpt = (spec) => {
  proc(spec).noNewPrivileges = true;
};

/** Clears no_new_privs (`ctr run --allow-new-privs`). */
export const withNewPrivileges: SpecOpt = (spec) => {
  // Absent means false; written like the spec's Go types (omitempty) write it.
  delete proc(spec).noNewPrivileges;
};

/** Sets the process's oom_score_adj (-1000..1000). */
export function withOomScoreAdj(score: number): SpecOpt {
  return (spec) => {
    if (!Number.isInteger(score) || score < -1000 || score > 1000) {
      throw invalidArgument(`Invalid oom_score_adj ${score}: want an integer from -1000 to 1000`);
    }
    proc(spec).oomScoreAdj = score;
  };
}

/** Sets (replaces) one rlimit, e.g. `withRlimit("RLIMIT_NOFILE", 4096, 4096)`. */
export function withRlimit(type: string, soft: number, hard: number): SpecOpt {
  return (spec) => {
    if (!/^RLIMIT_[A-Z]+$/.test(type)) {
      throw invalidArgument(`Invalid rlimit type ${JSON.stringify(type)}`);
    }
    if (soft > hard) {
      throw invalidArgument(`Invalid rlimit ${type}: soft ${soft} above hard ${hard}`);
    }
    const p = proc(spec);
    const rest = (p.rlimits ?? []).filter((r) => r.type !== type);
    p.rlimits = [...rest, { type, hard, soft }];
  };
}

// ---- capabilities ----

/** Sets the bounding, effective and permitted sets to `list`. */
export function withCapabilities(list: readonly string[]): SpecOpt {
  return (spec) => {
    const names = list.map(normalizeCapability);
    const c = caps(spec);
    c.bounding = [...names];
    c.effective = [...names];
    c.permitted = [...names];
  };
}

/** Adds capabilities to the bounding, effective and permitted sets (`--cap-add`). */
export function withAddedCapabilities(list: readonly string[]): SpecOpt {
  return (spec) => {
    const names = list.map(normalizeCapability);
    const c = caps(spec);
    for (const set of ["bounding", "effective", "permitted"] as const) {
      const cur = c[set] ?? [];
      for (const n of names) if (!cur.includes(n)) cur.push(n);
      c[set] = cur;
    }
  };
}

/** Removes capabilities from the bounding, effective and permitted sets (`--cap-drop`). */
export function withDroppedCapabilities(list: readonly string[]): SpecOpt {
  return (spec) => {
    const names = list.map(normalizeCapability);
    const c = caps(spec);
    for (const set of ["bounding", "effective", "permitted"] as const) {
      c[set] = (c[set] ?? []).filter((n) => !names.includes(n));
    }
  };
}

// ---- root and mounts ----

/** Sets the root filesystem path (absolute, or relative to the bundle). */
export function withRootfsPath(path: string): SpecOpt {
  return (spec) => {
    spec.root = { ...spec.root, path };
  };
}

/** Makes the root filesystem read-only (`--read-only`). */
export const withReadonlyRootfs: SpecOpt = (spec) => {
  spec.root = { path: spec.root?.path ?? "rootfs", readonly: true };
};

/** Appends mounts (after the defaults, so they can cover them). */
export function withMounts(mounts: readonly Mount[]): SpecOpt {
  return (spec) => {
    spec.mounts = [...(spec.mounts ?? []), ...structuredClone(mounts as Mount[])];
  };
}

/** Removes the mounts whose destination is one of `dests`. */
export function withoutMounts(...dests: string[]): SpecOpt {
  return (spec) => {
    spec.mounts = (spec.mounts ?? []).filter((m) => !dests.includes(normalize(m.destination)));
  };
}

/**
 * Parses a `-v SRC:DST[:ro|rw]` bind mount into a mount: recursive bind,
 * private propagation (host mounts under SRC do not leak back and forth),
 * `ro` when asked. A relative SRC is taken from `opts.cwd` (default: the
 * current directory); DST must be absolute.
 */
export function parseBindMount(text: string, opts: { cwd?: string } = {}): Mount {
  const parts = text.split(":");
  if (parts.length < 2 || parts.length > 3 || parts[0] === "" || parts[1] === "") {
    throw invalidArgument(`Invalid bind mount ${JSON.stringify(text)}: want SRC:DST[:ro|rw]`);
  }
  const [src, dst, mode] = parts as [string, string, string | undefined];
  if (mode !== undefined && mode !== "ro" && mode !== "rw") {
    throw invalidArgument(
      `Invalid bind mount ${JSON.stringify(text)}: mode ${JSON.stringify(mode)} is not ro or rw`,
    );
  }
  if (!dst.startsWith("/")) {
    throw invalidArgument(
      `Invalid bind mount ${JSON.stringify(text)}: destination ${
        JSON.stringify(dst)
      } must be absolute`,
    );
  }
  const source = isAbsolute(src) ? normalize(src) : resolve(opts.cwd ?? Deno.cwd(), src);
  const options = ["rbind", "rprivate"];
  if (mode === "ro") options.push("ro");
  return { destination: normalize(dst), type: "bind", source, options };
}

/** Bind-mounts the host's /etc/hosts read-only. */
export const withHostHostsFile: SpecOpt = withMounts([
  { destination: "/etc/hosts", type: "bind", source: "/etc/hosts", options: ["rbind", "ro"] },
]);

/** Bind-mounts the host's /etc/resolv.conf read-only. */
export const withHostResolvconf: SpecOpt = withMounts([
  {
    destination: "/etc/resolv.conf",
    type: "bind",
    source: "/etc/resolv.conf",
    options: ["rbind", "ro"],
  },
]);

// ---- namespaces, hostname, cgroups ----

/** Removes a namespace from the spec, so the container shares the host's. */
export function withHostNamespace(type: LinuxNamespaceType): SpecOpt {
  return (spec) => {
    const l = linux(spec);
    l.namespaces = (l.namespaces ?? []).filter((n) => n.type !== type);
  };
}

/** Adds a namespace, or replaces the one of the same type (a `path` joins an existing one). */
export function withLinuxNamespace(ns: LinuxNamespace): SpecOpt {
  return (spec) => {
    const l = linux(spec);
    const list = l.namespaces ?? [];
    const i = list.findIndex((n) => n.type === ns.type);
    if (i >= 0) list[i] = { ...ns };
    else list.push({ ...ns });
    l.namespaces = list;
  };
}

/**
 * Host networking as `ctr run --net-host` does it: no network namespace of
 * its own, the host's /etc/hosts and /etc/resolv.conf bound read-only, and
 * HOSTNAME set to the host's name (`hostname` defaults to this machine's).
 */
export function withHostNetwork(opts: { hostname?: string } = {}): SpecOpt {
  return compose(
    withHostNamespace("network"),
    withHostHostsFile,
    withHostResolvconf,
    (spec) => withEnv([`HOSTNAME=${opts.hostname ?? Deno.hostname()}`])(spec),
  );
}

/**
 * A network namespace of the container's own with only loopback in it
 * (`--net none`); with `path`, joins that namespace (a pod's).
 */
export function withNetworkNamespace(path?: string): SpecOpt {
  return withLinuxNamespace(path === undefined ? { type: "network" } : { type: "network", path });
}

/**
 * Sets the hostname (needs a UTS namespace of its own, which the default
 * spec has). `ctr run` sets none, so runc leaves the host's name in the new
 * namespace; Docker-like runs use the container id.
 */
export function withHostname(name: string): SpecOpt {
  return (spec) => {
    // The kernel takes up to 64 bytes; letters, digits, ".", "_" and "-" cover
    // DNS names and every container id berth accepts.
    if (name.length > 64 || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
      throw invalidArgument(`Invalid hostname ${JSON.stringify(name)}`);
    }
    spec.hostname = name;
  };
}

/** Sets the cgroups path (e.g. `/<namespace>/<id>`; "" lets the runtime choose). */
export function withCgroupsPath(path: string): SpecOpt {
  return (spec) => {
    linux(spec).cgroupsPath = path;
  };
}

/** Sets the cgroups path to `/<namespace>/<id>`. */
export function withNamespacedCgroup(namespace: string, id: string): SpecOpt {
  return withCgroupsPath(cgroupsPathFor(namespace, id));
}

/** Adds user namespace mappings (and the user namespace when missing). */
export function withUserNamespace(
  uidMappings: readonly LinuxIdMapping[],
  gidMappings: readonly LinuxIdMapping[],
): SpecOpt {
  return (spec) => {
    const l = linux(spec);
    if (!(l.namespaces ?? []).some((n) => n.type === "user")) {
      l.namespaces = [...(l.namespaces ?? []), { type: "user" }];
    }
    l.uidMappings = [...(l.uidMappings ?? []), ...uidMappings];
    l.gidMappings = [...(l.gidMappings ?? []), ...gidMappings];
  };
}

/** Adds or replaces annotations. */
export function withAnnotations(annotations: Record<string, string>): SpecOpt {
  return (spec) => {
    spec.annotations = { ...(spec.annotations ?? {}), ...annotations };
  };
}

// ---- resources ----

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

/**
 * Bytes in a human size: `1048576`, `512k`, `512m`, `1g`, `1.5G`, `2gb`,
 * `2GiB` (binary units, as Docker's `--memory`).
 */
export function parseMemorySize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) {
    throw invalidArgument(
      `Invalid size ${JSON.stringify(text)}: want a number with an optional unit b, k, m, g, t`,
    );
  }
  const bytes = Math.floor(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(bytes)) {
    throw invalidArgument(`Invalid size ${JSON.stringify(text)}: too large`);
  }
  return bytes;
}

/** Limits memory to `bytes` (the memory cgroup's limit_in_bytes / memory.max). */
export function withMemoryLimit(bytes: number): SpecOpt {
  return (spec) => {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) {
      throw invalidArgument(`Invalid memory limit ${bytes}: want a positive number of bytes`);
    }
    const r = resources(spec);
    r.memory = { ...r.memory, limit: bytes };
  };
}

/** Sets memory+swap to `bytes` (-1 for unlimited swap). */
export function withMemorySwap(bytes: number): SpecOpt {
  return (spec) => {
    if (!Number.isSafeInteger(bytes) || (bytes <= 0 && bytes !== -1)) {
      throw invalidArgument(`Invalid memory swap ${bytes}: want a positive number of bytes or -1`);
    }
    const r = resources(spec);
    r.memory = { ...r.memory, swap: bytes };
  };
}

/** The CFS period berth uses for `--cpus`, 100 ms as in containerd and Docker. */
export const CPU_PERIOD = 100000;

/**
 * Limits CPU time to `cpus` CPUs' worth per period: quota = cpus × 100000 µs
 * per 100000 µs period (`ctr run --cpus`).
 */
export function withCpus(cpus: number): SpecOpt {
  return (spec) => {
    const quota = Math.trunc(cpus * CPU_PERIOD);
    // The kernel refuses a CFS quota under 1 ms.
    if (!Number.isFinite(cpus) || quota < 1000) {
      throw invalidArgument(`Invalid cpus ${cpus}: want a number of CPUs of at least 0.01`);
    }
    const r = resources(spec);
    r.cpu = { ...r.cpu, quota, period: CPU_PERIOD };
  };
}

/** Sets CFS quota and period directly (µs). */
export function withCpuCfs(quota: number, period: number): SpecOpt {
  return (spec) => {
    const r = resources(spec);
    r.cpu = { ...r.cpu, quota, period };
  };
}

/** Sets the relative CPU weight (cpu.shares, default 1024). */
export function withCpuShares(shares: number): SpecOpt {
  return (spec) => {
    if (!Number.isInteger(shares) || shares < 2) {
      throw invalidArgument(`Invalid cpu shares ${shares}: want an integer of at least 2`);
    }
    const r = resources(spec);
    r.cpu = { ...r.cpu, shares };
  };
}

/** Limits the number of processes (pids cgroup). */
export function withPidsLimit(limit: number): SpecOpt {
  return (spec) => {
    if (!Number.isInteger(limit)) throw invalidArgument(`Invalid pids limit ${limit}`);
    resources(spec).pids = { limit };
  };
}

// ---- security ----

/** Sets the masked paths (undefined removes them all). */
export function withMaskedPaths(paths: readonly string[] | undefined): SpecOpt {
  return (spec) => {
    const l = linux(spec);
    if (paths === undefined) delete l.maskedPaths;
    else l.maskedPaths = [...paths];
  };
}

/** Sets the read-only paths (undefined removes them all). */
export function withReadonlyPaths(paths: readonly string[] | undefined): SpecOpt {
  return (spec) => {
    const l = linux(spec);
    if (paths === undefined) delete l.readonlyPaths;
    else l.readonlyPaths = [...paths];
  };
}

/** Sets the default seccomp profile for the spec's bounding set; apply after capability options. */
export function withDefaultSeccomp(opts: SeccompProfileOptions = {}): SpecOpt {
  return (spec) => {
    linux(spec).seccomp = defaultSeccompProfile(spec, opts);
  };
}

/** Removes any seccomp profile. */
export const withSeccompUnconfined: SpecOpt = (spec) => {
  delete linux(spec).seccomp;
};

function makeWritable(type: string): SpecOpt {
  return (spec) => {
    for (const m of spec.mounts ?? []) {
      if (m.type === type && m.options) m.options = m.options.map((o) => (o === "ro" ? "rw" : o));
    }
  };
}

/** Turns `ro` into `rw` on sysfs mounts. */
export const withWritableSysfs: SpecOpt = makeWritable("sysfs");

/** Turns `ro` into `rw` on cgroup mounts. */
export const withWritableCgroupfs: SpecOpt = makeWritable("cgroup");

/** Replaces the device cgroup rules with one that allows every device. */
export const withAllDevicesAllowed: SpecOpt = (spec) => {
  resources(spec).devices = [{ allow: true, access: "rwm" }];
};

/** Major number of a Linux dev_t (glibc's gnu_dev_major). */
export function devMajor(rdev: number): number {
  const d = BigInt(rdev);
  return Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
}

/** Minor number of a Linux dev_t (glibc's gnu_dev_minor). */
export function devMinor(rdev: number): number {
  const d = BigInt(rdev);
  return Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
}

// Directories of /dev that hold mounts of their own or runtime state, not devices.
const SKIPPED_DEV_DIRS = new Set(["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"]);

/**
 * The device nodes under `dir` (default /dev), recursively, as containerd's
 * `HostDevices` finds them: block and char devices (not fifos, not
 * symlinks), without /dev/console and the pts, shm, fd and mqueue dirs.
 */
export async function hostDevices(dir = "/dev"): Promise<LinuxDevice[]> {
  const out: LinuxDevice[] = [];
  const entries: Deno.DirEntry[] = [];
  for await (const e of Deno.readDir(dir)) entries.push(e);
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory) {
      if (SKIPPED_DEV_DIRS.has(e.name)) continue;
      out.push(...await hostDevices(path));
      continue;
    }
    if (e.name === "console") continue;
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue;
      throw err;
    }
    const type = info.isBlockDevice ? "b" : info.isCharDevice ? "c" : undefined;
    if (!type || info.rdev === null || info.mode === null) continue;
    out.push({
      path,
      type,
      major: devMajor(info.rdev),
      minor: devMinor(info.rdev),
      fileMode: info.mode & 0o7777,
      uid: info.uid ?? 0,
      gid: info.gid ?? 0,
    });
  }
  return out;
}

/** Adds every host device node to the container's /dev (`WithHostDevices`). */
export function withHostDevices(dir = "/dev"): SpecOpt {
  return async (spec) => {
    const l = linux(spec);
    l.devices = [...(l.devices ?? []), ...await hostDevices(dir)];
  };
}

/** Options of {@link withPrivileged}. */
export interface PrivilegedOptions {
  /** Capabilities to grant; default: this process's effective set (as containerd). */
  capabilities?: readonly string[];
  /** Where to find host devices; default /dev. */
  devDir?: string;
}

/**
 * A privileged container as `ctr run --privileged` makes it (containerd's
 * WithPrivileged + WithAllDevicesAllowed + WithHostDevices): every
 * capability this process holds, no masked or read-only paths, writable
 * sysfs and cgroupfs, no seccomp, all devices allowed and the host's device
 * nodes created. A process cannot grant capabilities it lacks, so the set is
 * the daemon's effective set rather than all the kernel knows.
 */
export function withPrivileged(opts: PrivilegedOptions = {}): SpecOpt {
  return compose(
    withCapabilities(opts.capabilities ?? currentCapabilities()),
    withMaskedPaths(undefined),
    withReadonlyPaths(undefined),
    withWritableSysfs,
    withWritableCgroupfs,
    (spec) => {
      if (spec.process) {
        delete spec.process.selinuxLabel;
        delete spec.process.apparmorProfile;
      }
    },
    withSeccompUnconfined,
    withAllDevicesAllowed,
    withHostDevices(opts.devDir),
  );
}
