/**
 * Layer apply against the shared reference environment: builds the refenv
 * `layers` and `zstd` images (OCI layouts) with its own scripts on a private
 * REFENV_DIR and registry port, applies the layers in both modes and checks
 * the unpacked rootfs with refenv's verify-unpack (the listing umoci and
 * containerd produce for the same image).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { applyLayer } from "../src/archive/apply.ts";
import { cstr, libc } from "../src/sys/libc.ts";
import { run } from "./_harness.ts";

/** ../shared/refenv beside the repo (BERTH_REFENV overrides). */
const REFENV = Deno.env.get("BERTH_REFENV") ??
  fileURLToPath(new URL("../../shared/refenv/", import.meta.url));

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

interface Layout {
  layers: { digest: string; mediaType: string }[];
  diffIds: string[];
  blob: (digest: string) => string;
}

function readLayout(dir: string): Layout {
  const blob = (d: string) => `${dir}/blobs/sha256/${d.replace(/^sha256:/, "")}`;
  const index = JSON.parse(Deno.readTextFileSync(`${dir}/index.json`));
  const manifest = JSON.parse(Deno.readTextFileSync(blob(index.manifests[0].digest)));
  const config = JSON.parse(Deno.readTextFileSync(blob(manifest.config.digest)));
  return { layers: manifest.layers, diffIds: config.rootfs.diff_ids, blob };
}

async function applyFile(path: string, dir: string, opts: Parameters<typeof applyLayer>[2]) {
  using f = await Deno.open(path);
  return await applyLayer(f.readable, dir, opts);
}

Deno.test({
  name: "archive: refenv layers image unpacks exactly (native and overlay), zstd layer too",
  sanitizeResources: false,
  async fn() {
    assert.ok(existsSync(`${REFENV}/images`), `refenv scripts not found at ${REFENV}`);
    const tmp = await Deno.makeTempDir({ prefix: "berth-refenv-archive-" });
    const env = {
      REFENV_DIR: `${tmp}/refenv`,
      REFENV_REGISTRY_PORT: String(freePort()),
      REFENV_REGISTRY_AUTH_PORT: String(freePort()),
    };
    const merged = `${tmp}/merged`;
    try {
      const built = await run(`${REFENV}/images`, ["layers", "zstd"], { env });
      assert.equal(built.code, 0, `refenv images failed:\n${built.stderr}`);
      const layers = readLayout(`${env.REFENV_DIR}/oci/layers`);
      assert.equal(layers.layers.length, 5);

      // native: all layers into one directory
      const native = `${tmp}/native`;
      await Deno.mkdir(native);
      for (const [i, l] of layers.layers.entries()) {
        const r = await applyFile(layers.blob(l.digest), native, { mode: "native" });
        assert.equal(r.diffId, layers.diffIds[i], `diffID of layer ${i}`);
      }
      const vn = await run(`${REFENV}/verify-unpack`, [native], { env });
      assert.equal(vn.code, 0, `native rootfs differs:\n${vn.stdout}${vn.stderr}`);

      // overlay: one upper dir per layer, stacked by a real overlay mount
      const lowers: string[] = [];
      for (const [i, l] of layers.layers.entries()) {
        const dir = `${tmp}/overlay/${i}`;
        await Deno.mkdir(dir, { recursive: true });
        await applyFile(layers.blob(l.digest), dir, {
          mode: "overlay",
          parents: [...lowers].reverse(),
          expectedDiffId: layers.diffIds[i]!,
        });
        lowers.push(dir);
      }
      await Deno.mkdir(merged);
      const opts = `lowerdir=${[...lowers].reverse().join(":")}`;
      const m = libc().mount(cstr("overlay"), cstr(merged), cstr("overlay"), 1n, cstr(opts));
      assert.equal(m, 0, "overlay mount");
      try {
        const vo = await run(`${REFENV}/verify-unpack`, [merged], { env });
        assert.equal(vo.code, 0, `overlay rootfs differs:\n${vo.stdout}${vo.stderr}`);
      } finally {
        libc().umount2(cstr(merged), 2);
      }

      // zstd: the busybox layer recompressed; same diffID, same tree as gzip
      const zstd = readLayout(`${env.REFENV_DIR}/oci/zstd`);
      const gzip = readLayout(`${env.REFENV_DIR}/oci/busybox`);
      assert.equal(zstd.layers[0]!.mediaType, "application/vnd.oci.image.layer.v1.tar+zstd");
      const zdir = `${tmp}/zstd`;
      const gdir = `${tmp}/gzip`;
      await Deno.mkdir(zdir);
      await Deno.mkdir(gdir);
      const rz = await applyFile(zstd.blob(zstd.layers[0]!.digest), zdir, {
        expectedDiffId: zstd.diffIds[0]!,
      });
      const rg = await applyFile(gzip.blob(gzip.layers[0]!.digest), gdir, {});
      assert.equal(rz.diffId, rg.diffId);
      const pz = await run(`${REFENV}/verify-unpack`, ["--print", zdir], { env });
      const pg = await run(`${REFENV}/verify-unpack`, ["--print", gdir], { env });
      assert.equal(pz.stdout, pg.stdout);
      assert.match(pz.stdout, /\nbin\/busybox\tf\t0755\t0\t0\t/);
    } finally {
      await run(`${REFENV}/registry`, ["stop"], { env });
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
});
