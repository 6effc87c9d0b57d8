/**
 * Mounting containerd `Mount` lists onto a directory through mount(2) (via
 * src/sys/libc.ts), and unmounting them again.
 *
 * Overlay mounts of images with many layers pass the one-page limit that
 * mount(2) puts on its data string. Those go through the new mount API
 * (fsopen/fsconfig/fsmount/move_mount), giving each layer on its own with
 * overlayfs's `lowerdir+` key (Linux 6.8); on older kernels they fall back to
 * layer paths relative to their common directory, with the working directory
 * changed only for the duration of the synchronous mount(2) call.
 */
import { check, cstr, errno, libc, SysError } from "../sys/libc.ts";
import type { Logger } from "../util/log.ts";
import {
  compactLowerdirs,
  MS,
  optionsSize,
  parseMountOptions,
  PROPAGATION,
  splitLowerdirs,
} from "./options.ts";

/** A mount as containerd describes it: `mount -t TYPE SOURCE TARGET -o OPTIONS`. */
export interface Mount {
  type: string;
  source: string;
  /** Only for mounts inside a container's rootfs; ignored when mounting onto a target. */
  target?: string;
  options: string[];
}

const PAGE_SIZE = 4096;
// containerd keeps this much headroom below the page size before shortening.
const OPTIONS_HEADROOM = 512;

const EBUSY = 16;
const EINVAL = 22;
const ENOENT = 2;
const ENOSYS = 38;

const AT_FDCWD = -100;
const FSOPEN_CLOEXEC = 0x1;
const FSMOUNT_CLOEXEC = 0x1;
const FSCONFIG_SET_FLAG = 0;
const FSCONFIG_SET_STRING = 1;
const FSCONFIG_SET_FD = 5;
/** strndup_user(value, 256) in fs/fsopen.c: longer strings are EINVAL. */
const FSCONFIG_MAX_STRING = 256;
const O_RDONLY_DIRECTORY = 0o200000 | 0o2000000; // O_DIRECTORY | O_CLOEXEC
const PATH_KEYS = new Set(["lowerdir+", "datadir+", "upperdir", "workdir"]);
const enc = new TextEncoder();
const FSCONFIG_CMD_CREATE = 6;
const MOVE_MOUNT_F_EMPTY_PATH = 0x4;
const MNT_DETACH = 0x2;

/** MS_* flags that have a MOUNT_ATTR_* counterpart for fsmount(2). */
const ATTRS: Array<[ms: number, attr: number]> = [
  [MS.RDONLY, 0x1],
  [MS.NOSUID, 0x2],
  [MS.NODEV, 0x4],
  [MS.NOEXEC, 0x8],
  [MS.NOATIME, 0x10],
  [MS.STRICTATIME, 0x20],
  [MS.NODIRATIME, 0x80],
];

function sysMount(source: string, target: string, type: string, flags: number, data: string) {
  check(
    libc().mount(cstr(source), cstr(target), cstr(type), BigInt(flags), cstr(data)),
    `mount ${type} ${source} on`,
    target,
  );
}

/**
 * How a mount was made: plain mount(2), the new mount API (long overlays), or
 * mount(2) with layer paths relative to their common directory (old kernels).
 */
export type MountMethod = "mount" | "fsconfig" | "relative";

/** Mounts one mount onto `target`, following containerd's mount_linux.go. */
export function mountOne(m: Mount, target: string): MountMethod {
  if (m.type.startsWith("fuse.") || m.type.startsWith("fuse3.")) {
    throw new Error(
      `Cannot mount ${m.source} on ${target}: FUSE mount type "${m.type}" is not supported`,
    );
  }
  const { flags, data, loop } = parseMountOptions(m.options);
  if (loop) {
    throw new Error(`Cannot mount ${m.source} on ${target}: loop devices are not supported`);
  }
  const plain = flags & ~PROPAGATION;
  let method: MountMethod = "mount";
  if (m.type === "overlay" && optionsSize(m.options) >= PAGE_SIZE - OPTIONS_HEADROOM) {
    method = mountLongOverlay(m, target, plain);
  } else {
    if (data.length >= PAGE_SIZE) {
      throw new Error(
        `Cannot mount ${m.source} on ${target}: options are ${data.length} bytes, longer than a page`,
      );
    }
    // A remount with no data only changes flags: done by the calls below.
    if (!(flags & MS.REMOUNT) || data !== "") sysMount(m.source, target, m.type, plain, data);
  }
  if (flags & PROPAGATION) {
    sysMount("", target, "", flags & (PROPAGATION | MS.REC | MS.SILENT), "");
  }
  // A bind mount ignores MS_RDONLY on the first call; read-only needs a remount.
  if ((plain & (MS.BIND | MS.RDONLY)) === (MS.BIND | MS.RDONLY)) {
    sysMount("", target, "", plain | MS.REMOUNT, "");
  }
  return method;
}

function contextMessages(fd: number): string {
  const buf = new Uint8Array(1024);
  const lines: string[] = [];
  for (let i = 0; i < 16; i++) {
    const n = Number(libc().read(fd, buf, BigInt(buf.length)));
    if (n <= 0) break;
    lines.push(new TextDecoder().decode(buf.subarray(0, n)).replace(/^[ewi] /, ""));
  }
  return lines.join("; ");
}

class FsContextError extends SysError {
  constructor(op: string, errnum: number, path: string, detail: string) {
    super(op, errnum, path);
    if (detail) this.message += `: ${detail}`;
  }
}

/**
 * An overlay mount whose options pass a page: first the new mount API with one
 * `lowerdir+` per layer, then (old kernels) paths relative to a common directory.
 */
function mountLongOverlay(m: Mount, target: string, flags: number): MountMethod {
  try {
    mountWithFsConfig(m, target, flags);
    return "fsconfig";
  } catch (e) {
    // ENOSYS: no new mount API; EINVAL on lowerdir+: a kernel before 6.8.
    // ENOSYS: no new mount API. EINVAL from fsconfig: a kernel without
    // lowerdir+ (before 6.8) or without fds for paths (before 6.13).
    if (
      !(e instanceof SysError) ||
      !(e.errno === ENOSYS || (e.errno === EINVAL && e.op.startsWith("fsconfig")))
    ) {
      throw e;
    }
  }
  mountOverlayCompact(m, target);
  return "relative";
}

/**
 * The fallback for kernels without `lowerdir+`: layer paths relative to their
 * common directory, which becomes the working directory during mount(2).
 * Exported for tests.
 */
export function mountOverlayCompact(m: Mount, target: string): void {
  const { flags, data } = parseMountOptions(m.options);
  const compact = compactLowerdirs(m.options);
  const short = compact ? parseMountOptions(compact.options).data : data;
  if (!compact || short.length >= PAGE_SIZE) {
    throw new Error(
      `Cannot mount overlay on ${target}: options are ${data.length} bytes, longer than a page, and this kernel has no lowerdir+`,
    );
  }
  const cwd = Deno.cwd();
  // Synchronous from chdir to chdir: no other JavaScript runs in between.
  Deno.chdir(compact.dir);
  try {
    sysMount(m.source, target, m.type, flags & ~PROPAGATION, short);
  } finally {
    Deno.chdir(cwd);
  }
}

function mountWithFsConfig(m: Mount, target: string, flags: number): void {
  const c = libc();
  const fs = check(c.fsopen(cstr(m.type), FSOPEN_CLOEXEC), `fsopen ${m.type} for`, target);
  let mfd = -1;
  try {
    const set = (key: string, value: string | undefined) => {
      let ret: number;
      if (value === undefined) ret = c.fsconfig(fs, FSCONFIG_SET_FLAG, cstr(key), null, 0);
      else if (PATH_KEYS.has(key) && enc.encode(value).length >= FSCONFIG_MAX_STRING) {
        // fsconfig takes strings of at most 255 bytes; a long path goes as an
        // open directory instead (overlayfs accepts fds since Linux 6.13).
        const dfd = check(c.open(cstr(value), O_RDONLY_DIRECTORY, 0), `open ${key}`, value);
        try {
          ret = c.fsconfig(fs, FSCONFIG_SET_FD, cstr(key), null, dfd);
        } finally {
          c.close(dfd);
        }
      } else ret = c.fsconfig(fs, FSCONFIG_SET_STRING, cstr(key), cstr(value), 0);
      if (ret < 0) {
        const err = errno();
        throw new FsContextError(`fsconfig ${key} for`, err, target, contextMessages(fs));
      }
    };
    set("source", m.source || m.type);
    for (const o of parseMountOptions(m.options).data.split(",")) {
      if (o === "") continue;
      const eq = o.indexOf("=");
      const key = eq < 0 ? o : o.slice(0, eq);
      const value = eq < 0 ? undefined : o.slice(eq + 1);
      if (key === "lowerdir" && value !== undefined) {
        for (const dir of splitLowerdirs(value)) set("lowerdir+", dir);
      } else set(key, value);
    }
    if (c.fsconfig(fs, FSCONFIG_CMD_CREATE, null, null, 0) < 0) {
      const err = errno();
      throw new FsContextError(`create ${m.type} for`, err, target, contextMessages(fs));
    }
    let attrs = 0;
    for (const [ms, attr] of ATTRS) if (flags & ms) attrs |= attr;
    mfd = check(c.fsmount(fs, FSMOUNT_CLOEXEC, attrs), `fsmount ${m.type} for`, target);
    check(
      c.move_mount(mfd, cstr(""), AT_FDCWD, cstr(target), MOVE_MOUNT_F_EMPTY_PATH),
      `move_mount ${m.type} to`,
      target,
    );
  } finally {
    if (mfd >= 0) c.close(mfd);
    c.close(fs);
  }
}

/**
 * Mounts every mount of the list onto `target`, in order (later ones stack on
 * earlier ones). On failure the ones already mounted are unmounted again.
 */
export async function mountAll(
  mounts: readonly Mount[],
  target: string,
  opts: { log?: Logger } = {},
): Promise<void> {
  let done = 0;
  try {
    for (const m of mounts) {
      const method = mountOne(m, target);
      opts.log?.debug("mounted", { type: m.type, source: m.source, target, method });
      done++;
    }
  } catch (e) {
    opts.log?.debug("mount failed", { target, error: e });
    for (; done > 0; done--) await unmount(target, opts).catch(() => {});
    throw e;
  }
}

export interface UnmountOptions {
  /** MNT_DETACH: lazy unmount. */
  detach?: boolean;
  /** Tries on EBUSY, 50 ms apart (default 50). */
  tries?: number;
  log?: Logger;
}

/**
 * Unmounts `target` once, retrying while it is busy. Returns false when
 * nothing was mounted there (EINVAL) or the path is gone.
 */
export async function unmount(target: string, opts: UnmountOptions = {}): Promise<boolean> {
  const tries = opts.tries ?? 50;
  const flags = opts.detach ? MNT_DETACH : 0;
  for (let i = 0;; i++) {
    if (libc().umount2(cstr(target), flags) === 0) {
      opts.log?.debug("unmounted", { target, tries: i + 1 });
      return true;
    }
    const err = errno();
    if (err === EINVAL || err === ENOENT) return false;
    if (err !== EBUSY || i + 1 >= tries) throw new SysError("umount", err, target);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Unmounts every mount stacked on `target` (until none is left). */
export async function unmountAll(target: string, opts: UnmountOptions = {}): Promise<void> {
  for (let i = 0; i < 64; i++) {
    if (!(await unmount(target, opts))) return;
  }
  throw new Error(`Cannot unmount ${target}: still mounted after 64 unmounts`);
}

export interface TempMountOptions {
  /** Where to create the temporary mount point (default: the system temp dir). */
  dir?: string;
  log?: Logger;
}

/**
 * Mounts `mounts` on a fresh temporary directory, runs `fn` with its path and
 * unmounts it again, whatever `fn` does. The directory is removed only once
 * nothing is mounted on it (never recursively).
 *
 * @example
 * ```ts
 * const names = await withTempMount(mounts, async (root) => {
 *   return await Array.fromAsync(Deno.readDir(root), (e) => e.name);
 * });
 * ```
 */
export async function withTempMount<T>(
  mounts: readonly Mount[],
  fn: (root: string) => Promise<T> | T,
  opts: TempMountOptions = {},
): Promise<T> {
  const root = await Deno.makeTempDir({
    prefix: "berth-mount-",
    ...(opts.dir ? { dir: opts.dir } : {}),
  });
  try {
    const log = opts.log ? { log: opts.log } : {};
    await mountAll(mounts, root, log);
    try {
      return await fn(root);
    } finally {
      await unmountAll(root, log);
    }
  } finally {
    await Deno.remove(root).catch(() => {});
  }
}
