/**
 * Layer apply: one streaming pass over a (compressed) layer blob that
 * decompresses it, computes its diffID and writes its entries into a
 * directory, following the OCI layer spec's changeset rules
 * (https://github.com/opencontainers/image-spec/blob/main/layer.md).
 *
 * Two modes, as in containerd:
 * - `native`: the target already holds the lower layers; whiteouts delete,
 *   opaque markers empty a directory of everything not from this layer.
 * - `overlay`: the target is an empty overlayfs upper dir; whiteouts become
 *   0/0 character devices and opaque markers the `trusted.overlay.opaque=y`
 *   xattr. With `parents` (the lower dirs) implicit parent directories copy
 *   their metadata from below, and hardlinks to lower files copy them up, as
 *   the kernel does when the same change is made through a mounted overlay.
 *
 * Safety: the target is treated as a chroot. Entry names are cleaned
 * lexically and refused when they are absolute or climb out with `..`; parent
 * directories are resolved component by component with symlinks interpreted
 * relative to the target (like containerd's `fs.RootPath`), so a symlink to
 * `/etc` leads to `TARGET/etc`; the last component is never followed (an
 * existing symlink there is replaced, not written through).
 *
 * All filesystem work is synchronous (one FFI or Deno op per syscall, no await
 * per entry); decompression runs on node:zlib's worker threads meanwhile.
 */
import { createHash } from "node:crypto";
import { resolve as resolvePath } from "node:path";
import { BerthError } from "../core/errdefs.ts";
import { check, cstr, errno, libc, SysError } from "../sys/libc.ts";
import { compressionOf, decompress } from "./compression.ts";
import { type TarEntry, TarFormatError, TarReader, type TarSink } from "./tar_reader.ts";

/** How whiteouts are represented; see the module doc. */
export type ApplyMode = "overlay" | "native";

/** Options of {@link applyLayer}. */
export interface ApplyOptions {
  /** Default `native`. */
  mode?: ApplyMode;
  /**
   * Overlay mode: the lower directories this layer will be stacked on,
   * topmost first. Used to copy metadata into implicitly created parent
   * directories and to copy up hardlink targets that live in a lower layer.
   */
  parents?: string[];
  /**
   * Overlay mode: this layer will be stacked on lower layers that are not
   * given (they may not be unpacked yet). Whenever the result would depend on
   * them (an implicit parent directory, a path through a directory this layer
   * does not list, a hardlink to a file it does not hold), the apply fails
   * with {@link LowersNeededError}, and the caller applies the layer again
   * once the lowers are there. Layers that list every directory they write
   * into (what image builders produce) apply without them.
   */
  isolated?: boolean;
  /**
   * The layer's media type, when known: refused early unless it is a tar,
   * tar+gzip or tar+zstd layer. The compression itself is always detected from
   * the stream's first bytes.
   */
  mediaType?: string;
  /** When set, a different computed diffID fails the apply. */
  expectedDiffId?: string;
  signal?: AbortSignal;
  /** Called for entries that are skipped (e.g. `trusted.*` xattrs), for logging. */
  onWarning?: (message: string) => void;
}

/** What {@link applyLayer} computed. */
export interface ApplyResult {
  /** `sha256:<hex>` of the uncompressed tar. */
  diffId: string;
  /** Bytes of uncompressed tar. */
  size: number;
}

/**
 * Applies one layer blob (tar, tar+gzip or tar+zstd, detected from its magic
 * bytes) into `target`. The caller verifies the compressed digest; this
 * computes the diffID from the same single pass.
 *
 * ```ts
 * const { diffId } = await applyLayer(file.readable, "/snapshots/3/fs", { mode: "overlay" });
 * ```
 */
export async function applyLayer(
  stream: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  target: string,
  opts: ApplyOptions = {},
): Promise<ApplyResult> {
  if (opts.mediaType !== undefined) compressionOf(opts.mediaType);
  const root = resolvePath(target);
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(root);
  } catch (err) {
    throw new BerthError("not_found", `Cannot apply layer: target "${root}": not found`, {
      cause: err,
    });
  }
  if (!st.isDirectory) {
    throw new BerthError(
      "invalid_argument",
      `Cannot apply layer: target "${root}" is not a directory`,
    );
  }
  const applier = new Applier(root, opts);
  const reader = new TarReader(applier);
  const hash = createHash("sha256");
  let size = 0;
  try {
    for await (const chunk of decompress(stream as AsyncIterable<Uint8Array>)) {
      if (opts.signal?.aborted) {
        throw new BerthError("canceled", "Cannot apply layer: canceled", {
          cause: opts.signal.reason,
        });
      }
      hash.update(chunk);
      size += chunk.length;
      reader.push(chunk);
    }
    reader.finish();
    applier.finish();
  } catch (err) {
    applier.abort();
    throw applyError(err, reader.currentEntry);
  }
  const diffId = `sha256:${hash.digest("hex")}`;
  if (opts.expectedDiffId && opts.expectedDiffId !== diffId) {
    throw new BerthError(
      "failed_precondition",
      `Cannot apply layer: diffID ${diffId} does not match the expected ${opts.expectedDiffId}`,
    );
  }
  return { diffId, size };
}

/**
 * Thrown by an `isolated` apply when the layer's result depends on the lower
 * layers; the target holds a partial layer and must be discarded.
 */
export class LowersNeededError extends BerthError {
  constructor(entry: string) {
    super(
      "failed_precondition",
      `Cannot apply layer without its lower layers: entry "${entry}" depends on them`,
    );
    this.name = "LowersNeededError";
  }
}

function applyError(err: unknown, entry: string): Error {
  if (err instanceof BerthError) return err;
  if (err instanceof TarFormatError) {
    return new BerthError("invalid_argument", `Cannot apply layer: ${err.message}`, {
      cause: err,
    });
  }
  const msg = err instanceof Error ? err.message : String(err);
  const where = entry ? `entry "${entry}": ` : "";
  const kind = (err instanceof SysError && err.code === "ENOSPC") ||
      (err instanceof Error && /os error 28\b/.test(msg))
    ? "resource_exhausted"
    : "unknown";
  return new BerthError(kind, `Cannot apply layer: ${where}${msg}`, { cause: err });
}

// ---- constants ---------------------------------------------------------------

const O_WRONLY = 0o1;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_NOFOLLOW = 0o400000;
const O_CLOEXEC = 0o2000000;
const CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;
const EEXIST = 17;
const EOPNOTSUPP = 95;
const MAX_SYMLINKS = 255;

const WH_PREFIX = ".wh.";
const WH_META = ".wh..wh.";
const WH_OPAQUE = ".wh..wh..opq";
const OVERLAY_OPAQUE = cstr("trusted.overlay.opaque");
const Y = new Uint8Array([0x79]);

/** glibc's makedev(3). */
function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) |
    (mi & 0xffn);
}

function isExists(err: unknown): boolean {
  return err instanceof Deno.errors.AlreadyExists;
}

function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

function escapeError(raw: string, what: string): BerthError {
  return new BerthError("invalid_argument", `Cannot apply layer: entry "${raw}" ${what}`);
}

/**
 * Lexically cleans a name from the archive into components. Refuses absolute
 * names and `..` that climbs above the root. containerd instead clamps both
 * into the root; berth refuses them so a hostile or broken layer is noticed.
 */
function splitName(raw: string, entry: string, what = ""): string[] {
  if (raw.startsWith("/")) throw escapeError(entry, `${what}is an absolute path`);
  const out: string[] = [];
  for (const c of raw.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (out.length === 0) throw escapeError(entry, `${what}escapes the root`);
      out.pop();
    } else {
      out.push(c);
    }
  }
  return out;
}

interface DirTimes {
  path: string;
  ts: BigInt64Array;
}

/** Applies entries as the tar reader produces them. */
class Applier implements TarSink {
  readonly #root: string;
  readonly #overlay: boolean;
  readonly #parents: string[];
  readonly #isolated: boolean;
  readonly #warn: (m: string) => void;
  /** Relative paths known to be real directories (no symlink in them). */
  readonly #dirs = new Set<string>();
  /** Relative paths created by this layer (native mode, for opaque markers). */
  readonly #unpacked = new Set<string>();
  /** Directory times, set at the end so their own contents do not bump them. */
  readonly #dirTimes = new Map<string, DirTimes>();
  #fd = -1;
  #cur: TarEntry | undefined;
  #curPath = "";
  readonly #ts = new BigInt64Array(4);
  readonly #tsBytes = new Uint8Array(this.#ts.buffer);

  constructor(root: string, opts: ApplyOptions) {
    this.#root = root === "/" ? "" : root;
    this.#overlay = opts.mode === "overlay";
    this.#parents = this.#overlay ? (opts.parents ?? []) : [];
    this.#isolated = this.#overlay && opts.isolated === true;
    this.#warn = opts.onWarning ?? (() => {});
    this.#dirs.add("");
  }

  #abs(rel: string): string {
    return rel ? `${this.#root}/${rel}` : this.#root || "/";
  }

  // ---- TarSink --------------------------------------------------------------

  entry(e: TarEntry): void {
    this.#fd = -1;
    const comps = splitName(e.name, e.name);
    if (comps.length === 0) return; // the root itself: left as the snapshotter made it
    const base = comps[comps.length - 1]!;
    for (let i = 0; i < comps.length - 1; i++) {
      // AUFS metadata (.wh..wh.plnk and friends) is not part of the image
      if (comps[i]!.startsWith(WH_META)) return;
    }
    if (base.startsWith(WH_PREFIX)) {
      const parent = this.#resolveDir(comps.slice(0, -1), e.name, true)!;
      if (base === WH_OPAQUE) this.#opaque(parent);
      else if (base.startsWith(WH_META)) return;
      else this.#whiteout(parent, base.slice(WH_PREFIX.length), e);
      return;
    }
    const parent = this.#resolveDir(comps.slice(0, -1), e.name, true)!;
    const rel = parent ? `${parent}/${base}` : base;
    const path = this.#abs(rel);
    switch (e.type) {
      case "file":
        this.#createFile(path, rel, e);
        return; // metadata in end(), after the data
      case "dir":
        this.#createDir(path, rel, e);
        break;
      case "symlink":
        if (!e.linkname) throw escapeError(e.name, "is a symlink with an empty target");
        this.#create(path, rel, () => Deno.symlinkSync(e.linkname, path));
        this.#lchown(path, e.uid, e.gid);
        this.#setXattrs(path, e);
        this.#utimes(path, e);
        break;
      case "link":
        this.#createLink(path, rel, e);
        break;
      case "char":
      case "block":
      case "fifo": {
        const type = e.type === "char" ? S_IFCHR : e.type === "block" ? S_IFBLK : S_IFIFO;
        const dev = e.type === "fifo" ? 0n : makedev(e.devmajor, e.devminor);
        const c = cstr(path);
        this.#create(path, rel, () => {
          if (libc().mknod(c, type | (e.mode & 0o777), dev) < 0) {
            const n = errno();
            if (n === EEXIST) throw new Deno.errors.AlreadyExists();
            throw new SysError("mknod", n, path);
          }
        });
        this.#lchown(path, e.uid, e.gid);
        this.#setXattrs(path, e);
        check(libc().fchmodat(AT_FDCWD, c, e.mode, 0), "chmod", path);
        this.#utimes(path, e);
        break;
      }
    }
    if (!this.#overlay) this.#unpacked.add(rel);
  }

  data(bytes: Uint8Array): void {
    const fd = this.#fd;
    if (fd < 0) return; // data of a skipped entry (whiteout, AUFS metadata)
    let off = 0;
    while (off < bytes.length) {
      const rest = off === 0 ? bytes : bytes.subarray(off);
      const n = Number(libc().write(fd, rest, BigInt(rest.length)));
      if (n < 0) throw new SysError("write", errno(), this.#curPath);
      if (n === 0) throw new SysError("write", 28, this.#curPath); // no progress: ENOSPC
      off += n;
    }
  }

  end(): void {
    const fd = this.#fd;
    if (fd < 0) return;
    const e = this.#cur!;
    const path = this.#curPath;
    this.#fd = -1;
    try {
      const l = libc();
      check(l.fchown(fd, e.uid, e.gid), "chown", path);
      // xattrs after chown (chown drops security.capability), mode after both
      // (chown clears setuid/setgid)
      this.#setXattrs(path, e);
      check(l.fchmod(fd, e.mode), "chmod", path);
      this.#times(e);
      check(l.futimens(fd, this.#tsBytes), "utimensat", path);
    } finally {
      libc().close(fd);
    }
  }

  /** Sets directory times, last. */
  finish(): void {
    const l = libc();
    for (const { path, ts } of this.#dirTimes.values()) {
      const r = l.utimensat(AT_FDCWD, cstr(path), new Uint8Array(ts.buffer), AT_SYMLINK_NOFOLLOW);
      if (r < 0) {
        const n = errno();
        if (n !== 2 && n !== 20) throw new SysError("utimensat", n, path); // gone since: fine
      }
    }
  }

  /** Closes a half-written file after an error. */
  abort(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }

  // ---- entry kinds ---------------------------------------------------------

  #createFile(path: string, rel: string, e: TarEntry): void {
    const c = cstr(path);
    const l = libc();
    let fd = l.open(c, CREATE_FLAGS, 0o600);
    if (fd < 0) {
      const n = errno();
      if (n !== EEXIST) throw new SysError("open", n, path);
      // Replace, never truncate: the old file may share its inode with others.
      this.#remove(path, rel);
      fd = check(l.open(c, CREATE_FLAGS, 0o600), "open", path);
    }
    this.#fd = fd;
    this.#cur = e;
    this.#curPath = path;
    if (!this.#overlay) this.#unpacked.add(rel);
  }

  #createDir(path: string, rel: string, e: TarEntry): void {
    try {
      Deno.mkdirSync(path, { mode: 0o700 });
    } catch (err) {
      if (!isExists(err)) throw err;
      // A directory over a directory merges (only metadata changes); anything
      // else is replaced.
      if (!Deno.lstatSync(path).isDirectory) {
        this.#remove(path, rel);
        Deno.mkdirSync(path, { mode: 0o700 });
      }
    }
    this.#dirs.add(rel);
    const c = cstr(path);
    check(libc().lchown(c, e.uid, e.gid), "lchown", path);
    this.#setXattrs(path, e);
    check(libc().fchmodat(AT_FDCWD, c, e.mode, 0), "chmod", path);
    const ts = new BigInt64Array(4);
    this.#times(e, ts);
    this.#dirTimes.set(rel, { path, ts });
  }

  #createLink(path: string, rel: string, e: TarEntry): void {
    const comps = splitName(e.linkname, e.name, `hardlink target "${e.linkname}" `);
    if (comps.length === 0) throw escapeError(e.name, "is a hardlink to the root");
    const parent = this.#resolveDir(
      comps.slice(0, -1),
      e.name,
      this.#parents.length || this.#isolated ? "copyup" : false,
    );
    const base = comps[comps.length - 1]!;
    const targetRel = parent === undefined ? undefined : parent ? `${parent}/${base}` : base;
    const target = targetRel === undefined ? undefined : this.#abs(targetRel);
    let tst = target === undefined ? undefined : lstatOrUndefined(target);
    if (!tst && this.#isolated) throw new LowersNeededError(e.name);
    if (!tst && target !== undefined && this.#parents.length) {
      // Overlay: the target lives in a lower layer; copy it up first, as the
      // kernel does when linking through a mounted overlay.
      const low = this.#lowerLookup(targetRel!);
      if (low && !low.info.isDirectory) {
        this.#copyUp(low.path, target, low.info);
        tst = low.info;
      }
    }
    if (!tst || target === undefined) {
      throw new BerthError(
        "invalid_argument",
        `Cannot apply layer: entry "${e.name}": hardlink target "${e.linkname}" not found`,
      );
    }
    if (tst.isDirectory) {
      throw new BerthError(
        "invalid_argument",
        `Cannot apply layer: entry "${e.name}": hardlink target "${e.linkname}" is a directory`,
      );
    }
    if (target === path) return; // a link to itself: nothing to do
    const t = target;
    this.#create(path, rel, () => Deno.linkSync(t, path));
    // The header's metadata applies to the shared inode (as containerd does).
    this.#lchown(path, e.uid, e.gid);
    this.#setXattrs(path, e);
    if (!tst.isSymlink) check(libc().fchmodat(AT_FDCWD, cstr(path), e.mode, 0), "chmod", path);
    this.#utimes(path, e);
  }

  #whiteout(parent: string, name: string, e: TarEntry): void {
    if (name === "" || name === "." || name === ".." || name.includes("/")) {
      throw escapeError(e.name, "is an invalid whiteout");
    }
    const rel = parent ? `${parent}/${name}` : name;
    const path = this.#abs(rel);
    if (this.#overlay) {
      const c = cstr(path);
      this.#create(path, rel, () => {
        if (libc().mknod(c, S_IFCHR, 0n) < 0) {
          const n = errno();
          if (n === EEXIST) throw new Deno.errors.AlreadyExists();
          throw new SysError("mknod", n, path);
        }
      });
      this.#lchown(path, e.uid, e.gid);
    } else if (lstatOrUndefined(path)) {
      this.#remove(path, rel);
    }
  }

  #opaque(dirRel: string): void {
    const path = this.#abs(dirRel);
    if (this.#overlay) {
      check(libc().lsetxattr(cstr(path), OVERLAY_OPAQUE, Y, 1n, 0), "lsetxattr", path);
    } else {
      this.#prune(dirRel);
    }
  }

  /** Native opaque dir: removes what did not come from this layer. */
  #prune(dirRel: string): void {
    const dir = this.#abs(dirRel);
    for (const ent of Array.from(Deno.readDirSync(dir))) {
      const rel = dirRel ? `${dirRel}/${ent.name}` : ent.name;
      if (!this.#unpacked.has(rel)) this.#remove(`${dir}/${ent.name}`, rel);
      else if (ent.isDirectory) this.#prune(rel);
    }
  }

  // ---- helpers --------------------------------------------------------------

  /** Runs `make`; when the path exists, removes what is there and retries once. */
  #create(path: string, rel: string, make: () => void): void {
    try {
      make();
    } catch (err) {
      if (!isExists(err)) throw err;
      this.#remove(path, rel);
      make();
    }
  }

  /** Removes a path (recursively for directories) and forgets what we knew of it. */
  #remove(path: string, rel: string): void {
    const st = Deno.lstatSync(path);
    if (st.isDirectory) {
      Deno.removeSync(path, { recursive: true });
      const prefix = `${rel}/`;
      for (const d of this.#dirs) if (d === rel || d.startsWith(prefix)) this.#dirs.delete(d);
      for (const d of this.#dirTimes.keys()) {
        if (d === rel || d.startsWith(prefix)) this.#dirTimes.delete(d);
      }
      if (!this.#overlay) {
        for (const u of this.#unpacked) if (u.startsWith(prefix)) this.#unpacked.delete(u);
      }
    } else {
      Deno.removeSync(path);
    }
    this.#unpacked.delete(rel);
    this.#dirTimes.delete(rel);
  }

  /**
   * Resolves parent components to a real directory inside the root (relative
   * path, "" for the root), following symlinks as if the root were "/".
   * `create`: true makes missing directories (copying metadata from a lower
   * layer in overlay mode); "copyup" makes them only when a lower layer has
   * them; false returns undefined when one is missing.
   */
  #resolveDir(
    comps: string[],
    entry: string,
    create: boolean | "copyup",
  ): string | undefined {
    if (comps.length === 0) return "";
    const whole = comps.join("/");
    if (this.#dirs.has(whole)) return whole;
    const cur: string[] = [];
    const todo = comps.slice().reverse(); // a stack: next component last
    let hops = 0;
    while (todo.length) {
      const c = todo.pop()!;
      if (c === "" || c === ".") continue;
      if (c === "..") {
        cur.pop(); // at the root, ".." stays at the root, as in a chroot
        continue;
      }
      const rel = cur.length ? `${cur.join("/")}/${c}` : c;
      if (this.#dirs.has(rel)) {
        cur.push(c);
        continue;
      }
      const path = this.#abs(rel);
      let st = lstatOrUndefined(path);
      // What the lowers hold here would decide: they are not available.
      if (!st && this.#isolated) throw new LowersNeededError(entry);
      let linkPath = path;
      let lowerDir: string | undefined;
      if (!st && this.#parents.length) {
        // Overlay: what the merged view has here decides. A lower symlink is
        // followed; a lower directory is made in the upper dir with its
        // metadata; a lower file is shadowed by a new directory.
        const low = this.#lowerLookup(rel);
        if (low?.info.isSymlink) {
          st = low.info;
          linkPath = low.path;
        } else if (low?.info.isDirectory) {
          lowerDir = low.path;
        }
      }
      if (st?.isDirectory) {
        this.#dirs.add(rel);
        cur.push(c);
      } else if (st?.isSymlink) {
        if (++hops > MAX_SYMLINKS) {
          throw escapeError(entry, "has too many levels of symbolic links in its path");
        }
        const target = Deno.readLinkSync(linkPath);
        if (target.startsWith("/")) cur.length = 0;
        const parts = target.split("/");
        for (let i = parts.length - 1; i >= 0; i--) todo.push(parts[i]!);
      } else if (st) {
        throw new BerthError(
          "invalid_argument",
          `Cannot apply layer: entry "${entry}": parent "${rel}" is not a directory`,
        );
      } else {
        if (create === false || (create === "copyup" && lowerDir === undefined)) return undefined;
        // A copy-up leaves the parent's times alone, as overlayfs does
        // (ovl_set_timestamps); only what the layer itself adds bumps them.
        const parentPath = this.#abs(cur.join("/"));
        const parentSt = lowerDir !== undefined ? Deno.lstatSync(parentPath) : undefined;
        Deno.mkdirSync(path, { mode: 0o755 });
        check(libc().fchmodat(AT_FDCWD, cstr(path), 0o755, 0), "chmod", path);
        if (lowerDir !== undefined) {
          this.#copyMeta(lowerDir, path, Deno.lstatSync(lowerDir));
          this.#setTimes(parentPath, parentSt!);
        }
        this.#dirs.add(rel);
        if (!this.#overlay) this.#unpacked.add(rel);
        cur.push(c);
      }
    }
    return cur.join("/");
  }

  /**
   * Looks a relative path up in the lower layers as overlayfs would merge
   * them: the topmost layer that has it wins, a whiteout hides it, an opaque
   * or non-directory parent hides what is below.
   */
  #lowerLookup(rel: string): { path: string; info: Deno.FileInfo } | undefined {
    const comps = rel.split("/");
    let active = this.#parents;
    for (let i = 0; i < comps.length; i++) {
      const sub = comps.slice(0, i + 1).join("/");
      const last = i === comps.length - 1;
      const next: string[] = [];
      for (const lower of active) {
        const p = `${lower}/${sub}`;
        const st = lstatOrUndefined(p);
        if (!st) continue;
        if (st.isCharDevice && st.rdev === 0) return undefined; // whiteout
        if (last) return { path: p, info: st };
        if (!st.isDirectory) break;
        next.push(lower);
        if (isOpaque(p)) break;
      }
      if (!next.length) return undefined;
      active = next;
    }
    return undefined;
  }

  /** Copies a lower-layer non-directory into the upper dir (overlay copy-up). */
  #copyUp(src: string, dst: string, st: Deno.FileInfo): void {
    if (st.isFile) {
      Deno.copyFileSync(src, dst);
    } else if (st.isSymlink) {
      Deno.symlinkSync(Deno.readLinkSync(src), dst);
    } else {
      check(libc().mknod(cstr(dst), st.mode ?? 0, BigInt(st.rdev ?? 0)), "mknod", dst);
    }
    this.#copyMeta(src, dst, st);
  }

  /** Owner, xattrs (not overlay's own), mode and times from a lower path. */
  #copyMeta(src: string, dst: string, st: Deno.FileInfo): void {
    const c = cstr(dst);
    check(libc().lchown(c, st.uid ?? 0, st.gid ?? 0), "lchown", dst);
    copyXattrs(src, dst);
    if (!st.isSymlink) {
      check(libc().fchmodat(AT_FDCWD, c, (st.mode ?? 0o755) & 0o7777, 0), "chmod", dst);
    }
    this.#setTimes(dst, st);
  }

  /** Times from a stat (millisecond precision: Deno.FileInfo has no more). */
  #setTimes(dst: string, st: Deno.FileInfo): void {
    const c = cstr(dst);
    const ts = this.#ts;
    const at = st.atime?.getTime() ?? 0;
    const mt = st.mtime?.getTime() ?? 0;
    ts[0] = BigInt(Math.floor(at / 1000));
    ts[1] = BigInt((at % 1000) * 1e6);
    ts[2] = BigInt(Math.floor(mt / 1000));
    ts[3] = BigInt((mt % 1000) * 1e6);
    check(libc().utimensat(AT_FDCWD, c, this.#tsBytes, AT_SYMLINK_NOFOLLOW), "utimensat", dst);
  }

  #lchown(path: string, uid: number, gid: number): void {
    check(libc().lchown(cstr(path), uid, gid), "lchown", path);
  }

  #setXattrs(path: string, e: TarEntry): void {
    if (!e.xattrs) return;
    const c = cstr(path);
    for (const [name, value] of e.xattrs) {
      // trusted.* belongs to the host (overlayfs keeps whiteouts and opaque
      // markers there); a layer must not forge them. containerd skips them too.
      if (name.startsWith("trusted.")) {
        this.#warn(`ignored xattr ${name} of "${e.name}"`);
        continue;
      }
      if (libc().lsetxattr(c, cstr(name), value, BigInt(value.length), 0) < 0) {
        const n = errno();
        if (n === EOPNOTSUPP) {
          this.#warn(`ignored xattr ${name} of "${e.name}": not supported here`);
          continue;
        }
        throw new SysError(`lsetxattr ${name}`, n, path);
      }
    }
  }

  /** Fills a timespec[2] with atime (the later of atime and mtime) and mtime. */
  #times(e: TarEntry, ts = this.#ts): void {
    let ms = e.mtimeSec;
    let mn = e.mtimeNsec;
    if (ms < 0) ms = mn = 0; // like containerd's boundTime
    let as = ms;
    let an = mn;
    if (e.atimeSec !== undefined && e.atimeSec > ms) {
      as = e.atimeSec;
      an = e.atimeNsec ?? 0;
    }
    ts[0] = BigInt(as);
    ts[1] = BigInt(an);
    ts[2] = BigInt(ms);
    ts[3] = BigInt(mn);
  }

  #utimes(path: string, e: TarEntry): void {
    this.#times(e);
    check(
      libc().utimensat(AT_FDCWD, cstr(path), this.#tsBytes, AT_SYMLINK_NOFOLLOW),
      "utimensat",
      path,
    );
  }
}

function isOpaque(path: string): boolean {
  const buf = new Uint8Array(2);
  const n = Number(libc().lgetxattr(cstr(path), OVERLAY_OPAQUE, buf, 2n));
  return n === 1 && buf[0] === 0x79;
}

/** Copies extended attributes, except overlayfs' own (trusted.overlay.*). */
function copyXattrs(src: string, dst: string): void {
  const l = libc();
  const s = cstr(src);
  const size = Number(l.llistxattr(s, new Uint8Array(0), 0n));
  if (size <= 0) return;
  const list = new Uint8Array(size);
  const n = Number(l.llistxattr(s, list, BigInt(size)));
  if (n <= 0) return;
  const dec = new TextDecoder();
  let start = 0;
  for (let i = 0; i < n; i++) {
    if (list[i] !== 0) continue;
    const name = dec.decode(list.subarray(start, i));
    start = i + 1;
    if (!name || name.startsWith("trusted.overlay.")) continue;
    const key = cstr(name);
    const vlen = Number(l.lgetxattr(s, key, new Uint8Array(0), 0n));
    if (vlen < 0) continue;
    const val = new Uint8Array(vlen);
    if (Number(l.lgetxattr(s, key, val, BigInt(vlen))) < 0) continue;
    if (l.lsetxattr(cstr(dst), key, val, BigInt(vlen), 0) < 0 && errno() !== EOPNOTSUPP) {
      throw new SysError(`lsetxattr ${name}`, errno(), dst);
    }
  }
}
