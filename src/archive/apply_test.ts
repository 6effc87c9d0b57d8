/**
 * Layer apply against a real filesystem (needs root: chown, mknod, trusted.*
 * xattrs and overlay mounts). Archives are built in the test, with
 * tar_writer.ts for crafted entries and GNU tar for what real tools write.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { BerthError, isKind } from "../core/errdefs.ts";
import { cstr, libc } from "../sys/libc.ts";
import { applyLayer, type ApplyMode, type ApplyOptions } from "./apply.ts";
import { buildTar, type TarWriteEntry } from "./tar_writer.ts";

const MS_RDONLY = 1n;

async function tempDir(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "berth-archive-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

function apply(tar: Uint8Array, dir: string, opts: ApplyOptions = {}) {
  return applyLayer(
    (async function* () {
      yield tar;
    })(),
    dir,
    opts,
  );
}

function xattr(path: string, name: string): Uint8Array | undefined {
  const buf = new Uint8Array(256);
  const n = Number(libc().lgetxattr(cstr(path), cstr(name), buf, 256n));
  return n < 0 ? undefined : buf.slice(0, n);
}

/**
 * One line per path below `root`: type, mode, owner, size/target/device,
 * content hash, mtime, xattrs (like refenv's verify-unpack, plus xattrs and
 * hardlink groups).
 */
function listing(root: string): string[] {
  const out: string[] = [];
  const inodes = new Map<number, string>();
  const walk = (rel: string) => {
    const names = [...Deno.readDirSync(rel ? `${root}/${rel}` : root)].map((e) => e.name).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const p = `${root}/${r}`;
      const st = Deno.lstatSync(p);
      const type = st.isFile
        ? "f"
        : st.isDirectory
        ? "d"
        : st.isSymlink
        ? "l"
        : st.isFifo
        ? "p"
        : st.isCharDevice
        ? "c"
        : st.isBlockDevice
        ? "b"
        : "?";
      let extra = "";
      if (st.isFile) {
        extra = createHash("sha256").update(Deno.readFileSync(p)).digest("hex").slice(0, 12);
        if (st.nlink! > 1) {
          if (!inodes.has(st.ino!)) inodes.set(st.ino!, r);
          extra += ` hl:${inodes.get(st.ino!)}`;
        }
      } else if (st.isSymlink) extra = `-> ${Deno.readLinkSync(p)}`;
      else if (st.isCharDevice || st.isBlockDevice) extra = `dev ${st.rdev}`;
      const xa = ["user.a", "user.bin", "security.capability"]
        .map((n) => [n, xattr(p, n)] as const)
        .filter(([, v]) => v)
        .map(([n, v]) => ` ${n}=${[...v!].join(",")}`)
        .join("");
      // times set by the apply itself ("now") differ between two runs by a few ms
      const secs = Math.floor(st.mtime!.getTime() / 1000);
      const mtime = Date.now() / 1000 - secs < 120 ? "now" : secs;
      out.push(
        `${r} ${type} ${
          (st.mode! & 0o7777).toString(8)
        } ${st.uid}:${st.gid} ${extra} ${mtime}${xa}`,
      );
      if (st.isDirectory) walk(r);
    }
  };
  walk("");
  return out;
}

function mountOverlay(lowers: string[], target: string): void {
  const r = libc().mount(
    cstr("overlay"),
    cstr(target),
    cstr("overlay"),
    MS_RDONLY,
    cstr(`lowerdir=${lowers.join(":")}`),
  );
  assert.equal(r, 0, `mount overlay on ${target}`);
}

function umount(target: string): void {
  libc().umount2(cstr(target), 2 /* MNT_DETACH */);
}

/**
 * Applies `layers` in native mode into one dir and in overlay mode into one
 * dir each (with parents), mounts the overlay and returns both listings.
 */
async function bothModes(layers: Uint8Array[]): Promise<{ native: string[]; overlay: string[] }> {
  await using t = await tempDir();
  const native = `${t.path}/native`;
  await Deno.mkdir(native);
  for (const l of layers) await apply(l, native, { mode: "native" });
  const lowers: string[] = [];
  for (const [i, l] of layers.entries()) {
    const dir = `${t.path}/l${i}`;
    await Deno.mkdir(dir);
    await apply(l, dir, { mode: "overlay", parents: [...lowers].reverse() });
    lowers.push(dir);
  }
  const merged = `${t.path}/merged`;
  await Deno.mkdir(merged);
  if (lowers.length === 1) lowers.push(`${t.path}/empty`), await Deno.mkdir(`${t.path}/empty`);
  mountOverlay([...lowers].reverse(), merged);
  try {
    return { native: listing(native), overlay: listing(merged) };
  } finally {
    umount(merged);
  }
}

const T2001 = 1000000000;
const BASE: TarWriteEntry[] = [
  { name: "etc/", type: "dir" },
  { name: "etc/passwd", type: "file", data: "root:x:0:0::/root:/bin/sh\n" },
  { name: "usr/", type: "dir" },
  { name: "usr/lib/", type: "dir", mode: 0o750, uid: 7, gid: 8, mtime: T2001 },
  { name: "usr/lib/libc.so", type: "file", data: "libc" },
  { name: "lib", type: "symlink", linkname: "/usr/lib" },
  { name: "data/", type: "dir" },
  { name: "data/keep", type: "file", data: "keep" },
  { name: "data/gone", type: "file", data: "gone" },
  { name: "data/gone-dir/", type: "dir" },
  { name: "data/gone-dir/f", type: "file", data: "f" },
  { name: "data/opaque/", type: "dir" },
  { name: "data/opaque/old", type: "file", data: "old" },
  { name: "data/opaque/sub/", type: "dir" },
  { name: "data/opaque/sub/older", type: "file", data: "older" },
  { name: "data/dir-to-file/", type: "dir" },
  { name: "data/dir-to-file/inner", type: "file", data: "inner" },
  { name: "data/file-to-dir", type: "file", data: "file" },
  { name: "data/merge/", type: "dir", mode: 0o700 },
  { name: "data/merge/lower", type: "file", data: "lower" },
  { name: "data/shared", type: "file", data: "shared by a later hardlink", mode: 0o640 },
];

Deno.test("apply: every entry type with owners, modes, times, xattrs and long names", async () => {
  await using t = await tempDir();
  await Deno.chmod(t.path, 0o755);
  const long = `long/${"d".repeat(120)}/${"f".repeat(130)}`;
  const cap = new Uint8Array([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const tar = buildTar([
    { name: "./", type: "dir", mode: 0o700 },
    { name: "bin/", type: "dir", mtime: T2001 },
    { name: "bin/suid", type: "file", mode: 0o4755, data: "#!/bin/sh\n", uid: 1000, gid: 1000 },
    { name: "bin/sgid", type: "file", mode: 0o2711, data: "x" },
    {
      name: "bin/ping",
      type: "file",
      mode: 0o755,
      data: "ping",
      xattrs: { "security.capability": cap },
    },
    {
      name: "bin/sh",
      type: "symlink",
      linkname: "/bin/busybox",
      uid: 1000,
      gid: 1001,
      mtime: T2001,
    },
    { name: "bin/rel", type: "symlink", linkname: "../etc/x", mtime: T2001 },
    { name: "bin/hard", type: "link", linkname: "bin/suid", mode: 0o4755, uid: 1000, gid: 1000 },
    { name: "tmp/", type: "dir", mode: 0o1777 },
    { name: "shared/", type: "dir", mode: 0o2775, uid: 1000, gid: 1000 },
    { name: "dev/", type: "dir" },
    { name: "dev/null", type: "char", devmajor: 1, devminor: 3, mode: 0o666 },
    { name: "dev/loop0", type: "block", devmajor: 7, devminor: 0, mode: 0o660, gid: 6 },
    { name: "dev/fifo", type: "fifo", mode: 0o600 },
    {
      name: "x",
      type: "file",
      data: "x",
      mode: 0o600,
      xattrs: { "user.a": "1", "user.bin": new Uint8Array([0, 255]) },
    },
    { name: "trusted", type: "file", data: "", xattrs: { "trusted.overlay.opaque": "y" } },
    { name: long, type: "file", data: "long", mtime: T2001 },
    {
      name: "gnu/" + "g".repeat(150),
      type: "symlink",
      linkname: "t/".repeat(80),
      longNames: "gnu",
    },
    { name: "old", type: "file", data: "old", mtime: -5 },
  ]);
  const warnings: string[] = [];
  const r = await apply(tar, t.path, { onWarning: (w) => warnings.push(w) });
  assert.equal(r.size, tar.length);
  assert.equal(r.diffId, `sha256:${createHash("sha256").update(tar).digest("hex")}`);
  const st = (p: string) => Deno.lstatSync(`${t.path}/${p}`);
  assert.equal(st("bin/suid").mode! & 0o7777, 0o4755);
  assert.equal(st("bin/suid").uid, 1000);
  assert.equal(st("bin/sgid").mode! & 0o7777, 0o2711);
  assert.equal(st("tmp").mode! & 0o7777, 0o1777);
  assert.equal(st("shared").mode! & 0o7777, 0o2775);
  assert.equal(st("shared").gid, 1000);
  assert.equal(Deno.readLinkSync(`${t.path}/bin/sh`), "/bin/busybox"); // absolute kept as is
  assert.equal(st("bin/sh").uid, 1000); // lchown, not chown of the target
  assert.equal(st("bin/sh").gid, 1001);
  assert.equal(st("bin/sh").mtime!.getTime(), T2001 * 1000); // utimensat NOFOLLOW
  assert.equal(st("bin/hard").ino, st("bin/suid").ino);
  assert.equal(st("bin/hard").nlink, 2);
  assert.ok(st("dev/null").isCharDevice);
  assert.equal(st("dev/null").rdev, 0x103);
  assert.ok(st("dev/loop0").isBlockDevice);
  assert.equal(st("dev/loop0").rdev, 0x700);
  assert.equal(st("dev/loop0").gid, 6);
  assert.ok(st("dev/fifo").isFifo);
  assert.equal(st("dev/fifo").mode! & 0o7777, 0o600);
  assert.deepEqual([...xattr(`${t.path}/x`, "user.bin")!], [0, 255]); // binary PAX value
  assert.deepEqual([...xattr(`${t.path}/bin/ping`, "security.capability")!], [...cap]);
  assert.equal(xattr(`${t.path}/trusted`, "trusted.overlay.opaque"), undefined);
  assert.match(warnings.join("\n"), /ignored xattr trusted.overlay.opaque of "trusted"/);
  assert.equal(Deno.readTextFileSync(`${t.path}/${long}`), "long");
  assert.equal(st(long).mtime!.getTime(), T2001 * 1000);
  assert.equal(Deno.readLinkSync(`${t.path}/gnu/${"g".repeat(150)}`), "t/".repeat(80));
  // directory times are set after their contents were written
  assert.equal(st("bin").mtime!.getTime(), T2001 * 1000);
  assert.equal(st("old").mtime!.getTime(), 0); // pre-1970 clamped, as containerd does
  // the root entry "./" leaves the target's own mode alone
  assert.equal(Deno.statSync(t.path).mode! & 0o777, 0o755);
});

const UPPER: TarWriteEntry[] = [
  { name: "data/", type: "dir" },
  { name: "data/.wh.gone", type: "file" },
  { name: "data/.wh.gone-dir", type: "file" },
  { name: "data/opaque/", type: "dir" },
  // a child before the opaque marker: it must survive the marker
  { name: "data/opaque/-first", type: "file", data: "first" },
  { name: "data/opaque/.wh..wh..opq", type: "file" },
  { name: "data/opaque/new", type: "file", data: "new" },
  { name: "data/dir-to-file", type: "file", data: "now a file" },
  { name: "data/file-to-dir/", type: "dir" },
  { name: "data/file-to-dir/inner", type: "file", data: "now a dir" },
  { name: "data/merge/", type: "dir", mode: 0o755, mtime: T2001 },
  { name: "data/merge/upper", type: "file", data: "upper" },
  // hardlink to a file of the lower layer (overlay: copied up first)
  { name: "data/shared-link", type: "link", linkname: "data/shared", mode: 0o640 },
  // through a lower-layer symlink: lands in usr/lib
  { name: "lib/libnew.so", type: "file", data: "new lib" },
  // implicit parent that exists below with its own metadata
  { name: "usr/lib/implicit/file", type: "file", data: "implicit" },
  { name: ".wh..wh.plnk/123", type: "file", data: "aufs metadata" },
];

Deno.test("apply: whiteouts, opaque dirs and replacements give the same tree in both modes", async () => {
  const { native, overlay } = await bothModes([buildTar(BASE), buildTar(UPPER)]);
  assert.deepEqual(overlay, native);
  const paths = native.map((l) => l.split(" ")[0]);
  for (const gone of ["data/gone", "data/gone-dir", "data/opaque/old", "data/opaque/sub"]) {
    assert.ok(!paths.includes(gone), `${gone} should be gone`);
  }
  for (const kept of ["data/keep", "data/opaque/-first", "data/opaque/new", "data/merge/lower"]) {
    assert.ok(paths.includes(kept), `${kept} should be there`);
  }
  const line = (p: string) => native.find((l) => l.startsWith(`${p} `))!;
  assert.match(line("data/dir-to-file"), / f 644 /);
  assert.match(line("data/file-to-dir"), / d 755 /);
  assert.match(line("data/merge"), new RegExp(` d 755 0:0 +${T2001}$`)); // metadata updated
  assert.match(line("data/shared-link"), /hl:data\/shared /);
  assert.ok(paths.includes("usr/lib/libnew.so"));
  assert.match(line("lib"), /-> \/usr\/lib/);
  assert.match(line("usr/lib"), / d 750 7:8 /); // copied from below in overlay mode
  assert.ok(!paths.some((p) => p!.includes(".wh.")));
});

Deno.test("apply: overlay mode writes whiteout devices and the opaque xattr", async () => {
  await using t = await tempDir();
  await apply(buildTar(UPPER.filter((e) => e.type !== "link")), t.path, { mode: "overlay" });
  const wh = Deno.lstatSync(`${t.path}/data/gone`);
  assert.ok(wh.isCharDevice);
  assert.equal(wh.rdev, 0);
  assert.ok(Deno.lstatSync(`${t.path}/data/gone-dir`).isCharDevice);
  assert.deepEqual(
    xattr(`${t.path}/data/opaque`, "trusted.overlay.opaque"),
    new Uint8Array([0x79]),
  );
  // without parents a hardlink to a lower file cannot be made
  await using u = await tempDir();
  await assert.rejects(
    apply(buildTar([{ name: "a", type: "link", linkname: "data/shared" }]), u.path, {
      mode: "overlay",
    }),
    /entry "a": hardlink target "data\/shared" not found/,
  );
});

Deno.test("apply: an existing symlink at the entry's path is replaced, never followed", async () => {
  await using t = await tempDir();
  await using outside = await tempDir();
  await Deno.writeTextFile(`${outside.path}/victim`, "safe");
  await Deno.mkdir(`${t.path}/root`);
  for (const mode of ["native", "overlay"] as ApplyMode[]) {
    const root = `${t.path}/root-${mode}`;
    await Deno.mkdir(root);
    await apply(
      buildTar([
        { name: "f", type: "symlink", linkname: `${outside.path}/victim` },
        { name: "d", type: "symlink", linkname: outside.path },
        { name: "f", type: "file", data: "new", mode: 0o600 },
        { name: "d/", type: "dir", mode: 0o700 },
        { name: "d/inner", type: "file", data: "inner" },
      ]),
      root,
      { mode },
    );
    assert.equal(Deno.readTextFileSync(`${root}/f`), "new");
    assert.ok(Deno.lstatSync(`${root}/d`).isDirectory);
    assert.equal(Deno.readTextFileSync(`${root}/d/inner`), "inner");
  }
  assert.deepEqual([...Deno.readDirSync(outside.path)].map((e) => e.name), ["victim"]);
  assert.equal(Deno.readTextFileSync(`${outside.path}/victim`), "safe");
  assert.equal(Deno.statSync(outside.path).mode! & 0o777, 0o700); // not chmodded through d
});

Deno.test("apply: malicious layers write nothing outside the target", async (t) => {
  await using outside = await tempDir();
  const out = outside.path;
  const cases: [string, TarWriteEntry[], RegExp | null][] = [
    [
      "dot-dot",
      [{ name: "../escape", type: "file", data: "x" }],
      /entry "..\/escape" escapes the root/,
    ],
    [
      "dot-dot in the middle",
      [{ name: "a/../../b/../../escape", type: "file", data: "x" }],
      /entry "a\/..\/..\/b\/..\/..\/escape" escapes the root/,
    ],
    ["absolute", [{ name: `${out}/abs`, type: "file", data: "x" }], /is an absolute path/],
    [
      "symlinked parent",
      [
        { name: "evil", type: "symlink", linkname: out },
        { name: "evil/file", type: "file", data: "x" },
        { name: "rel", type: "symlink", linkname: "../../../../../../../../" },
        { name: "rel/file2", type: "file", data: "x" },
        { name: "loop", type: "symlink", linkname: "loop/x" },
      ],
      null,
    ],
    ["symlink loop", [
      { name: "loop", type: "symlink", linkname: "loop/x" },
      { name: "loop/f", type: "file" },
    ], /entry "loop\/f" has too many levels of symbolic links/],
    [
      "hardlink absolute",
      [{ name: "h", type: "link", linkname: "/etc/passwd" }],
      /entry "h" hardlink target "\/etc\/passwd" is an absolute path/,
    ],
    [
      "hardlink dot-dot",
      [{ name: "h", type: "link", linkname: "../outside" }],
      /entry "h" hardlink target "..\/outside" escapes the root/,
    ],
    [
      "hardlink through symlinked parent",
      [
        { name: "sys", type: "symlink", linkname: "/etc" },
        { name: "h", type: "link", linkname: "sys/passwd" },
      ],
      /entry "h": hardlink target "sys\/passwd" not found/,
    ],
    [
      "whiteout escaping",
      [{ name: "a/.wh...", type: "file" }],
      /entry "a\/.wh..." is an invalid whiteout/,
    ],
    ["whiteout of a parent", [{ name: ".wh..", type: "file" }], /invalid whiteout/],
  ];
  for (const mode of ["native", "overlay"] as ApplyMode[]) {
    for (const [name, entries, err] of cases) {
      await t.step(`${mode}: ${name}`, async () => {
        await using root = await tempDir();
        const p = apply(buildTar(entries), root.path, { mode });
        if (err) {
          await assert.rejects(p, (e: unknown) => {
            assert.ok(e instanceof BerthError, String(e));
            assert.ok(isKind(e, "invalid_argument"));
            assert.match(e.message, /^Cannot apply layer: /);
            assert.match(e.message, err);
            return true;
          });
        } else {
          await p;
          // symlinks were resolved as in a chroot: the files are inside
          assert.equal(Deno.readTextFileSync(`${root.path}${out}/file`), "x");
          assert.equal(Deno.readTextFileSync(`${root.path}/file2`), "x");
        }
        assert.deepEqual([...Deno.readDirSync(out)], [], "nothing written outside");
        assert.ok(Deno.readTextFileSync("/etc/passwd").includes("root:"));
      });
    }
  }
});

Deno.test("apply: gzip and zstd give the diffID of the uncompressed tar", async () => {
  const tar = buildTar(BASE);
  const want = `sha256:${createHash("sha256").update(tar).digest("hex")}`;
  for (
    const [name, blob] of [
      ["tar", tar],
      ["gzip", gzipSync(tar)],
      ["zstd", zstdCompressSync(tar)],
    ] as const
  ) {
    await using t = await tempDir();
    // as a ReadableStream in small pieces, as a fetch body would come
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < blob.length; i += 1000) c.enqueue(blob.subarray(i, i + 1000));
        c.close();
      },
    });
    const r = await applyLayer(stream, t.path, { expectedDiffId: want });
    assert.equal(r.diffId, want, name);
    assert.equal(r.size, tar.length, name);
    assert.equal(Deno.readTextFileSync(`${t.path}/data/keep`), "keep", name);
  }
});

Deno.test("apply: bad input gives clear errors", async () => {
  await using t = await tempDir();
  const tar = buildTar(BASE);
  await assert.rejects(
    apply(tar, t.path, { expectedDiffId: "sha256:" + "0".repeat(64) }),
    (e: unknown) =>
      isKind(e, "failed_precondition") && /does not match the expected/.test(String(e)),
  );
  const gz = gzipSync(tar);
  gz[gz.length - 5] = gz[gz.length - 5]! ^ 0xff; // corrupt the trailer (length/crc)
  await assert.rejects(apply(gz, `${t.path}`), /Cannot decompress layer \(gzip\)/);
  await assert.rejects(
    apply(tar.subarray(0, 3000), t.path),
    /Cannot apply layer: unexpected end of tar stream in entry/,
  );
  await assert.rejects(
    apply(new TextEncoder().encode('{"not": "a tar"}'.padEnd(600)), t.path),
    (e: unknown) => isKind(e, "invalid_argument") && /invalid tar header checksum/.test(String(e)),
  );
  await assert.rejects(apply(tar, `${t.path}/missing`), (e: unknown) => isKind(e, "not_found"));
  await assert.rejects(
    apply(tar, t.path, { mediaType: "application/vnd.oci.image.layer.v1.tar+encrypted" }),
    (e: unknown) =>
      isKind(e, "not_implemented") &&
      /Unsupported layer media type "[^"]+\+encrypted"/.test(String(e)),
  );
  // an error of the source stream (a network reset, a digest check) ends the apply with it
  for (const blob of [tar, gzipSync(tar)]) {
    const failing = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(blob.subarray(0, 1024));
        c.error(new Error("connection reset by peer"));
      },
    });
    await assert.rejects(applyLayer(failing, t.path), /connection reset by peer/);
  }
});

Deno.test("apply: a tree packed by GNU tar (posix, xattrs, hardlinks) unpacks identically", async () => {
  await using t = await tempDir();
  const src = `${t.path}/src`;
  const run = async (cmd: string, ...args: string[]) => {
    const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    assert.equal(o.code, 0, `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
    return o.stdout;
  };
  await run(
    "sh",
    "-c",
    `
    set -e; umask 022; mkdir -p ${src}/a/b ${src}/s; cd ${src}
    printf hello > a/f; chmod 4750 a/f; chown 1000:100 a/f; ln a/f a/b/hl
    printf x > a/b/${"n".repeat(140)}; ln -s /etc/hostname abs; ln -s a/b rel; mkfifo a/p
    chmod 1777 s; chmod 2755 a/b; touch -h -d @${T2001} abs; touch -d @${T2001} a/b a
  `,
  );
  assert.equal(
    libc().lsetxattr(cstr(`${src}/a/f`), cstr("user.a"), new Uint8Array([49]), 1n, 0),
    0,
  );
  const tar = await run(
    "tar",
    "--format=posix",
    "--xattrs",
    "--xattrs-include=user.*",
    "--numeric-owner",
    "-C",
    src,
    "-cf",
    "-",
    ".",
  );
  const dst = `${t.path}/dst`;
  await Deno.mkdir(dst);
  await apply(tar, dst);
  assert.deepEqual(listing(dst), listing(src));
  assert.ok(listing(dst).some((l) => l.includes("user.a=49")), "xattr user.a restored");
});
