/**
 * Pulls against the shared reference environment (../shared/refenv): its
 * scripts build every refenv image and push it to a registry of this test's
 * own (private REFENV_DIR and ports). Shown here:
 *
 * - `berth pull` of `layers` unpacks to exactly what refenv's verify-unpack
 *   expects (the listing umoci and containerd produce), with both snapshotters;
 * - `ctr images pull --plain-http` against berth (client-side: content,
 *   leases, diff and snapshots services) works for every refenv image, its
 *   `layers` rootfs verifies too, and `ctr images ls`, `ctr snapshots ls`,
 *   `ctr content ls` agree with `berth images`, `berth snapshots ls`,
 *   `berth content ls`, also after `ctr images rm --sync`.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ok, run, startDaemon, type TestDaemon } from "./_harness.ts";
import { freePort } from "./_registry.ts";

/** ../shared/refenv beside the repo (BERTH_REFENV overrides). */
const REFENV = Deno.env.get("BERTH_REFENV") ??
  fileURLToPath(new URL("../../shared/refenv/", import.meta.url));
const IMAGES = ["busybox", "layers", "big", "multi", "v2s2", "zstd", "pause"];

const lines = (s: string) =>
  s.trim().split("\n").map((l) => l.trim()).filter((l) => l !== "").sort();

/** Mounts `image` with berth and runs verify-unpack on it; returns its output on failure. */
async function verifyUnpack(
  d: TestDaemon,
  env: Record<string, string>,
  tmp: string,
  image: string,
  snapshotter: string,
  ns = "default",
): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: tmp, prefix: `rootfs-${snapshotter}-` });
  ok(await d.berth(["-n", ns, "mount", "--snapshotter", snapshotter, image, dir]), "berth mount");
  try {
    const v = await run(`${REFENV}/verify-unpack`, [dir], { env });
    assert.equal(v.code, 0, `${snapshotter} rootfs of ${image} differs:\n${v.stdout}${v.stderr}`);
  } finally {
    ok(await d.berth(["-n", ns, "unmount", "--snapshotter", snapshotter, dir]), "berth unmount");
  }
}

/** What berth and ctr each list in namespace `ns`, compared. */
async function assertAgree(d: TestDaemon, ns: string): Promise<void> {
  const images = lines(ok(await d.berth(["-n", ns, "images", "-q"])).stdout);
  assert.deepEqual(lines(ok(await d.ctr(["-n", ns, "images", "ls", "-q"])).stdout), images);
  const snaps = lines(ok(await d.berth(["-n", ns, "snapshots", "ls", "-q"])).stdout);
  const ctrSnaps = lines(ok(await d.ctr(["-n", ns, "snapshots", "ls"])).stdout)
    .filter((l) => !l.startsWith("KEY")).map((l) => l.split(/\s+/)[0]!).sort();
  assert.deepEqual(ctrSnaps, snaps);
  const content = lines(ok(await d.berth(["-n", ns, "content", "ls", "-q"])).stdout);
  assert.deepEqual(lines(ok(await d.ctr(["-n", ns, "content", "ls", "-q"])).stdout), content);
}

Deno.test({
  name: "refenv: berth pull and ctr pull of every refenv image; verify-unpack of layers",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    assert.ok(existsSync(`${REFENV}/images`), `refenv scripts not found at ${REFENV}`);
    const tmp = await Deno.makeTempDir({ prefix: "berth-refenv-pull-" });
    const port = freePort();
    const env = {
      REFENV_DIR: `${tmp}/refenv`,
      REFENV_REGISTRY_PORT: String(port),
      REFENV_REGISTRY_AUTH_PORT: String(freePort()),
      REFENV_BIG_MB: Deno.env.get("BERTH_REFENV_BIG_MB") ?? "40",
    };
    const ref = (n: string) => `localhost:${port}/${n}:latest`;
    try {
      const built = await run(`${REFENV}/images`, ["all"], { env });
      assert.equal(built.code, 0, `refenv images failed:\n${built.stdout}${built.stderr}`);
      await using d = await startDaemon({ logLevel: "info" });

      await t.step("berth pull of layers matches verify-unpack (overlayfs, native)", async () => {
        ok(await d.berth(["pull", "-q", ref("layers")]), "berth pull layers");
        ok(await d.berth(["pull", "-q", "--snapshotter", "native", ref("layers")]));
        await verifyUnpack(d, env, tmp, ref("layers"), "overlayfs");
        await verifyUnpack(d, env, tmp, ref("layers"), "native");
      });

      await t.step("berth pull of every refenv image", async () => {
        for (const n of IMAGES) ok(await d.berth(["pull", "-q", ref(n)]), `berth pull ${n}`);
        assert.deepEqual(
          lines(ok(await d.berth(["images", "-q"])).stdout),
          IMAGES.map(ref).sort(),
        );
        await assertAgree(d, "default");
      });

      await t.step("ctr images pull --plain-http against berth, for every image", async () => {
        // A daemon of its own, so ctr fetches and unpacks everything itself.
        await using c = await startDaemon({ logLevel: "info" });
        for (const n of IMAGES) {
          const r = await c.ctr(["-n", "ctr", "images", "pull", "--plain-http", ref(n)]);
          assert.equal(r.code, 0, `ctr pull ${n}:\n${r.stdout}${r.stderr}`);
          assert.match(r.stdout, /done/);
        }
        assert.deepEqual(
          lines(ok(await c.berth(["-n", "ctr", "images", "-q"])).stdout),
          IMAGES.map(ref).sort(),
        );
        await assertAgree(c, "ctr");
        // ctr's client-side unpack gives the same rootfs.
        await verifyUnpack(c, env, tmp, ref("layers"), "overlayfs", "ctr");
        // ctr images rm --sync: gone for berth too, content and snapshots collected.
        const before = lines(ok(await c.berth(["-n", "ctr", "content", "ls", "-q"])).stdout);
        ok(await c.ctr(["-n", "ctr", "images", "rm", "--sync", ref("big")]), "ctr images rm");
        assert.ok(!ok(await c.berth(["-n", "ctr", "images", "-q"])).stdout.includes(ref("big")));
        const after = lines(ok(await c.berth(["-n", "ctr", "content", "ls", "-q"])).stdout);
        assert.ok(after.length < before.length, "big's blobs were collected");
        await assertAgree(c, "ctr");
        // And the other way round: berth rmi, seen by ctr.
        ok(await c.berth(["-n", "ctr", "rmi", ...IMAGES.filter((n) => n !== "big").map(ref)]));
        assert.deepEqual(lines(ok(await c.ctr(["-n", "ctr", "images", "ls", "-q"])).stdout), []);
        assert.deepEqual(lines(ok(await c.ctr(["-n", "ctr", "content", "ls", "-q"])).stdout), []);
        assert.deepEqual(
          lines(ok(await c.ctr(["-n", "ctr", "snapshots", "ls"])).stdout).filter((l) =>
            !l.startsWith("KEY")
          ),
          [],
        );
      });
    } finally {
      await run(`${REFENV}/registry`, ["stop"], { env });
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
});
