import assert from "node:assert/strict";
import { isKind } from "../core/errdefs.ts";
import { exportImages } from "./export.ts";
import { blobPath, tarHeader } from "./layout.ts";
import { buildIndexImage, collect, openStores, readTar, sha256 } from "./layout_fixtures.ts";
import { TarReader } from "../archive/tar_reader.ts";

const NS = "exp";
const NAME = "docker.io/library/hello:1.0";
const ALL = ["linux/amd64", "linux/arm64/v8"];

Deno.test("export writes an OCI layout with every reachable blob once", async () => {
  await using s = await openStores();
  const { index, manifests } = await buildIndexImage(s, NS, NAME, ALL);
  // A second name for the same image: one more index.json entry, no blob twice.
  s.images.create(NS, { name: "docker.io/library/hello:latest", target: index });
  const tar = readTar(
    await collect(
      await exportImages(s, NS, [NAME, "docker.io/library/hello:latest"]),
    ),
  );
  assert.deepEqual(JSON.parse(new TextDecoder().decode(tar.get("oci-layout"))), {
    imageLayoutVersion: "1.0.0",
  });
  const idx = JSON.parse(new TextDecoder().decode(tar.get("index.json")));
  assert.equal(idx.mediaType, "application/vnd.oci.image.index.v1+json");
  assert.deepEqual(
    idx.manifests.map((m: { digest: string; annotations: Record<string, string> }) => [
      m.digest,
      m.annotations,
    ]),
    [
      [index.digest, {
        "io.containerd.image.name": NAME,
        "org.opencontainers.image.ref.name": "1.0",
      }],
      [index.digest, {
        "io.containerd.image.name": "docker.io/library/hello:latest",
        "org.opencontainers.image.ref.name": "latest",
      }],
    ],
  );
  const want = new Set([index.digest]);
  for (const m of manifests.values()) {
    for (const d of [m.manifest, m.config, ...m.layers]) want.add(d.digest);
  }
  const blobs = [...tar.keys()].filter((k) => k.startsWith("blobs/sha256/") && k.length > 13);
  assert.deepEqual(new Set(blobs), new Set([...want].map(blobPath)));
  assert.equal(blobs.length, want.size, "each blob once");
  for (const b of blobs) assert.equal(sha256(tar.get(b)!), `sha256:${b.slice(13)}`);
});

Deno.test("export with a platform list holds only those manifests, the index kept as is", async () => {
  await using s = await openStores();
  const { index, manifests } = await buildIndexImage(s, NS, NAME, ALL);
  const tar = readTar(
    await collect(await exportImages(s, NS, [NAME], { platforms: ["linux/arm64/v8"] })),
  );
  const arm = manifests.get("linux/arm64/v8")!;
  const amd = manifests.get("linux/amd64")!;
  assert.ok(tar.has(blobPath(index.digest)));
  for (const d of [arm.manifest, arm.config, ...arm.layers]) assert.ok(tar.has(blobPath(d.digest)));
  for (const d of [amd.manifest, amd.config, ...amd.layers]) {
    assert.ok(!tar.has(blobPath(d.digest)), `${d.digest} of amd64 left out`);
  }
  await assert.rejects(
    exportImages(s, NS, [NAME], { platforms: ["linux/s390x"] }),
    (e) => isKind(e, "not_found") && /platforms asked for/.test((e as Error).message),
  );
});

Deno.test("export in docker format adds manifest.json for the host platform", async () => {
  await using s = await openStores();
  const { manifests } = await buildIndexImage(s, NS, NAME, ALL);
  const tar = readTar(await collect(await exportImages(s, NS, [NAME], { format: "docker" })));
  const amd = manifests.get("linux/amd64")!;
  const mj = JSON.parse(new TextDecoder().decode(tar.get("manifest.json"))) as Array<
    { Config: string; Layers: string[] }
  >;
  assert.deepEqual(mj, [{
    Config: blobPath(amd.config.digest),
    RepoTags: ["hello:1.0"],
    Layers: amd.layers.map((l) => blobPath(l.digest)),
  }]);
  for (const p of [mj[0]!.Config, ...mj[0]!.Layers]) assert.ok(tar.has(p), p);
});

Deno.test("export finds an image by its short name and refuses unknown ones before streaming", async () => {
  await using s = await openStores();
  await buildIndexImage(s, NS, NAME, ALL);
  const tar = readTar(await collect(await exportImages(s, NS, ["hello:1.0"])));
  assert.ok(tar.has("index.json"));
  await assert.rejects(
    exportImages(s, NS, ["nope:latest"]),
    (e) => isKind(e, "not_found") && /image "nope:latest"/.test((e as Error).message),
  );
  await assert.rejects(exportImages(s, NS, []), (e) => isKind(e, "invalid_argument"));
  await assert.rejects(
    exportImages(s, NS, [NAME], { format: "zip" as "oci" }),
    (e) => isKind(e, "invalid_argument") && /format "zip"/.test((e as Error).message),
  );
});

Deno.test("export reports a missing layer naming the image and the digest", async () => {
  await using s = await openStores();
  const { manifests } = await buildIndexImage(s, NS, NAME, ALL);
  const layer = manifests.get("linux/amd64")!.layers[1]!;
  s.content.delete(NS, layer.digest);
  await assert.rejects(
    exportImages(s, NS, [NAME]),
    (e) =>
      isKind(e, "not_found") &&
      (e as Error).message.includes(`Cannot export image "${NAME}"`) &&
      (e as Error).message.includes(layer.digest),
  );
});

Deno.test("tar headers of big blobs use base-256 sizes that a tar reader reads back", () => {
  const size = 9 * 1024 ** 3;
  const h = tarHeader("blobs/sha256/" + "a".repeat(64), { size });
  let got = -1;
  const r = new TarReader({ entry: (e) => (got = e.size), data: () => {}, end: () => {} });
  r.push(h);
  assert.equal(got, size);
});
