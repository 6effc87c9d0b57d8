/**
 * `berth pull` end to end: a real daemon, Debian's docker-registry serving
 * images this test builds and pushes with skopeo (tests/_registry.ts), and
 * the unpacked result looked at through `berth mount` as a user would:
 * contents, modes, owners, symlinks, hardlinks, whiteouts. Both snapshotters;
 * platform choice from an index; Basic and token auth; a blob behind a
 * redirect to another host; `berth rmi` leaving nothing behind.
 */
import assert from "node:assert/strict";
import { ok, startDaemon, type TestDaemon } from "./_harness.ts";
import {
  buildTestImages,
  DEEP_PATH,
  LONG_TARGET,
  longName,
  startBasicAuthRegistry,
  startRedirectFront,
  startRegistryEnv,
  startTokenAuthRegistry,
  type TestImages,
} from "./_registry.ts";
import { formatPlatform, hostPlatform } from "../src/oci/platforms.ts";

const BUSYBOX = await Deno.readFile("/bin/busybox");

interface PullJson {
  name: string;
  digest: string;
  fetchedBytes: number;
}

async function pullJson(d: TestDaemon, args: string[], ns = "default"): Promise<PullJson> {
  const r = ok(
    await d.berth(["-n", ns, "pull", "--json", ...args]),
    `berth pull ${args.join(" ")}`,
  );
  return JSON.parse(r.stdout) as PullJson;
}

/** The short digest `berth images` shows. */
const short = (digest: string) => digest.slice(7, 19);

/** Mounts `image` with `berth mount`, runs `fn` on the directory, then unmounts. */
async function withMount(
  d: TestDaemon,
  tmp: string,
  image: string,
  snapshotter: string,
  fn: (dir: string) => Promise<void>,
  ns: string[] = [],
): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: tmp, prefix: "mnt-" });
  ok(await d.berth([...ns, "mount", "--snapshotter", snapshotter, image, dir]), "berth mount");
  try {
    await fn(dir);
  } finally {
    ok(await d.berth([...ns, "unmount", "--snapshotter", snapshotter, dir]), "berth unmount");
  }
  // Unmounted: the directory is empty again.
  assert.deepEqual([...Deno.readDirSync(dir)], [], `${dir} is empty after unmount`);
}

function mode(st: Deno.FileInfo): number {
  return st.mode! & 0o7777;
}

/** The busybox images: the binary byte for byte, applet links, /etc/passwd. */
async function checkBusybox(root: string): Promise<void> {
  const st = await Deno.lstat(`${root}/bin/busybox`);
  assert.ok(st.isFile);
  assert.equal(mode(st), 0o755);
  assert.deepEqual(await Deno.readFile(`${root}/bin/busybox`), BUSYBOX);
  assert.equal(await Deno.readLink(`${root}/bin/sh`), "busybox");
  assert.equal(
    await Deno.readTextFile(`${root}/etc/passwd`),
    "root:x:0:0:root:/root:/bin/sh\n",
  );
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** The multi-layer image's merged rootfs (see _registry.ts, layersTrees). */
async function checkLayers(root: string): Promise<void> {
  // Whiteouts of a file, a directory and a symlink took effect; no whiteout file shows.
  assert.equal(await exists(`${root}/a/gone.txt`), false, "file whiteout");
  assert.equal(await exists(`${root}/gone-link`), false, "symlink whiteout");
  assert.equal(await exists(`${root}/a/.wh.gone.txt`), false, "no .wh. file left");
  // The whited-out directory came back in layer 3 with only its new file.
  assert.deepEqual([...Deno.readDirSync(`${root}/gone-dir`)].map((e) => e.name), ["again"]);
  // The opaque directory hides everything below it; its new file is there.
  assert.deepEqual([...Deno.readDirSync(`${root}/opq`)].map((e) => e.name), ["new1"]);
  assert.equal(await Deno.readTextFile(`${root}/a/added.txt`), "layer2\n");
  // Hardlink: one inode, two names.
  const keep = await Deno.lstat(`${root}/a/keep.txt`);
  const hard = await Deno.lstat(`${root}/a/hard.txt`);
  assert.equal(hard.ino, keep.ino, "hardlink shares the inode");
  assert.equal(keep.nlink, 2);
  assert.equal(await Deno.readTextFile(`${root}/a/hard.txt`), "keep\n");
  // Symlinks: relative, absolute (kept as written), dangling, long target.
  assert.equal(await Deno.readLink(`${root}/a/rel-link`), "keep.txt");
  assert.equal(await Deno.readLink(`${root}/abs-link`), "/a/keep.txt");
  assert.equal(await Deno.readLink(`${root}/dangling`), "/does/not/exist");
  assert.equal(await Deno.readLink(`${root}/long-target`), LONG_TARGET);
  // Modes and owners.
  assert.equal(mode(await Deno.lstat(`${root}/bin/suid`)), 0o4755, "setuid");
  assert.equal(mode(await Deno.lstat(`${root}/bin/sgid`)), 0o2755, "setgid");
  assert.equal(mode(await Deno.lstat(`${root}/tmp`)), 0o1777, "sticky");
  const secret = await Deno.lstat(`${root}/home/app/secret`);
  assert.deepEqual([mode(secret), secret.uid, secret.gid], [0o600, 1000, 1000]);
  const shared = await Deno.lstat(`${root}/home/app/shared`);
  assert.deepEqual([mode(shared), shared.uid, shared.gid], [0o640, 123, 456]);
  const app = await Deno.lstat(`${root}/home/app`);
  assert.deepEqual([app.uid, app.gid], [1000, 1000]);
  // Long names (PAX).
  assert.equal(await Deno.readTextFile(`${root}/a/${longName(150)}`), "long name\n");
  assert.equal(await Deno.readTextFile(`${root}/${DEEP_PATH}`), "deep\n");
  // Nothing else at the top.
  assert.deepEqual(
    [...Deno.readDirSync(root)].map((e) => e.name).sort(),
    [
      "a",
      "abs-link",
      "bin",
      "dangling",
      "deep",
      "gone-dir",
      "home",
      "long-target",
      "opq",
      "srv",
      "tmp",
    ],
  );
}

interface ImageRow {
  name: string;
  digest: string;
  size: number | null;
  createdAt: string | null;
}

Deno.test({
  name: "pull: berth pull of the test images, images table, mounts on both snapshotters",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using env = await startRegistryEnv("berth-pull-");
    const imgs: TestImages = await buildTestImages(env.tmp, env.host);
    await using d = await startDaemon();
    const R = env.host;
    const ref = (n: string) => `${R}/${n}:v1`;
    const expected: Record<string, string> = {
      busybox: imgs.busybox.manifest.digest,
      layers: imgs.layers.manifest.digest,
      multi: imgs.multi.index.digest,
      schema2: imgs.schema2.manifest.digest,
      zstd: imgs.zstd.manifest.digest,
    };

    await t.step("pull every image; berth images lists them", async () => {
      for (const n of imgs.names) {
        const started = Date.now();
        const res = await pullJson(d, [ref(n)]);
        assert.equal(res.name, ref(n));
        assert.equal(res.digest, expected[n], `${n} digest`);
        assert.ok(Date.now() - started < 30_000);
      }
      const table = ok(await d.berth(["images"])).stdout.trim().split("\n");
      assert.match(table[0]!, /^REPOSITORY\s+TAG\s+DIGEST\s+SIZE\s+CREATED$/);
      assert.equal(table.length, 1 + imgs.names.length);
      for (const n of imgs.names) {
        const row = table.find((l) => l.startsWith(`${R}/${n} `));
        assert.ok(row, `row for ${n} in:\n${table.join("\n")}`);
        const cols = row.split(/\s{2,}/);
        assert.equal(cols[1], "v1");
        assert.equal(cols[2], short(expected[n]!));
        assert.match(cols[3]!, /^\d+(\.\d+)? (B|KiB|MiB)$/);
        assert.match(cols[4]!, /ago$/);
      }
      const json = JSON.parse(ok(await d.berth(["images", "ls", "--json"])).stdout) as ImageRow[];
      const bb = json.find((i) => i.name === ref("busybox"))!;
      // Size as ctr counts it: manifest, config and layers.
      const img = imgs.busybox;
      assert.equal(
        bb.size,
        img.manifest.size + img.config.size + img.layers.reduce((s, l) => s + l.desc.size, 0),
      );
      assert.ok(bb.createdAt && Date.now() - Date.parse(bb.createdAt) < 120_000);
    });

    await t.step("overlayfs: mounts show the expected files", async () => {
      for (const n of ["busybox", "schema2", "zstd"]) {
        await withMount(d, env.tmp, ref(n), "overlayfs", checkBusybox);
      }
      await withMount(d, env.tmp, ref("layers"), "overlayfs", checkLayers);
      await withMount(d, env.tmp, ref("multi"), "overlayfs", async (root) => {
        await checkBusybox(root);
        assert.equal(
          await Deno.readTextFile(`${root}/etc/platform-marker`),
          `${formatPlatform(hostPlatform())}\n`,
        );
      });
    });

    await t.step("--snapshotter native: the same trees", async () => {
      for (const n of ["busybox", "layers", "zstd"]) {
        await pullJson(d, ["--snapshotter", "native", ref(n)]);
      }
      await withMount(d, env.tmp, ref("busybox"), "native", checkBusybox);
      await withMount(d, env.tmp, ref("zstd"), "native", checkBusybox);
      await withMount(d, env.tmp, ref("layers"), "native", checkLayers);
      const native = ok(await d.berth(["snapshots", "--snapshotter", "native", "ls", "-q"]))
        .stdout.trim().split("\n");
      // busybox, zstd: one each; layers: three.
      assert.equal(native.length, 5, native.join("\n"));
    });

    await t.step("multi-platform: host by default, --platform, --all-platforms", async () => {
      const m = imgs.multi;
      const content = async (ns: string) =>
        ok(await d.berth(["-n", ns, "content", "ls", "-q"])).stdout.trim().split("\n");
      // Default namespace: pulled above with no flags.
      let c = await content("default");
      assert.ok(c.includes(m.host.manifest.digest), "host manifest fetched");
      assert.ok(!c.includes(m.other.manifest.digest), "other platform not fetched");
      assert.ok(!c.includes(m.other.layers[0]!.desc.digest));

      const otherArg = m.otherPlatform.split("/").slice(0, 2).join("/");
      const other = await pullJson(d, ["--platform", otherArg, ref("multi")], "plat");
      assert.equal(other.digest, m.index.digest);
      assert.equal(other.fetchedBytes, m.other.layers[0]!.desc.size);
      c = await content("plat");
      assert.ok(c.includes(m.other.manifest.digest), "other manifest fetched");
      assert.ok(c.includes(m.other.layers[0]!.desc.digest), "other layer fetched");
      assert.ok(!c.includes(m.host.manifest.digest), "host manifest not fetched");

      // A daemon of its own: blobs are shared between namespaces, so a fresh
      // store shows that both platforms' layers are fetched.
      await using d2 = await startDaemon();
      const all = await pullJson(d2, ["--all-platforms", ref("multi")], "all");
      assert.equal(
        all.fetchedBytes,
        m.host.layers[0]!.desc.size + m.other.layers[0]!.desc.size,
        "both layers fetched",
      );
      c = ok(await d2.berth(["-n", "all", "content", "ls", "-q"])).stdout.trim().split("\n");
      for (const img of [m.host, m.other]) {
        assert.ok(c.includes(img.manifest.digest));
        assert.ok(c.includes(img.config.digest));
        assert.ok(c.includes(img.layers[0]!.desc.digest));
      }
      // ctr sees both platforms of the one image.
      const ls = ok(await d2.ctr(["-n", "all", "images", "ls"])).stdout;
      assert.match(
        ls,
        new RegExp(
          `${formatPlatform(hostPlatform())}.*${m.otherPlatform}|${m.otherPlatform}.*${
            formatPlatform(hostPlatform())
          }`,
        ),
      );
    });

    await t.step("Basic auth: -u tester:secret works, without it a clear error", async () => {
      const basic = await startBasicAuthRegistry(env.tmp, env.storage);
      env.defer(() => basic.stop());
      const B = `${basic.host}/busybox:v1`;
      const bad = await d.berth(["-n", "basic", "pull", B]);
      assert.notEqual(bad.code, 0);
      assert.ok(bad.stderr.includes(B), bad.stderr);
      assert.match(bad.stderr, /401|unauthorized|authenticat/i);
      assert.equal(ok(await d.berth(["-n", "basic", "images", "-q"])).stdout, "");
      const wrong = await d.berth(["-n", "basic", "pull", "-u", "tester:wrong", B]);
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.stderr, /401|unauthorized|authenticat/i);
      const res = await pullJson(d, ["-u", "tester:secret", B], "basic");
      assert.equal(res.digest, imgs.busybox.manifest.digest);
      assert.equal(ok(await d.berth(["-n", "basic", "images", "-q"])).stdout.trim(), B);
    });

    await t.step("token auth: a bearer token from the registry's token server", async () => {
      const tok = await startTokenAuthRegistry(env.tmp, env.storage);
      env.defer(() => tok.stop());
      const T = `${tok.host}/layers:v1`;
      // A fresh daemon, so every blob comes through the token-protected registry.
      await using d = await startDaemon();
      const bad = await d.berth(["-n", "token", "pull", T]);
      assert.notEqual(bad.code, 0);
      assert.ok(bad.stderr.includes(T), bad.stderr);
      assert.match(bad.stderr, /incorrect username or password/);
      tok.tokenRequests.length = 0;
      const res = await pullJson(d, ["-u", "tester:secret", T], "token");
      assert.equal(res.digest, imgs.layers.manifest.digest);
      assert.equal(
        res.fetchedBytes,
        imgs.layers.layers.reduce((s, l) => s + l.desc.size, 0),
        "every layer fetched through the token-protected registry",
      );
      assert.ok(tok.tokenRequests.length >= 1);
      assert.deepEqual(tok.tokenRequests[0]!.searchParams.getAll("scope"), [
        "repository:layers:pull",
      ]);
      await withMount(d, env.tmp, T, "overlayfs", checkLayers, ["-n", "token"]);
    });

    await t.step("a blob served through a redirect to another host", async () => {
      const rf = startRedirectFront(env.port);
      env.defer(() => rf.close());
      const F = `${rf.front.host}/busybox:v1`;
      await using d = await startDaemon();
      const res = await pullJson(d, [F], "redirect");
      assert.equal(res.fetchedBytes, imgs.busybox.layers[0]!.desc.size);
      const blobGets = rf.cdn.log.map((l) => l.path);
      assert.ok(
        blobGets.includes(`/cdn/${imgs.busybox.layers[0]!.desc.digest}`),
        `the CDN served the layer: ${blobGets.join(", ")}`,
      );
      await withMount(d, env.tmp, F, "overlayfs", checkBusybox, ["-n", "redirect"]);
    });

    await t.step("berth rmi removes images, their content and snapshots", async () => {
      const names = ok(await d.berth(["images", "-q"])).stdout.trim().split("\n");
      ok(await d.berth(["rmi", ...names]));
      assert.equal(ok(await d.berth(["images", "-q"])).stdout, "");
      assert.equal(ok(await d.berth(["content", "ls", "-q"])).stdout.trim(), "");
      assert.equal(ok(await d.berth(["snapshots", "ls", "-q"])).stdout.trim(), "");
      assert.equal(
        ok(await d.berth(["snapshots", "--snapshotter", "native", "ls", "-q"])).stdout.trim(),
        "",
      );
      assert.equal(ok(await d.ctr(["content", "ls", "-q"])).stdout.trim(), "");
      // Another namespace's copy of the same image is untouched.
      const kept = ok(await d.berth(["-n", "plat", "images", "-q"])).stdout.trim();
      assert.equal(kept, ref("multi"));
      assert.ok(
        ok(await d.berth(["-n", "plat", "content", "ls", "-q"])).stdout.includes(
          imgs.multi.other.layers[0]!.desc.digest,
        ),
      );
    });
  },
});
