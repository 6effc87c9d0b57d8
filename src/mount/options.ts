/**
 * fstab-style mount options, split the way mount(2) needs them: the words the
 * kernel takes as flags (`ro`, `nosuid`, `rbind`, `private`, ...) and the rest,
 * joined with commas, as the filesystem's data string (`lowerdir=...`).
 * Pure functions: no syscalls here.
 */

/** mount(2) flags (linux/mount.h). */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  SYNCHRONOUS: 0x10,
  REMOUNT: 0x20,
  MANDLOCK: 0x40,
  DIRSYNC: 0x80,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  SILENT: 0x8000,
  UNBINDABLE: 0x20000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
  RELATIME: 0x200000,
  STRICTATIME: 0x1000000,
} as const;

/** The propagation flags: they must be set by a call of their own. */
export const PROPAGATION = MS.SHARED | MS.PRIVATE | MS.SLAVE | MS.UNBINDABLE;

/** Option word → [clear?, flag]. A "clear" option removes its flag (e.g. `rw`). */
const FLAGS: Record<string, [clear: boolean, flag: number]> = {
  async: [true, MS.SYNCHRONOUS],
  atime: [true, MS.NOATIME],
  bind: [false, MS.BIND],
  defaults: [false, 0],
  dev: [true, MS.NODEV],
  diratime: [true, MS.NODIRATIME],
  dirsync: [false, MS.DIRSYNC],
  exec: [true, MS.NOEXEC],
  mand: [false, MS.MANDLOCK],
  noatime: [false, MS.NOATIME],
  nodev: [false, MS.NODEV],
  nodiratime: [false, MS.NODIRATIME],
  noexec: [false, MS.NOEXEC],
  nomand: [true, MS.MANDLOCK],
  norelatime: [true, MS.RELATIME],
  nostrictatime: [true, MS.STRICTATIME],
  nosuid: [false, MS.NOSUID],
  rbind: [false, MS.BIND | MS.REC],
  relatime: [false, MS.RELATIME],
  remount: [false, MS.REMOUNT],
  ro: [false, MS.RDONLY],
  rw: [true, MS.RDONLY],
  strictatime: [false, MS.STRICTATIME],
  suid: [true, MS.NOSUID],
  sync: [false, MS.SYNCHRONOUS],
  private: [false, MS.PRIVATE],
  rprivate: [false, MS.PRIVATE | MS.REC],
  shared: [false, MS.SHARED],
  rshared: [false, MS.SHARED | MS.REC],
  slave: [false, MS.SLAVE],
  rslave: [false, MS.SLAVE | MS.REC],
  unbindable: [false, MS.UNBINDABLE],
  runbindable: [false, MS.UNBINDABLE | MS.REC],
};

export interface ParsedOptions {
  /** Every flag, propagation included. */
  flags: number;
  /** The filesystem-specific options, comma-joined. */
  data: string;
  /** The `loop` option was given (a loop device is needed). */
  loop: boolean;
}

/**
 * Splits options into flags and data, in order (a later `rw` clears an earlier `ro`).
 *
 * @example
 * ```ts
 * parseMountOptions(["ro", "rbind"]); // { flags: MS.RDONLY|MS.BIND|MS.REC, data: "", loop: false }
 * parseMountOptions(["lowerdir=/a:/b", "nosuid"]); // { flags: MS.NOSUID, data: "lowerdir=/a:/b" }
 * ```
 */
export function parseMountOptions(options: readonly string[]): ParsedOptions {
  let flags = 0;
  let loop = false;
  const data: string[] = [];
  for (const o of options) {
    const f = FLAGS[o];
    if (f && f[1] !== 0) {
      if (f[0]) flags &= ~f[1];
      else flags |= f[1];
    } else if (f) continue; // "defaults"
    else if (o === "loop") loop = true;
    else data.push(o);
  }
  return { flags, data: data.join(","), loop };
}

/** Splits an overlay `lowerdir` value on unescaped colons (`\:` is a literal colon). */
export function splitLowerdirs(value: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === "\\" && i + 1 < value.length) {
      cur += value[++i];
    } else if (c === ":") {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out.filter((d) => d !== "");
}

/** Escapes a path for an overlay `lowerdir` list. */
export function escapeLowerdir(path: string): string {
  return path.replace(/[\\:,]/g, (c) => "\\" + c);
}

/**
 * Rewrites overlay options so that `lowerdir` holds paths relative to the
 * longest common parent directory of its layers (which it returns), as
 * containerd does when the option string would pass the one-page limit of
 * mount(2). Returns undefined when there is nothing to shorten.
 */
export function compactLowerdirs(
  options: readonly string[],
): { dir: string; options: string[] } | undefined {
  const idx = options.findIndex((o) => o.startsWith("lowerdir="));
  if (idx < 0) return undefined;
  const dirs = splitLowerdirs(options[idx]!.slice("lowerdir=".length));
  if (dirs.length < 2 || dirs.some((d) => !d.startsWith("/"))) return undefined;
  let common = dirs[0]!.split("/");
  for (const d of dirs.slice(1)) {
    const parts = d.split("/");
    let i = 0;
    while (i < common.length && i < parts.length - 1 && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  const dir = common.join("/");
  if (dir === "") return undefined;
  const rel = dirs.map((d) => escapeLowerdir(d.slice(dir.length + 1)));
  const out = options.filter((_, i) => i !== idx);
  out.push(`lowerdir=${rel.join(":")}`);
  return { dir, options: out };
}

/** The byte length of the options as mount(2) receives them. */
export function optionsSize(options: readonly string[]): number {
  return new TextEncoder().encode(options.join(",")).length;
}
