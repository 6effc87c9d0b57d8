/**
 * The overlayfs pull unpacks layers in parallel, each into a directory of its
 * own, and commits them in chain order; a layer whose result depends on the
 * layers below (a directory it does not list, a hardlink to a lower file, a
 * whiteout in an unlisted directory) is applied again on its parent. The
 * merged rootfs must be what the native snapshotter (one layer after the
 * other, onto a copy of its parent) gives, and a layer whose diffID does not
 * match must leave no image and no snapshot of its chain behind.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { ok, startDaemon, type TestDaemon } from "./_harness.ts";
import {
  type Layer,
  Layout,
  sha256,
  skopeoCopy,
  startRegistryEnv,
  tarLayer,
  writeImage,
} from "./_registry.ts";
import { buildTar } from "../src/archive/tar_writer.ts";
import { chainIds } from "../src/images/unpack.ts";

/** Incompressible bytes: layers above 4 MiB go to the apply workers. */
function noise(mb: number): Uint8Array {
  const b = new Uint8Array(mb << 20);
  for (let j = 0; j < b.length; j += 65536) crypto.getRandomValues(b.subarray(j, j + 65536));
  return b;
}

/** `path mode uid:gid kind size nlink md5-ish` of a tree, sorted (what a user would compare). */
async function listing(root: string): Promise<string[]> {
  const out = await new Deno.Command("sh", {
    args: [
      "-c",
      `cd "${root}" && find . -mindepth 1 -printf '%p %m %U:%G %y %s %l %T@\\n' | sort && ` +
      `find . -type f -printf '%p %n\\n' | sort && find . -type f -print0 | sort -z | xargs -0 md5sum`,
    ],
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  // Directory sizes differ between an overlay and a plain directory, and the
  // times of directories the top layer writes into are when each pull ran.
  return new TextDecoder().decode(out.stdout).trim().split("\n").map((l) =>
    / d \d+ /.test(l) ? l.replace(/ d \d+ .*$/, " d") : l
  );
}

async function mounted<T>(
  d: TestDaemon,
  tmp: string,
  snapshotter: string,
  ref: string,
  fn: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ dir: tmp, prefix: `rootfs-${snapshotter}-` });
  ok(await d.berth(["mount", "--snapshotter", snapshotter, ref, dir]), "berth mount");
  try {
    return await fn(dir);
  } finally {
    ok(await d.berth(["unmount", "--snapshotter", snapshotter, dir]), "berth unmount");
  }
}

Deno.test({
  name: "pull parallel: overlayfs layers unpacked apart match native; a bad diffID commits nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using env = await startRegistryEnv("berth-pull-parallel-");
    const tmp = env.tmp;
    const layout = await new Layout(`${tmp}/oci`).init();

    // Layer 1: a tree (every directory listed, as image builders write them).
    const l1 = `${tmp}/l1`;
    await Deno.mkdir(`${l1}/usr/lib`, { recursive: true });
    await Deno.mkdir(`${l1}/data`, { recursive: true });
    await Deno.mkdir(`${l1}/shared`, { recursive: true });
    await Deno.chmod(`${l1}/usr/lib`, 0o750);
    await Deno.writeFile(`${l1}/data/blob1`, noise(5));
    await Deno.writeTextFile(`${l1}/shared/target`, "shared inode\n");
    await Deno.writeTextFile(`${l1}/usr/lib/libx`, "x\n");
    const layer1 = await tarLayer(layout, l1);
    // Layer 2: also self-contained; applied apart from layer 1.
    const l2 = `${tmp}/l2`;
    await Deno.mkdir(`${l2}/opt/tool`, { recursive: true });
    await Deno.writeFile(`${l2}/opt/tool/bin`, noise(5));
    await Deno.chmod(`${l2}/opt/tool/bin`, 0o4755);
    const layer2 = await tarLayer(layout, l2);
    // Layer 3: needs its lowers: a file in directories it does not list, a
    // hardlink to a lower file, a whiteout in an unlisted directory.
    const tar3 = buildTar([
      { name: "big3", type: "file", data: noise(5) },
      { name: "usr/lib/added", type: "file", data: "added\n" },
      { name: "lnk", type: "link", linkname: "shared/target" },
      { name: "data/.wh.blob1", type: "file" },
    ]);
    const gz3 = gzipSync(tar3, { level: 1 });
    const layer3: Layer = {
      desc: await layout.put("application/vnd.oci.image.layer.v1.tar+gzip", gz3),
      diffId: sha256(tar3),
    };
    const good = await writeImage(layout, [layer1, layer2, layer3]);
    await layout.tag(good.manifest, "v1");
    await skopeoCopy(tmp, `oci:${layout.dir}:v1`, `docker://${env.host}/par:v1`);
    // The same layers, but the config names another diffID for layer 2.
    const bad = await writeImage(layout, [
      layer1,
      { ...layer2, diffId: `sha256:${"e".repeat(64)}` },
      layer3,
    ]);
    await layout.tag(bad.manifest, "v1");
    await skopeoCopy(tmp, `oci:${layout.dir}:v1`, `docker://${env.host}/par-bad:v1`);

    await using d = await startDaemon();
    const ref = `${env.host}/par:v1`;

    await t.step("overlayfs and native give the same rootfs", async () => {
      ok(await d.berth(["pull", "-q", ref]), "pull overlayfs");
      ok(await d.berth(["pull", "-q", "--snapshotter", "native", ref]), "pull native");
      const overlay = await mounted(d, tmp, "overlayfs", ref, async (dir) => {
        assert.equal(await Deno.readTextFile(`${dir}/usr/lib/added`), "added\n");
        assert.equal((await Deno.stat(`${dir}/usr/lib`)).mode! & 0o7777, 0o750);
        assert.equal(await Deno.readTextFile(`${dir}/lnk`), "shared inode\n");
        assert.equal((await Deno.stat(`${dir}/opt/tool/bin`)).mode! & 0o7777, 0o4755);
        await assert.rejects(Deno.lstat(`${dir}/data/blob1`), Deno.errors.NotFound);
        return await listing(dir);
      });
      const native = await mounted(d, tmp, "native", ref, listing);
      assert.deepEqual(overlay, native);
      // Only the chain's snapshots remain: no staging snapshot left behind.
      const snaps = ok(await d.berth(["snapshots", "ls", "-q"])).stdout.trim().split("\n");
      const chain = chainIds([layer1.diffId, layer2.diffId, layer3.diffId]);
      assert.deepEqual(snaps.sort(), [...chain].sort());
    });

    await t.step("a diffID mismatch: no image, no snapshot from that layer up", async () => {
      ok(await d.berth(["rmi", ref]));
      const r = await d.berth(["pull", "-q", `${env.host}/par-bad:v1`]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /diffID sha256:[0-9a-f]{64} does not match/);
      assert.doesNotMatch(ok(await d.berth(["images", "-q"])).stdout, /par-bad/);
      const snaps = ok(await d.berth(["snapshots", "ls", "-q"])).stdout.trim().split("\n");
      const badChain = chainIds(
        [layer1.diffId, `sha256:${"e".repeat(64)}`, layer3.diffId],
      );
      for (const c of badChain.slice(1)) assert.ok(!snaps.includes(c), `${c} committed`);
      assert.ok(!snaps.some((s) => s.startsWith("extract-")), `left: ${snaps.join(" ")}`);
      // The daemon still serves, and the good image pulls again.
      ok(await d.berth(["pull", "-q", ref]));
    });
  },
});
