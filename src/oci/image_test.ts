import assert from "node:assert/strict";
import {
  detectManifestType,
  MediaType,
  parseImageConfig,
  parseIndex,
  parseManifest,
} from "./image.ts";
import { isKind } from "../core/errdefs.ts";

const D = "sha256:" + "0f".repeat(32);

Deno.test("image: parses a manifest and an index", () => {
  const m = parseManifest(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.dockerManifest,
      config: { mediaType: MediaType.dockerConfig, digest: D, size: 10 },
      layers: [{ mediaType: MediaType.dockerLayerGzip, digest: D, size: 20 }],
    }),
    { mediaType: MediaType.dockerManifest },
  );
  assert.equal(m.layers[0]!.size, 20);
  const i = parseIndex(JSON.stringify({
    schemaVersion: 2,
    manifests: [{
      mediaType: MediaType.ociManifest,
      digest: D,
      size: 1,
      platform: { os: "linux", architecture: "amd64" },
    }],
  }));
  assert.equal(i.manifests.length, 1);
});

Deno.test("image: clear errors for malformed documents", () => {
  const cases: Array<[() => unknown, string, string]> = [
    [() => parseManifest("{"), "invalid_argument", "not valid JSON"],
    [() => parseManifest("[]"), "invalid_argument", "not a JSON object"],
    [
      () => parseManifest(JSON.stringify({ schemaVersion: 2, config: {}, layers: [] })),
      "invalid_argument",
      "config",
    ],
    [
      () =>
        parseManifest(
          JSON.stringify({
            schemaVersion: 2,
            config: { mediaType: "x", digest: "sha256:zz", size: 1 },
            layers: [],
          }),
        ),
      "invalid_argument",
      "invalid digest",
    ],
    [
      () =>
        parseManifest(
          JSON.stringify({
            schemaVersion: 2,
            config: { mediaType: "x", digest: D, size: -1 },
            layers: [],
          }),
        ),
      "invalid_argument",
      "size",
    ],
    [
      () => parseManifest(JSON.stringify({ schemaVersion: 1, name: "x", fsLayers: [] })),
      "not_implemented",
      "schema 1",
    ],
    [
      () =>
        parseIndex(
          JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, manifests: [] }),
        ),
      "invalid_argument",
      "mediaType",
    ],
    [
      () => parseIndex(JSON.stringify({ schemaVersion: 2, manifests: {} })),
      "invalid_argument",
      "manifests",
    ],
    [
      () =>
        parseImageConfig(
          JSON.stringify({
            os: "linux",
            architecture: "amd64",
            rootfs: { type: "layers", diff_ids: ["nope"] },
          }),
        ),
      "invalid_argument",
      "diff_ids[0]",
    ],
    [
      () =>
        parseImageConfig(
          JSON.stringify({
            os: "linux",
            architecture: "amd64",
            rootfs: { type: "layers", diff_ids: [] },
            config: { Cmd: "sh" },
          }),
        ),
      "invalid_argument",
      "config.Cmd",
    ],
  ];
  for (const [fn, kind, text] of cases) {
    assert.throws(fn, (e: Error) => {
      assert.ok(isKind(e, kind as "invalid_argument"), e.message);
      assert.ok(e.message.includes(text), `${e.message} should mention ${text}`);
      return true;
    });
  }
});

Deno.test("image: detects a media type from the document", () => {
  assert.equal(
    detectManifestType(JSON.stringify({ schemaVersion: 2, manifests: [] })),
    MediaType.ociIndex,
  );
  assert.equal(
    detectManifestType(JSON.stringify({ schemaVersion: 2, config: {}, layers: [] })),
    MediaType.ociManifest,
  );
  assert.equal(
    detectManifestType(JSON.stringify({ schemaVersion: 1 })),
    MediaType.dockerSchema1Manifest,
  );
  assert.equal(
    detectManifestType(JSON.stringify({ mediaType: MediaType.dockerManifest })),
    MediaType.dockerManifest,
  );
});
