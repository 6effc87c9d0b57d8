/**
 * Resolving a container's user (`USER` of an image config, `-u` of
 * `berth run`) to numeric ids through the rootfs's /etc/passwd and
 * /etc/group, with containerd 1.6.20's rules:
 *
 * - `uid`            → the passwd entry with that uid gives the gid; without
 *                      one (or without /etc/passwd) the gid is 0.
 * - `name`           → must exist in /etc/passwd.
 * - `uid:gid`        → taken as is, no files read.
 * - `name:group`, `uid:group`, `name:gid` → names must exist in their file.
 * - supplementary groups: the groups of /etc/group listing the user's name
 *   as a member (a group named like the user is skipped), and the primary gid
 *   is always part of the list (containerd 1.6.20, CVE-2023-25173).
 *
 * Files are read as if the rootfs were the root directory: a symlink is
 * resolved inside the rootfs (an absolute target restarts at the rootfs, `..`
 * stops at it), so an image cannot make the daemon read a host file.
 *
 * @module
 */

import { join } from "../util/path.ts";
import { invalidArgument, notFound } from "../core/errdefs.ts";

/** One line of /etc/passwd. */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/** One line of /etc/group. */
export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** The ids a process runs with. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Supplementary groups, the primary gid first unless already listed. */
  additionalGids: number[];
}

/** The highest id accepted as numeric; runc refuses ids above int32 (as containerd). */
const MAX_ID = 0x7fffffff;

const MAX_SYMLINKS = 255;

/** The numeric id in `s`, or undefined when `s` is not a number in 0..2^31-1. */
function parseId(s: string): number | undefined {
  if (!/^\+?\d+$/.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX_ID ? n : undefined;
}

function parseColonFile<T>(text: string, minFields: number, make: (f: string[]) => T | undefined) {
  const out: T[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(":");
    if (fields.length < minFields) continue;
    const entry = make(fields);
    if (entry !== undefined) out.push(entry);
  }
  return out;
}

/** Parses /etc/passwd text; malformed lines are skipped (as libc does). */
export function parsePasswd(text: string): PasswdEntry[] {
  return parseColonFile(text, 4, (f) => {
    const uid = parseId(f[2]!);
    const gid = parseId(f[3]!);
    if (uid === undefined || gid === undefined) return undefined;
    return { name: f[0]!, uid, gid, home: f[5] ?? "", shell: f[6] ?? "" };
  });
}

/** Parses /etc/group text; malformed lines are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  return parseColonFile(text, 3, (f) => {
    const gid = parseId(f[2]!);
    if (gid === undefined) return undefined;
    const members = (f[3] ?? "").split(",").map((m) => m.trim()).filter((m) => m !== "");
    return { name: f[0]!, gid, members };
  });
}

/**
 * The host path of `path` inside `root`, resolving every symlink as if
 * `root` were `/` (like a chroot, or containerd's continuity `fs.RootPath`).
 * Components that do not exist are kept as they are.
 */
export async function resolveInRoot(root: string, path: string): Promise<string> {
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  const resolved: string[] = [];
  let links = 0;
  while (parts.length > 0) {
    const part = parts.shift()!;
    if (part === "..") {
      resolved.pop(); // never above the root
      continue;
    }
    const host = join(root, ...resolved, part);
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(host);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
        resolved.push(part, ...parts);
        break;
      }
      throw e;
    }
    if (!info.isSymlink) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) {
      throw invalidArgument(`path ${JSON.stringify(path)} in rootfs ${root}: too many symlinks`);
    }
    const target = await Deno.readLink(host);
    const targetParts = target.split("/").filter((p) => p !== "" && p !== ".");
    if (target.startsWith("/")) resolved.length = 0;
    parts.unshift(...targetParts);
  }
  return join(root, ...resolved);
}

/**
 * Reads `path` (like "/etc/passwd") of the rootfs `root`, resolving symlinks
 * inside it. Returns undefined when the file does not exist.
 */
export async function readFileInRoot(root: string, path: string): Promise<string | undefined> {
  const host = await resolveInRoot(root, path);
  try {
    return await Deno.readTextFile(host);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw e;
  }
}

async function readPasswd(root: string | undefined): Promise<PasswdEntry[] | undefined> {
  if (root === undefined) return undefined;
  const text = await readFileInRoot(root, "/etc/passwd");
  return text === undefined ? undefined : parsePasswd(text);
}

async function readGroup(root: string | undefined): Promise<GroupEntry[] | undefined> {
  if (root === undefined) return undefined;
  const text = await readFileInRoot(root, "/etc/group");
  return text === undefined ? undefined : parseGroup(text);
}

function needRoot(root: string | undefined, what: string): string {
  if (root === undefined) {
    throw invalidArgument(`Cannot resolve ${what} without a rootfs to read /etc/passwd from`);
  }
  return root;
}

async function userByName(root: string | undefined, name: string): Promise<PasswdEntry> {
  const r = needRoot(root, `user ${JSON.stringify(name)}`);
  const users = await readPasswd(r);
  if (users === undefined) {
    throw notFound(`user ${JSON.stringify(name)}: no /etc/passwd in rootfs ${r}`);
  }
  const u = users.find((e) => e.name === name);
  if (!u) throw notFound(`user ${JSON.stringify(name)} in ${r}/etc/passwd`);
  return u;
}

async function groupByName(root: string | undefined, name: string): Promise<GroupEntry> {
  const r = needRoot(root, `group ${JSON.stringify(name)}`);
  const groups = await readGroup(r);
  if (groups === undefined) {
    throw notFound(`group ${JSON.stringify(name)}: no /etc/group in rootfs ${r}`);
  }
  const g = groups.find((e) => e.name === name);
  if (!g) throw notFound(`group ${JSON.stringify(name)} in ${r}/etc/group`);
  return g;
}

/**
 * The primary uid and gid for a user string (`name`, `uid`, `name:group`,
 * `uid:gid`, `uid:group`, `name:gid`), without supplementary groups.
 * `rootfs` is the host path of the container's root filesystem; it is only
 * read when a name must be looked up or a bare uid needs its gid.
 */
export async function resolveUserIds(
  rootfs: string | undefined,
  user: string,
): Promise<{ uid: number; gid: number }> {
  const parts = user.split(":");
  if (user === "" || parts.length > 2 || parts.some((p) => p === "")) {
    throw invalidArgument(`Invalid user ${JSON.stringify(user)}: want name, uid, or user:group`);
  }
  if (parts.length === 1) {
    const uid = parseId(parts[0]!);
    if (uid === undefined) {
      const u = await userByName(rootfs, parts[0]!);
      return { uid: u.uid, gid: u.gid };
    }
    // A bare uid takes its gid from passwd when listed there, else gid 0.
    const users = await readPasswd(rootfs);
    const u = users?.find((e) => e.uid === uid);
    return { uid, gid: u ? u.gid : 0 };
  }
  const [userPart, groupPart] = parts as [string, string];
  const uidNum = parseId(userPart);
  const gidNum = parseId(groupPart);
  const uid = uidNum ?? (await userByName(rootfs, userPart)).uid;
  const gid = gidNum ?? (await groupByName(rootfs, groupPart)).gid;
  return { uid, gid };
}

/**
 * Supplementary groups of the user with uid `uid` (or of the user named
 * `name`): every /etc/group entry that lists the user's name as a member,
 * except a group with the user's own name. Empty when the rootfs has no
 * such user or no /etc/group (as containerd).
 */
export async function supplementaryGroups(
  rootfs: string | undefined,
  user: number | string,
): Promise<number[]> {
  if (rootfs === undefined) return [];
  let name: string;
  if (typeof user === "number") {
    const users = await readPasswd(rootfs);
    const u = users?.find((e) => e.uid === user);
    if (!u) return [];
    name = u.name;
  } else {
    name = user;
  }
  const groups = await readGroup(rootfs);
  if (!groups) return [];
  return groups.filter((g) => g.name !== name && g.members.includes(name)).map((g) => g.gid);
}

/** `additional` with `gid` in front unless already present (containerd's ensureAdditionalGids). */
export function withPrimaryGid(gid: number, additional: readonly number[]): number[] {
  return additional.includes(gid) ? [...additional] : [gid, ...additional];
}

/**
 * Resolves a user string to uid, gid and supplementary groups, the way
 * containerd's `WithImageConfig` does for an image's `User` (WithUser, then
 * WithAdditionalGIDs of the resolved uid). An empty user means root.
 *
 * @example
 * ```ts
 * const u = await resolveUser("/run/berth/c1/rootfs", "app:staff");
 * // { uid: 1000, gid: 50, additionalGids: [50, 1001] }
 * ```
 */
export async function resolveUser(
  rootfs: string | undefined,
  user: string,
): Promise<ResolvedUser> {
  if (user === "") {
    const extra = await supplementaryGroups(rootfs, "root");
    return { uid: 0, gid: 0, additionalGids: withPrimaryGid(0, extra) };
  }
  const { uid, gid } = await resolveUserIds(rootfs, user);
  const extra = await supplementaryGroups(rootfs, uid);
  return { uid, gid, additionalGids: withPrimaryGid(gid, extra) };
}

/**
 * Resolves group names or numbers (like `--group-add`) against the rootfs's
 * /etc/group.
 */
export async function resolveGroups(
  rootfs: string | undefined,
  groups: readonly string[],
): Promise<number[]> {
  const out: number[] = [];
  for (const g of groups) {
    const n = parseId(g);
    out.push(n ?? (await groupByName(rootfs, g)).gid);
  }
  return out;
}
