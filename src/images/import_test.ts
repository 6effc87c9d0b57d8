import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { buildTar, type TarWriteEntry } from "../archive/tar_writer.ts";
import { isKind } from "../core/errdefs.ts";
import { hostPlatform } from "../oci/platforms.ts";
import { exportImages } from "./export.ts";
import { importImages } from "./import.ts";
import { blobPath } from "./layout.ts";
import {
  buildIndexImage,
  buildManifest,
  chunked,
  collect,
  contentSnapshot,
  enc,
  layerTar,
  openStores,
  readTar,
  sha256,
  type TestStores,
} from "./layout_fixtures.ts";

const NS = "imp";
const NAME = "docker.io/library/hello:1.0";
const ALL = ["linux/amd64", "linux/arm64/v8"];
const GC = "containerd.io/gc.ref.content";

/** Exports NAME from a store holding a two-platform image. */
async function exported(opts: Parameters<typeof exportImages>[3] = {}) {
  await using src = await openStores("berth-export-");
  const built = await buildIndexImage(src, NS, NAME, ALL);
  const tar = await collect(await exportImages(src, NS, [NAME], opts));
  return { ...built, tar, digests: contentSnapshot(src.content, NS) };
}

/** Asserts that nothing was recorded in `ns`. */
function assertEmpty(s: TestStores, ns = NS): void {
  assert.deepEqual(s.images.list(ns), []);
  assert.deepEqual(s.content.list(ns).map((i) => i.digest), []);
}

/** The tar entries of an archive, to rebuild variants of it. */
function entriesOf(tar: Uint8Array): TarWriteEntry[] {
  return [...readTar(tar)].map(([name, data]) =>
    name.endsWith("/") ? { name, type: "dir" } : { name, type: "file", data }
  );
}

Deno.test("export then import into a fresh store keeps every digest and labels the children", async () => {
  const { index, manifests, tar, digests } = await exported();
  await using dst = await openStores();
  const res = await importImages(dst, NS, chunked(tar, 777));
  assert.equal(res.format, "oci");
  assert.equal(res.images.length, 1);
  const img = res.images[0]!;
  assert.equal(img.image.name, NAME);
  assert.equal(img.image.target.digest, index.digest);
  assert.equal(img.image.target.mediaType, "application/vnd.oci.image.index.v1+json");
  assert.deepEqual(contentSnapshot(dst.content, NS), digests);
  // Unpack the host's platform only.
  const host = `${hostPlatform().os}/${hostPlatform().architecture}`;
  assert.deepEqual(img.manifests.map((m) => m.digest), [manifests.get(host)!.manifest.digest]);
  // GC labels: index -> manifests, manifest -> config and layers.
  const idxLabels = dst.content.info(NS, index.digest).labels;
  assert.deepEqual(idxLabels, {
    [`${GC}.m.0`]: manifests.get("linux/amd64")!.manifest.digest,
    [`${GC}.m.1`]: manifests.get("linux/arm64/v8")!.manifest.digest,
  });
  const arm = manifests.get("linux/arm64/v8")!;
  assert.deepEqual(dst.content.info(NS, arm.manifest.digest).labels, {
    [`${GC}.config`]: arm.config.digest,
    [`${GC}.l.0`]: arm.layers[0]!.digest,
    [`${GC}.l.1`]: arm.layers[1]!.digest,
  });
  // Importing again updates the image in place.
  const again = await importImages(dst, NS, chunked(tar, 1 << 16), { allPlatforms: true });
  assert.equal(again.images[0]!.image.createdAt.getTime(), img.image.createdAt.getTime());
  assert.equal(again.images[0]!.manifests.length, 2);
});

Deno.test("an archive exported for one platform imports, the other platform absent", async () => {
  const { index, manifests, tar } = await exported({ platforms: ["linux/arm64/v8"] });
  await using dst = await openStores();
  const res = await importImages(dst, NS, chunked(tar), { platforms: ["linux/arm64/v8"] });
  assert.equal(res.images[0]!.image.target.digest, index.digest);
  assert.deepEqual(
    res.images[0]!.manifests.map((m) => m.digest),
    [manifests.get("linux/arm64/v8")!.manifest.digest],
  );
  assert.ok(!dst.content.visible(NS, manifests.get("linux/amd64")!.manifest.digest));
});

Deno.test("a gzip-compressed archive imports too", async () => {
  const { index, tar } = await exported();
  await using dst = await openStores();
  const res = await importImages(dst, NS, chunked(gzipSync(tar), 4096));
  assert.equal(res.images[0]!.image.target.digest, index.digest);
});

Deno.test("bare ref.name tags get the base name; without one the import names nothing", async () => {
  await using src = await openStores("berth-export-");
  const m = await buildManifest(src.content, NS, "linux/amd64");
  const blobs = [m.manifest, m.config, ...m.layers];
  const entries: TarWriteEntry[] = [
    { name: "oci-layout", type: "file", data: '{"imageLayoutVersion":"1.0.0"}' },
    {
      name: "index.json",
      type: "file",
      data: JSON.stringify({
        schemaVersion: 2,
        manifests: [
          { ...m.manifest, annotations: { "org.opencontainers.image.ref.name": "v2" } },
          {
            ...m.manifest,
            annotations: { "org.opencontainers.image.ref.name": "quay.io/x/y:z" },
          },
        ],
      }),
    },
  ];
  for (const d of blobs) {
    entries.push({
      name: blobPath(d.digest),
      type: "file",
      data: await collect(src.content.read(NS, d.digest)),
    });
  }
  const tar = buildTar(entries);
  await using dst = await openStores();
  const res = await importImages(dst, NS, chunked(tar), { baseName: "example.com/base" });
  assert.deepEqual(res.images.map((i) => i.image.name), [
    "example.com/base:v2",
    "quay.io/x/y:z",
  ]);
  await using dst2 = await openStores();
  const res2 = await importImages(dst2, NS, chunked(tar));
  assert.deepEqual(res2.images.map((i) => i.image.name), ["quay.io/x/y:z"]);
  assert.equal(res2.unnamed.length, 1);
});

/** A classic `docker save` archive of two images sharing their first layer. */
function dockerSave(): { tar: Uint8Array; config: Uint8Array; layers: Uint8Array[] } {
  const layers = [layerTar({ "etc/hostname": "base\n" }), layerTar({ "bin/app": "app\n" })];
  const config = enc.encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    config: { Cmd: ["/bin/app"] },
    rootfs: { type: "layers", diff_ids: layers.map((l) => sha256(l)) },
  }));
  const config2 = enc.encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    rootfs: { type: "layers", diff_ids: [sha256(layers[0]!)] },
  }));
  const hex = sha256(config).slice(7);
  const hex2 = sha256(config2).slice(7);
  const id1 = "1".repeat(64);
  const id2 = "2".repeat(64);
  const id3 = "3".repeat(64);
  const tar = buildTar([
    { name: `${id1}/`, type: "dir" },
    { name: `${id1}/VERSION`, type: "file", data: "1.0" },
    { name: `${id1}/json`, type: "file", data: `{"id":"${id1}"}` },
    { name: `${id1}/layer.tar`, type: "file", data: layers[0]! },
    { name: `${id2}/`, type: "dir" },
    { name: `${id2}/layer.tar`, type: "file", data: layers[1]! },
    { name: `${id3}/`, type: "dir" },
    // docker save links a layer that two images share.
    { name: `${id3}/layer.tar`, type: "symlink", linkname: `../${id1}/layer.tar` },
    { name: `${hex}.json`, type: "file", data: config },
    { name: `${hex2}.json`, type: "file", data: config2 },
    {
      name: "manifest.json",
      type: "file",
      data: JSON.stringify([
        {
          Config: `${hex}.json`,
          RepoTags: ["busybox:latest", "localhost:5000/bb:1"],
          Layers: [`${id1}/layer.tar`, `${id2}/layer.tar`],
        },
        { Config: `${hex2}.json`, RepoTags: ["base:v1"], Layers: [`${id3}/layer.tar`] },
      ]),
    },
    { name: "repositories", type: "file", data: `{"busybox":{"latest":"${id2}"}}` },
  ]);
  return { tar, config, layers };
}

Deno.test("a docker save archive imports with normalized names and a schema2 manifest", async () => {
  const { tar, config, layers } = dockerSave();
  await using dst = await openStores();
  const res = await importImages(dst, NS, chunked(tar, 300));
  assert.equal(res.format, "docker");
  assert.deepEqual(res.images.map((i) => i.image.name), [
    "docker.io/library/busybox:latest",
    "localhost:5000/bb:1",
    "docker.io/library/base:v1",
  ]);
  const target = res.images[0]!.image.target;
  assert.equal(target.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
  const manifestBytes = await collect(dst.content.read(NS, target.digest));
  assert.equal(sha256(manifestBytes), target.digest);
  const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  assert.deepEqual(manifest, {
    schemaVersion: 2,
    mediaType: "application/vnd.docker.distribution.manifest.v2+json",
    config: {
      mediaType: "application/vnd.docker.container.image.v1+json",
      digest: sha256(config),
      size: config.length,
    },
    layers: layers.map((l) => ({
      mediaType: "application/vnd.docker.image.rootfs.diff.tar",
      digest: sha256(l),
      size: l.length,
    })),
  });
  assert.deepEqual(dst.content.info(NS, target.digest).labels, {
    [`${GC}.config`]: sha256(config),
    [`${GC}.l.0`]: sha256(layers[0]!),
    [`${GC}.l.1`]: sha256(layers[1]!),
  });
  assert.deepEqual(res.images[0]!.manifests, [{
    mediaType: target.mediaType,
    digest: target.digest,
    size: target.size,
  }]);
  // Only blobs of the images are kept: not the v1 json, VERSION or repositories files.
  const kept = new Set(dst.content.list(NS).map((i) => i.digest));
  assert.ok(!kept.has(sha256(`{"id":"${"1".repeat(64)}"}`)));
  assert.equal(kept.size, 6); // 2 configs, 2 layers (one shared), 2 synthesized manifests
});

Deno.test("a docker save archive in the blobs/sha256 layout with gzip layers imports", async () => {
  await using src = await openStores("berth-export-");
  const m = await buildManifest(src.content, NS, "linux/amd64", { docker: true });
  const entries: TarWriteEntry[] = [];
  for (const d of [m.config, ...m.layers]) {
    entries.push({
      name: blobPath(d.digest),
      type: "file",
      data: await collect(src.content.read(NS, d.digest)),
    });
  }
  entries.push({
    name: "manifest.json",
    type: "file",
    data: JSON.stringify([{
      Config: blobPath(m.config.digest),
      RepoTags: ["hello:2"],
      Layers: m.layers.map((l) => blobPath(l.digest)),
    }]),
  });
  await using dst = await openStores();
  const res = await importImages(dst, NS, chunked(buildTar(entries)));
  const img = res.images[0]!.image;
  assert.equal(img.name, "docker.io/library/hello:2");
  // Same bytes as the docker manifest built by hand: same digest.
  assert.equal(img.target.digest, m.manifest.digest);
});

Deno.test("malformed archives are refused with a clear error and nothing recorded", async (t) => {
  const { tar, manifests } = await exported();
  const entries = entriesOf(tar);
  const amd = manifests.get("linux/amd64")!;
  const cases: Array<[string, Uint8Array, RegExp]> = [
    [
      "no index.json",
      buildTar(entries.filter((e) => e.name !== "index.json")),
      /neither index\.json \(OCI image layout\) nor manifest\.json/,
    ],
    [
      "a blob that does not match its digest",
      buildTar(
        entries.map((e) =>
          e.name === blobPath(amd.layers[1]!.digest)
            ? { ...e, data: gzipSync(layerTar({ "bin/hello": "evil\n" })) }
            : e
        ),
      ),
      new RegExp(
        `Invalid archive entry "${
          blobPath(amd.layers[1]!.digest)
        }": its content does not match its digest`,
      ),
    ],
    [
      "a truncated tar",
      tar.subarray(0, tar.length - 3000),
      /Malformed image archive: unexpected end of tar stream/,
    ],
    [
      "a path traversal entry",
      buildTar([{ name: "../../x", type: "file", data: "x" }, ...entries]),
      /Invalid archive entry "\.\.\/\.\.\/x": path escapes the archive/,
    ],
    [
      "a missing layer",
      buildTar(entries.filter((e) => e.name !== blobPath(amd.layers[0]!.digest))),
      new RegExp(
        `layer 0 of manifest 0 of index.json.*${amd.layers[0]!.digest}.*not in the archive`,
      ),
    ],
    [
      "a bad oci-layout",
      buildTar(
        entries.map((e) =>
          e.name === "oci-layout" ? { ...e, data: '{"imageLayoutVersion":"2.0.0"}' } : e
        ),
      ),
      /unsupported imageLayoutVersion "2\.0\.0"/,
    ],
    [
      "garbage",
      enc.encode("this is not a tar file at all, just some text that goes on ".repeat(20)),
      /Malformed image archive: invalid tar header checksum/,
    ],
    ["an empty stream", new Uint8Array(0), /the archive is empty/],
  ];
  for (const [what, bytes, re] of cases) {
    await t.step(what, async () => {
      await using dst = await openStores();
      await assert.rejects(
        importImages(dst, NS, chunked(bytes, 4096)),
        (e) => isKind(e, "invalid_argument") && re.test((e as Error).message),
      );
      assertEmpty(dst);
      // No ingest left behind either.
      assert.deepEqual(await dst.content.listStatuses(NS), []);
    });
  }
});

Deno.test("a docker save layer that does not match its diff_id is refused", async () => {
  const { tar } = dockerSave();
  const entries = entriesOf(tar).map((e) =>
    e.name === `${"2".repeat(64)}/layer.tar` ? { ...e, data: layerTar({ "bin/app": "evil\n" }) } : e
  );
  await using dst = await openStores();
  await assert.rejects(
    importImages(dst, NS, chunked(buildTar(entries))),
    (e) =>
      isKind(e, "invalid_argument") &&
      /Invalid archive entry "2{64}\/layer\.tar": its content .* does not match diff_id/.test(
        (e as Error).message,
      ),
  );
  assertEmpty(dst);
});

Deno.test("an import leaves blobs the namespace had before a failure alone", async () => {
  const { tar, manifests } = await exported();
  await using dst = await openStores();
  const amd = manifests.get("linux/amd64")!;
  // The namespace already holds the amd64 config.
  const cfgBytes = readTar(tar).get(blobPath(amd.config.digest))!;
  const w = await dst.content.writer(NS, "pre", { expected: amd.config.digest });
  await w.write(cfgBytes);
  await w.commit(cfgBytes.length, amd.config.digest);
  const broken = buildTar(
    entriesOf(tar).filter((e) => e.name !== blobPath(amd.layers[0]!.digest)),
  );
  await assert.rejects(importImages(dst, NS, chunked(broken)));
  assert.deepEqual(dst.content.list(NS).map((i) => i.digest), [amd.config.digest]);
});
