import assert from "node:assert/strict";
import {
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  onlyPlatform,
  parsePlatform,
  selectManifests,
} from "./platforms.ts";
import { type Descriptor, MediaType } from "./image.ts";
import { isKind } from "../core/errdefs.ts";

Deno.test("platforms: parse and normalize", () => {
  assert.equal(formatPlatform(parsePlatform("linux/x86_64")), "linux/amd64");
  assert.equal(formatPlatform(parsePlatform("linux/aarch64")), "linux/arm64/v8");
  assert.equal(formatPlatform(parsePlatform("linux/arm64")), "linux/arm64/v8");
  assert.equal(formatPlatform(parsePlatform("linux/arm")), "linux/arm/v7");
  assert.equal(formatPlatform(parsePlatform("linux/armhf")), "linux/arm/v7");
  assert.equal(formatPlatform(parsePlatform("Linux/AMD64/v1")), "linux/amd64");
  assert.equal(
    formatPlatform(parsePlatform("windows")),
    `windows/${hostPlatform().architecture}${
      hostPlatform().variant ? "/" + hostPlatform().variant : ""
    }`,
  );
  assert.equal(parsePlatform("arm64").os, hostPlatform().os);
  assert.deepEqual(normalizePlatform({ os: "linux", architecture: "i386" }), {
    os: "linux",
    architecture: "386",
  });
  for (const bad of ["", "linux/", "a/b/c/d", "linux/am d64"]) {
    assert.throws(
      () => parsePlatform(bad),
      (e: Error) => isKind(e, "invalid_argument") && e.message.includes(`"${bad}"`),
    );
  }
});

Deno.test("platforms: host platform is normalized", () => {
  const h = hostPlatform();
  assert.equal(h.os, "linux");
  assert.ok(["amd64", "arm64"].includes(h.architecture));
});

Deno.test("platforms: Only matches compatible platforms, best first", () => {
  const amd = onlyPlatform(parsePlatform("linux/amd64"));
  assert.ok(amd.match({ os: "linux", architecture: "amd64" }));
  assert.ok(amd.match({ os: "linux", architecture: "386" }));
  assert.ok(!amd.match({ os: "linux", architecture: "arm64" }));
  assert.ok(!amd.match({ os: "windows", architecture: "amd64" }));
  assert.ok(amd.less({ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "386" }));
  const arm64 = onlyPlatform(parsePlatform("linux/arm64"));
  assert.ok(arm64.match({ os: "linux", architecture: "arm64", variant: "v8" }));
  assert.ok(arm64.match({ os: "linux", architecture: "aarch64" }));
  assert.ok(arm64.match({ os: "linux", architecture: "arm", variant: "v7" }));
  const v7 = onlyPlatform(parsePlatform("linux/arm/v7"));
  assert.ok(v7.match({ os: "linux", architecture: "arm", variant: "v6" }));
  assert.ok(!v7.match({ os: "linux", architecture: "arm", variant: "v8" }));
});

const d = (
  digest: string,
  platform?: Descriptor["platform"],
  extra: Partial<Descriptor> = {},
): Descriptor => ({
  mediaType: MediaType.ociManifest,
  digest: "sha256:" + digest.repeat(64),
  size: 1,
  ...(platform ? { platform } : {}),
  ...extra,
});

Deno.test("platforms: select from an index skips attestations and unknown types", () => {
  const index = {
    schemaVersion: 2 as const,
    manifests: [
      d("1", { os: "linux", architecture: "386" }),
      d("2", { os: "linux", architecture: "amd64" }),
      d("3", { os: "linux", architecture: "arm64", variant: "v8" }),
      d("4", { os: "unknown", architecture: "unknown" }, {
        annotations: { "vnd.docker.reference.type": "attestation-manifest" },
      }),
      d("5", { os: "linux", architecture: "amd64" }, { mediaType: "application/vnd.example+json" }),
    ],
  };
  assert.deepEqual(selectManifests(index, { platform: "linux/amd64" }).map((x) => x.digest[7]), [
    "2",
  ]);
  assert.deepEqual(selectManifests(index, { platform: "linux/arm64" }).map((x) => x.digest[7]), [
    "3",
  ]);
  assert.deepEqual(selectManifests(index, { platform: "linux/s390x" }), []);
  assert.deepEqual(selectManifests(index, { all: true }).map((x) => x.digest[7]), ["1", "2", "3"]);
  // Without amd64, an amd64 host still runs the 386 image.
  const only386 = {
    schemaVersion: 2 as const,
    manifests: [index.manifests[0]!, index.manifests[2]!],
  };
  assert.deepEqual(selectManifests(only386, { platform: "linux/amd64" }).map((x) => x.digest[7]), [
    "1",
  ]);
});
