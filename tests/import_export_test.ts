/**
 * Import and export against the real tools: archives skopeo writes import
 * correctly, and archives berth writes are read by skopeo and by the
 * reference containerd's `ctr images import` (and what `ctr images export`
 * writes imports into berth with the same digests).
 */
import assert from "node:assert/strict";
import { exportImages } from "../src/images/export.ts";
import { importImages } from "../src/images/import.ts";
import {
  buildIndexImage,
  collect,
  contentSnapshot,
  openStores,
  sha256,
} from "../src/images/layout_fixtures.ts";
import { hostPlatform } from "../src/oci/platforms.ts";
import { ok, run } from "./_harness.ts";

const NS = "e2e";
const NAME = "docker.io/library/hello:1.0";
const HOST = `${hostPlatform().os}/${hostPlatform().architecture}`;
const OTHER = HOST === "linux/amd64" ? "linux/arm64/v8" : "linux/amd64";

/** A temp dir holding an exported archive (`hello.tar`) and its extracted layout (`oci/`). */
async function exportFixture(format: "oci" | "docker" = "oci") {
  const dir = await Deno.makeTempDir({ prefix: "berth-ie-" });
  const src = await openStores("berth-ie-src-");
  const built = await buildIndexImage(src, NS, NAME, [HOST, OTHER]);
  const tar = await collect(await exportImages(src, NS, [NAME], { format }));
  await Deno.writeFile(`${dir}/hello.tar`, tar);
  await Deno.mkdir(`${dir}/oci`);
  ok(await run("tar", ["-xf", `${dir}/hello.tar`, "-C", `${dir}/oci`]), "tar -x");
  return {
    dir,
    src,
    ...built,
    tar,
    async [Symbol.asyncDispose]() {
      await src[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function importFile(path: string, opts: Parameters<typeof importImages>[3] = {}) {
  const dst = await openStores("berth-ie-dst-");
  const file = await Deno.open(path);
  const res = await importImages(dst, NS, file.readable, opts);
  return { dst, res };
}

Deno.test("skopeo reads berth's OCI archive: the index as exported, the host image's layers", async () => {
  await using fx = await exportFixture();
  const r = ok(await run("skopeo", ["inspect", "--raw", `oci-archive:${fx.dir}/hello.tar:1.0`]));
  assert.equal(sha256(r.stdout), fx.index.digest, "skopeo sees the index as exported");
  const i = ok(await run("skopeo", ["inspect", `oci-archive:${fx.dir}/hello.tar:1.0`]));
  const info = JSON.parse(i.stdout);
  const host = fx.manifests.get(HOST)!;
  assert.equal(info.Digest, fx.index.digest);
  assert.deepEqual(info.Layers, host.layers.map((l) => l.digest));
  assert.equal(info.Architecture, hostPlatform().architecture);
});

Deno.test("an oci-archive written by skopeo imports with every digest kept", async () => {
  await using fx = await exportFixture();
  const out = `${fx.dir}/skopeo-oci.tar`;
  ok(
    await run("skopeo", [
      "copy",
      "--all",
      `oci:${fx.dir}/oci:1.0`,
      `oci-archive:${out}:example.com/hello:2.0`,
    ]),
  );
  const { dst, res } = await importFile(out);
  await using _ = dst;
  assert.deepEqual(res.images.map((x) => x.image.name), ["example.com/hello:2.0"]);
  assert.equal(res.images[0]!.image.target.digest, fx.index.digest);
  assert.deepEqual(contentSnapshot(dst.content, NS), contentSnapshot(fx.src.content, NS));
  assert.deepEqual(res.images[0]!.manifests.map((m) => m.digest), [
    fx.manifests.get(HOST)!.manifest.digest,
  ]);
});

Deno.test("a docker-archive written by skopeo imports as a schema2 image with the right name", async () => {
  await using fx = await exportFixture();
  const out = `${fx.dir}/skopeo-docker.tar`;
  ok(await run("skopeo", ["copy", `oci:${fx.dir}/oci:1.0`, `docker-archive:${out}:hello:1.0`]));
  const { dst, res } = await importFile(out);
  await using _ = dst;
  assert.equal(res.format, "docker");
  const img = res.images[0]!.image;
  assert.equal(img.name, NAME);
  assert.equal(img.target.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
  const manifest = JSON.parse(
    new TextDecoder().decode(await collect(dst.content.read(NS, img.target.digest))),
  );
  const host = fx.manifests.get(HOST)!;
  // skopeo keeps the config and stores layers uncompressed: digests are the diff_ids.
  assert.equal(manifest.config.digest, host.config.digest);
  assert.deepEqual(
    manifest.layers.map((l: { digest: string }) => l.digest),
    host.tars.map((t) => sha256(t)),
  );
  assert.deepEqual(res.images[0]!.manifests.map((m) => m.digest), [img.target.digest]);
});

Deno.test("skopeo reads berth's docker-format archive through manifest.json", async () => {
  await using fx = await exportFixture("docker");
  const i = ok(await run("skopeo", ["inspect", `docker-archive:${fx.dir}/hello.tar`]));
  const info = JSON.parse(i.stdout);
  assert.equal(info.Architecture, hostPlatform().architecture);
  const tags = ok(await run("skopeo", ["list-tags", `docker-archive:${fx.dir}/hello.tar`]));
  assert.deepEqual(JSON.parse(tags.stdout).Tags, ["hello:1.0"]);
  const cfg = ok(
    await run("skopeo", ["inspect", "--config", "--raw", `docker-archive:${fx.dir}/hello.tar`]),
  );
  assert.equal(sha256(cfg.stdout), fx.manifests.get(HOST)!.config.digest);
});

/** The reference containerd on a private state dir, stopped on dispose. */
async function referenceContainerd() {
  const dir = await Deno.makeTempDir({ prefix: "berth-ie-ctrd-" });
  const env = { ...Deno.env.toObject(), REFENV_DIR: dir };
  const script = "/work/shared/refenv/containerd";
  ok(await run(script, ["start"], { env }), "containerd start");
  return {
    ctr: (args: string[]) => run(script, ["ctr", ...args], { env }),
    async [Symbol.asyncDispose]() {
      await run(script, ["stop"], { env });
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

Deno.test("containerd's ctr imports berth's archive, and berth imports ctr's export", async () => {
  await using fx = await exportFixture();
  await using cd = await referenceContainerd();
  ok(await cd.ctr(["-n", "ie", "images", "import", "--all-platforms", `${fx.dir}/hello.tar`]));
  const ls = ok(await cd.ctr(["-n", "ie", "images", "ls"]));
  const row = ls.stdout.split("\n").find((l) => l.startsWith(NAME + " "));
  assert.ok(row, `ctr images ls lists ${NAME}:\n${ls.stdout}`);
  assert.ok(row.includes(fx.index.digest), row);
  // Its unpack ran from our blobs: the host image is unpacked into overlayfs.
  const check = ok(await cd.ctr(["-n", "ie", "images", "check"]));
  assert.match(check.stdout, /complete \(3\/3\).* true\s*$/m);

  const out = `${fx.dir}/ctr-export.tar`;
  ok(await cd.ctr(["-n", "ie", "images", "export", "--all-platforms", out, NAME]));
  const { dst, res } = await importFile(out);
  await using _ = dst;
  assert.deepEqual(res.images.map((x) => x.image.name), [NAME]);
  assert.equal(res.images[0]!.image.target.digest, fx.index.digest);
  assert.deepEqual(contentSnapshot(dst.content, NS), contentSnapshot(fx.src.content, NS));

  // ctr's default export holds the host platform only (and a manifest.json).
  const hostOnly = `${fx.dir}/ctr-export-host.tar`;
  ok(await cd.ctr(["-n", "ie", "images", "export", hostOnly, NAME]));
  const { dst: dst2, res: res2 } = await importFile(hostOnly);
  await using _2 = dst2;
  assert.equal(res2.images[0]!.image.target.digest, fx.index.digest);
  assert.deepEqual(res2.images[0]!.manifests.map((m) => m.digest), [
    fx.manifests.get(HOST)!.manifest.digest,
  ]);
  assert.ok(!dst2.content.visible(NS, fx.manifests.get(OTHER)!.manifest.digest));
});

Deno.test("containerd's ctr imports berth's docker-format archive and unpacks it", async () => {
  await using fx = await exportFixture("docker");
  await using cd = await referenceContainerd();
  ok(await cd.ctr(["-n", "ie", "images", "import", `${fx.dir}/hello.tar`]));
  const check = ok(await cd.ctr(["-n", "ie", "images", "check"]));
  const row = check.stdout.split("\n").find((l) => l.startsWith(NAME + " "));
  assert.ok(row, check.stdout);
  assert.ok(row.includes(fx.index.digest), row);
  assert.match(row, /complete \(3\/3\).* true\s*$/);
});

Deno.test("a docker-archive gets the same synthesized manifest digest in berth as in containerd", async () => {
  await using fx = await exportFixture();
  const out = `${fx.dir}/skopeo-docker.tar`;
  ok(await run("skopeo", ["copy", `oci:${fx.dir}/oci:1.0`, `docker-archive:${out}:hello:1.0`]));
  const { dst, res } = await importFile(out);
  await using _ = dst;
  await using cd = await referenceContainerd();
  ok(await cd.ctr(["-n", "ie", "images", "import", out]));
  const ls = ok(await cd.ctr(["-n", "ie", "images", "ls"]));
  const row = ls.stdout.split("\n").find((l) => l.startsWith(NAME + " "));
  assert.ok(row, ls.stdout);
  assert.ok(
    row.includes(res.images[0]!.image.target.digest),
    `${row}\nberth: ${res.images[0]!.image.target.digest}`,
  );
});
