/**
 * The registry client against a real registry: Debian's docker-registry
 * (distribution 2.8) started by this test on random ports, serving images this
 * test builds as OCI layouts and pushes with skopeo. Small Deno.serve fronts
 * inject the failures a registry does not produce on demand (503s, corrupt or
 * truncated bodies, redirects to another host, schema 1).
 */
import assert from "node:assert/strict";
import { createHash, createPrivateKey, createPublicKey } from "node:crypto";
import { gzipSync } from "node:zlib";
import { run } from "./_harness.ts";
import { isKind } from "../src/core/errdefs.ts";
import {
  type Descriptor,
  MediaType,
  parseImageConfig,
  parseIndex,
  parseManifest,
} from "../src/oci/image.ts";
import { hostPlatform, selectManifests } from "../src/oci/platforms.ts";
import { InFlight, RegistryClient, type RegistryClientOptions } from "../src/remotes/mod.ts";
import {
  freePort,
  front,
  issueToken,
  libtrustKeyId,
  proxy,
  sha256,
  startRegistry,
} from "./_registry.ts";

const FAST_RETRY = { attempts: 3, baseDelayMs: 10, maxDelayMs: 50 };

async function readAll(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** An OCI layout written by hand: blobs, index.json, oci-layout. */
class Layout {
  blobs = new Map<string, Uint8Array<ArrayBuffer>>();
  constructor(readonly dir: string) {}

  async init(): Promise<this> {
    await Deno.mkdir(`${this.dir}/blobs/sha256`, { recursive: true });
    await Deno.writeTextFile(`${this.dir}/oci-layout`, '{"imageLayoutVersion":"1.0.0"}');
    return this;
  }

  async put(
    mediaType: string,
    bytes: Uint8Array,
    extra: Partial<Descriptor> = {},
  ): Promise<Descriptor> {
    const digest = sha256(bytes);
    await Deno.writeFile(`${this.dir}/blobs/sha256/${digest.slice(7)}`, bytes);
    this.blobs.set(digest, new Uint8Array(bytes));
    return { mediaType, digest, size: bytes.length, ...extra };
  }

  json(
    mediaType: string,
    doc: unknown,
    extra: Partial<Descriptor> = {},
  ): Promise<Descriptor> {
    return this.put(mediaType, new TextEncoder().encode(JSON.stringify(doc)), extra);
  }

  async tag(desc: Descriptor, tag: string): Promise<void> {
    await Deno.writeTextFile(
      `${this.dir}/index.json`,
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ ...desc, annotations: { "org.opencontainers.image.ref.name": tag } }],
      }),
    );
  }
}

interface Image {
  manifest: Descriptor;
  config: Descriptor;
  layer: Descriptor;
}

/** A tar.gz layer holding `files`, made with GNU tar; returns the blob and its diffID. */
async function makeLayer(tmp: string, files: Record<string, string | Uint8Array>) {
  const dir = await Deno.makeTempDir({ dir: tmp });
  for (const [name, content] of Object.entries(files)) {
    if (typeof content === "string") await Deno.writeTextFile(`${dir}/${name}`, content);
    else await Deno.writeFile(`${dir}/${name}`, content);
  }
  const tarFile = `${dir}.tar`;
  await run("tar", [
    "--sort=name",
    "--mtime=@0",
    "--owner=0",
    "--group=0",
    "-C",
    dir,
    "-cf",
    tarFile,
    ".",
  ], {
    check: true,
  });
  const tar = await Deno.readFile(tarFile);
  return { blob: new Uint8Array(gzipSync(tar)), diffId: sha256(tar) };
}

async function makeImage(
  layout: Layout,
  tmp: string,
  opts: { arch: string; variant?: string; files: Record<string, string | Uint8Array> },
): Promise<Image> {
  const { blob, diffId } = await makeLayer(tmp, opts.files);
  const layer = await layout.put(MediaType.ociLayerGzip, blob);
  const config = await layout.json(MediaType.ociConfig, {
    architecture: opts.arch,
    ...(opts.variant ? { variant: opts.variant } : {}),
    os: "linux",
    config: { Cmd: ["sh"], Env: ["PATH=/bin"] },
    rootfs: { type: "layers", diff_ids: [diffId] },
  });
  const manifest = await layout.json(MediaType.ociManifest, {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config,
    layers: [layer],
  });
  return { manifest, config, layer };
}

Deno.test({
  name: "remotes: registry client against a real docker-registry",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const tmp = await Deno.makeTempDir({ prefix: "berth-remotes-" });
    const cleanups: Array<() => Promise<void> | void> = [];
    const clients: RegistryClient[] = [];
    const client = (opts: RegistryClientOptions = {}) => {
      const c = new RegistryClient({ dockerConfig: false, retry: FAST_RETRY, ...opts });
      clients.push(c);
      return c;
    };
    try {
      // ---- build the images -------------------------------------------------
      const layout = await new Layout(`${tmp}/oci-one`).init();
      const bigData = new Uint8Array(3 << 20);
      for (let i = 0; i < bigData.length; i += 65536) {
        crypto.getRandomValues(bigData.subarray(i, i + 65536));
      }
      const one = await makeImage(layout, tmp, {
        arch: hostPlatform().architecture,
        files: { "hello.txt": "hello from berth\n", "random.bin": bigData },
      });
      await layout.tag(one.manifest, "v1");

      const multiLayout = await new Layout(`${tmp}/oci-multi`).init();
      const amd = await makeImage(multiLayout, tmp, {
        arch: "amd64",
        files: { "platform-marker": "amd64\n" },
      });
      const arm = await makeImage(multiLayout, tmp, {
        arch: "arm64",
        variant: "v8",
        files: { "platform-marker": "arm64\n" },
      });
      const attestation = await multiLayout.json(MediaType.ociManifest, {
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: await multiLayout.json(MediaType.ociConfig, {
          architecture: "unknown",
          os: "unknown",
          rootfs: { type: "layers", diff_ids: [] },
        }),
        layers: [
          await multiLayout.put("application/vnd.in-toto+json", new TextEncoder().encode("{}")),
        ],
      });
      const index = await multiLayout.json(MediaType.ociIndex, {
        schemaVersion: 2,
        mediaType: MediaType.ociIndex,
        manifests: [
          { ...amd.manifest, platform: { os: "linux", architecture: "amd64" } },
          { ...arm.manifest, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
          {
            ...attestation,
            platform: { os: "unknown", architecture: "unknown" },
            annotations: {
              "vnd.docker.reference.type": "attestation-manifest",
              "vnd.docker.reference.digest": amd.manifest.digest,
            },
          },
        ],
      });
      await multiLayout.tag(index, "v1");

      // ---- the open registry, for pushes and most checks ---------------------
      const storage = `${tmp}/storage`;
      const reg = await startRegistry(tmp, storage);
      cleanups.push(() => reg.stop());
      const R = `127.0.0.1:${reg.port}`;
      await Deno.writeTextFile(
        `${tmp}/policy.json`,
        '{"default":[{"type":"insecureAcceptAnything"}]}',
      );
      const skopeo = (...args: string[]) =>
        run("skopeo", [
          "--policy",
          `${tmp}/policy.json`,
          "copy",
          "-q",
          "--dest-tls-verify=false",
          ...args,
        ], {
          check: true,
        });
      await skopeo(`oci:${layout.dir}:v1`, `docker://${R}/one:v1`);
      await skopeo("--format", "v2s2", `oci:${layout.dir}:v1`, `docker://${R}/schema2:v1`);
      await skopeo("--all", `oci:${multiLayout.dir}:v1`, `docker://${R}/multi:v1`);

      await t.step("resolve a tag to the pushed manifest digest", async () => {
        const c = client();
        const r = await c.resolve(`${R}/one:v1`);
        assert.equal(r.name, `${R}/one:v1`);
        assert.deepEqual(r.descriptor, {
          mediaType: MediaType.ociManifest,
          digest: one.manifest.digest,
          size: one.manifest.size,
        });
        assert.equal(r.host.base, `http://${R}/v2`, "loopback registries use plain http");
        // By digest: fetched and checked against the digest.
        const byDigest = await c.resolve(`${R}/one@${one.manifest.digest}`);
        assert.deepEqual(byDigest.descriptor, r.descriptor);
      });

      await t.step("fetch and verify manifest, config and layer", async () => {
        const c = client();
        const { descriptor } = await c.resolve(`${R}/one:v1`);
        const f = c.fetcher(`${R}/one:v1`);
        const m = parseManifest(await f.fetchBytes(descriptor), {
          mediaType: descriptor.mediaType,
        });
        assert.deepEqual(m.layers, [one.layer]);
        const config = parseImageConfig(await f.fetchBytes(m.config));
        assert.equal(config.rootfs.diff_ids.length, 1);
        const layer = await readAll(await f.fetch(m.layers[0]!));
        assert.equal(sha256(layer), one.layer.digest);
        assert.deepEqual(layer, layout.blobs.get(one.layer.digest));
      });

      await t.step("choose a platform from an index (attestations skipped)", async () => {
        const c = client();
        const r = await c.resolve(`${R}/multi:v1`);
        assert.equal(r.descriptor.mediaType, MediaType.ociIndex);
        assert.equal(r.descriptor.digest, index.digest);
        const f = c.fetcher(r.ref);
        const idx = parseIndex(await f.fetchBytes(r.descriptor));
        assert.deepEqual(selectManifests(idx, { platform: "linux/amd64" }).map((d) => d.digest), [
          amd.manifest.digest,
        ]);
        assert.deepEqual(selectManifests(idx, { platform: "linux/arm64" }).map((d) => d.digest), [
          arm.manifest.digest,
        ]);
        assert.deepEqual(
          selectManifests(idx, { platform: "linux/aarch64/v8" }).map((d) => d.digest),
          [arm.manifest.digest],
        );
        assert.deepEqual(selectManifests(idx, { all: true }).map((d) => d.digest), [
          amd.manifest.digest,
          arm.manifest.digest,
        ]);
        assert.deepEqual(selectManifests(idx, { platform: "linux/riscv64" }), []);
        const host = selectManifests(idx)[0]!;
        assert.equal(
          host.digest,
          hostPlatform().architecture === "arm64" ? arm.manifest.digest : amd.manifest.digest,
        );
        // Follow the arm64 entry to its layer and check the marker file went through.
        const armManifest = parseManifest(
          await f.fetchBytes(selectManifests(idx, { platform: "linux/arm64" })[0]!),
        );
        const blob = await readAll(await f.fetch(armManifest.layers[0]!));
        assert.deepEqual(blob, multiLayout.blobs.get(arm.layer.digest));
      });

      await t.step("Docker schema2 image", async () => {
        const c = client();
        const r = await c.resolve(`${R}/schema2:v1`);
        assert.equal(r.descriptor.mediaType, MediaType.dockerManifest);
        const f = c.fetcher(r.ref);
        const m = parseManifest(await f.fetchBytes(r.descriptor), {
          mediaType: r.descriptor.mediaType,
        });
        assert.equal(m.config.mediaType, MediaType.dockerConfig);
        assert.equal(m.layers[0]!.mediaType, MediaType.dockerLayerGzip);
        assert.equal(m.layers[0]!.digest, one.layer.digest);
        const cfg = parseImageConfig(await f.fetchBytes(m.config));
        assert.deepEqual(cfg.config?.Cmd, ["sh"]);
        assert.equal(sha256(await readAll(await f.fetch(m.layers[0]!))), one.layer.digest);
      });

      await t.step("404: missing tag, repository and blob name what is missing", async () => {
        const c = client();
        await assert.rejects(c.resolve(`${R}/one:nope`), (e: Error) => {
          assert.ok(isKind(e, "not_found"), e.message);
          assert.equal(e.message, `Reference "${R}/one:nope": not found`);
          return true;
        });
        await assert.rejects(
          c.resolve(`${R}/nothing/here:v1`),
          (e: Error) => isKind(e, "not_found"),
        );
        const missing = {
          mediaType: MediaType.ociLayerGzip,
          digest: "sha256:" + "1".repeat(64),
          size: 3,
        };
        await assert.rejects(c.fetcher(`${R}/one:v1`).fetch(missing), (e: Error) => {
          assert.ok(isKind(e, "not_found"), e.message);
          assert.ok(
            e.message.includes(missing.digest) && e.message.includes(`${R}/one:v1`),
            e.message,
          );
          return true;
        });
      });

      await t.step("resume from an offset with Range", async () => {
        const c = client();
        const f = c.fetcher(`${R}/one:v1`);
        const full = layout.blobs.get(one.layer.digest)!;
        const offset = 1_000_003;
        // Without the prefix hash only the size can be checked.
        const tail = await readAll(await f.fetch(one.layer, { offset }));
        assert.deepEqual(tail, full.subarray(offset));
        // With the prefix hash the whole digest is checked.
        const h = createHash("sha256").update(full.subarray(0, offset));
        assert.equal(
          (await readAll(await f.fetch(one.layer, { offset, hash: h }))).length,
          full.length - offset,
        );
        const wrong = createHash("sha256").update(new Uint8Array(offset));
        await assert.rejects(
          readAll(await f.fetch(one.layer, { offset, hash: wrong })),
          (e: Error) =>
            isKind(e, "failed_precondition") && e.message.includes("digest mismatch") &&
            e.message.includes(one.layer.digest),
        );
        await assert.rejects(
          f.fetch(one.layer, { offset: full.length + 1 }),
          (e: Error) => isKind(e, "invalid_argument"),
        );
      });

      await t.step("digest mismatch, short and truncated bodies give clear errors", async () => {
        const full = layout.blobs.get(one.layer.digest)!;
        let dropFirstOnly = false;
        let drops = 0;
        const fr = front((req, url) => {
          if (!url.pathname.endsWith(`/blobs/${one.layer.digest}`)) {
            return proxy(req, url, reg.port);
          }
          const repo = url.pathname.split("/")[2];
          if (repo === "corrupt") {
            const bad = full.slice();
            bad[bad.length >> 1]! ^= 0xff;
            return new Response(bad, { headers: { "content-length": String(bad.length) } });
          }
          if (repo === "short") return new Response(full.slice(0, 1000));
          // "drop": send half, then break the connection (once, or always).
          const range = /bytes=(\d+)-/.exec(req.headers.get("range") ?? "");
          if (range) {
            const start = Number(range[1]);
            return new Response(full.slice(start), {
              status: 206,
              headers: { "content-range": `bytes ${start}-${full.length - 1}/${full.length}` },
            });
          }
          if (dropFirstOnly && drops > 0) return new Response(full);
          drops++;
          const half = full.length >> 1;
          return new Response(
            new ReadableStream({
              start(c) {
                c.enqueue(full.slice(0, half));
              },
              async pull(c) {
                await new Promise((r) => setTimeout(r, 20));
                c.error(new Error("connection dropped on purpose"));
              },
            }),
            { headers: { "content-length": String(full.length) } },
          );
        });
        cleanups.push(() => fr.close());
        const F = `127.0.0.1:${fr.port}`;
        const c = client();
        await assert.rejects(
          readAll(await c.fetcher(`${F}/corrupt:v1`).fetch(one.layer)),
          (e: Error) => {
            assert.ok(isKind(e, "failed_precondition"), e.message);
            assert.ok(
              e.message.includes(`blob ${one.layer.digest} of "${F}/corrupt:v1"`),
              e.message,
            );
            assert.ok(e.message.includes("digest mismatch"), e.message);
            return true;
          },
        );
        await assert.rejects(c.fetcher(`${F}/short:v1`).fetch(one.layer), (e: Error) => {
          assert.ok(isKind(e, "failed_precondition"), e.message);
          assert.ok(
            e.message.includes("size mismatch") && e.message.includes(one.layer.digest),
            e.message,
          );
          return true;
        });
        // Always dropped: the fetcher resumes with Range; the front then serves
        // the rest, so this works and shows the resume.
        dropFirstOnly = true;
        const got = await readAll(await c.fetcher(`${F}/drop:v1`).fetch(one.layer));
        assert.equal(sha256(got), one.layer.digest);
        const rangeReqs = fr.log.filter((l) => l.path.includes("/drop/") && l.range);
        assert.equal(rangeReqs.length, 1, "one resumed request");
        assert.match(rangeReqs[0]!.range!, /^bytes=\d+-$/);
      });

      await t.step(
        "truncated blob that never completes: unavailable naming the digest",
        async () => {
          const full = layout.blobs.get(one.layer.digest)!;
          const fr = front((req, url) => {
            if (!url.pathname.includes("/blobs/")) return proxy(req, url, reg.port);
            return new Response(
              new ReadableStream({
                start(c) {
                  c.enqueue(full.slice(0, 1000));
                },
                async pull(c) {
                  await new Promise((r) => setTimeout(r, 10));
                  c.error(new Error("drop"));
                },
              }),
              {
                status: req.headers.has("range") ? 206 : 200,
                headers: {
                  "content-length": String(
                    req.headers.has("range")
                      ? full.length - Number(/\d+/.exec(req.headers.get("range")!)![0])
                      : full.length,
                  ),
                  ...(req.headers.has("range")
                    ? {
                      "content-range": `bytes ${/\d+/.exec(req.headers.get("range")!)![0]}-${
                        full.length - 1
                      }/${full.length}`,
                    }
                    : {}),
                },
              },
            );
          });
          cleanups.push(() => fr.close());
          const F = `127.0.0.1:${fr.port}`;
          const c = client();
          await assert.rejects(
            readAll(await c.fetcher(`${F}/one:v1`).fetch(one.layer)),
            (e: Error) => {
              assert.ok(isKind(e, "unavailable"), e.message);
              assert.ok(
                e.message.includes("truncated") && e.message.includes(one.layer.digest),
                e.message,
              );
              return true;
            },
          );
        },
      );

      await t.step("retry after transient 503s; give up after the attempts", async () => {
        let failures = 2;
        const fr = front((req, url) => {
          if (url.pathname.includes("/manifests/") && failures-- > 0) {
            return new Response("busy", { status: 503 });
          }
          return proxy(req, url, reg.port);
        });
        cleanups.push(() => fr.close());
        const F = `127.0.0.1:${fr.port}`;
        const r = await client().resolve(`${F}/one:v1`);
        assert.equal(r.descriptor.digest, one.manifest.digest);
        assert.equal(fr.log.filter((l) => l.path.includes("/manifests/")).length, 3);
        failures = 100;
        await assert.rejects(client().resolve(`${F}/one:v1`), (e: Error) => {
          assert.ok(isKind(e, "unavailable"), e.message);
          assert.ok(e.message.includes("503") && e.message.includes(F), e.message);
          return true;
        });
      });

      await t.step(
        "HEAD without a digest falls back to GET; stalled servers time out",
        async () => {
          let stall = false;
          const fr = front(async (req, url) => {
            if (stall && url.pathname.includes("/manifests/")) {
              await new Promise((r) => setTimeout(r, 2000));
            }
            const res = await proxy(req, url, reg.port);
            if (req.method === "HEAD") {
              const h = new Headers(res.headers);
              h.delete("docker-content-digest");
              return new Response(null, { status: res.status, headers: h });
            }
            return res;
          });
          cleanups.push(() => fr.close());
          const F = `127.0.0.1:${fr.port}`;
          const c = client();
          const r = await c.resolve(`${F}/multi:v1`);
          assert.deepEqual(r.descriptor, {
            mediaType: MediaType.ociIndex,
            digest: index.digest,
            size: index.size,
          });
          assert.deepEqual(fr.log.map((l) => l.method), ["HEAD", "GET"]);
          // The GET's bytes were verified and kept: fetching the root again costs no request.
          const bytes = await c.fetcher(r.ref).fetchBytes(r.descriptor);
          assert.equal(sha256(bytes), index.digest);
          assert.equal(fr.log.length, 2);
          stall = true;
          const started = Date.now();
          await assert.rejects(
            client({ timeoutMs: 200, retry: { attempts: 2, baseDelayMs: 10 } }).resolve(
              `${F}/one:v1`,
            ),
            (e: Error) => {
              assert.ok(isKind(e, "unavailable"), e.message);
              assert.ok(e.message.includes("timed out") && e.message.includes(F), e.message);
              return true;
            },
          );
          assert.ok(Date.now() - started < 1500, "gave up after two 200 ms attempts");
        },
      );

      await t.step("registry down: unavailable naming the host", async () => {
        const port = freePort();
        await assert.rejects(client().resolve(`127.0.0.1:${port}/one:v1`), (e: Error) => {
          assert.ok(isKind(e, "unavailable"), e.message);
          assert.ok(e.message.includes(`127.0.0.1:${port}`), e.message);
          assert.ok(e.message.includes("connection refused"), e.message);
          return true;
        });
      });

      await t.step("schema 1 is refused with a message saying so", async () => {
        const fr = front(() =>
          new Response('{"schemaVersion":1,"name":"old","tag":"v1","fsLayers":[]}', {
            headers: {
              "content-type": MediaType.dockerSchema1SignedManifest,
              "docker-content-digest": "sha256:" + "a".repeat(64),
            },
          })
        );
        cleanups.push(() => fr.close());
        await assert.rejects(client().resolve(`127.0.0.1:${fr.port}/old:v1`), (e: Error) => {
          assert.ok(isKind(e, "not_implemented"), e.message);
          assert.match(e.message, /schema 1 .* is not supported/);
          return true;
        });
      });

      await t.step("manifest by digest that does not match is refused", async () => {
        const fr = front((req, url) => {
          if (url.pathname.includes("/manifests/")) {
            return new Response(
              JSON.stringify({
                schemaVersion: 2,
                mediaType: MediaType.ociManifest,
                config: one.config,
                layers: [],
              }),
              {
                headers: { "content-type": MediaType.ociManifest },
              },
            );
          }
          return proxy(req, url, reg.port);
        });
        cleanups.push(() => fr.close());
        await assert.rejects(
          client().resolve(`127.0.0.1:${fr.port}/one@${one.manifest.digest}`),
          (e: Error) => {
            assert.ok(isKind(e, "failed_precondition"), e.message);
            assert.ok(e.message.includes("does not match its digest"), e.message);
            return true;
          },
        );
      });

      await t.step("Basic auth (htpasswd) with --user and with a Docker config.json", async () => {
        const htp = await run("htpasswd", ["-Bbn", "tester", "secret"], { check: true });
        await Deno.writeTextFile(`${tmp}/htpasswd`, htp.stdout);
        const basic = await startRegistry(
          tmp,
          storage,
          `auth:\n  htpasswd:\n    realm: berth-test\n    path: ${tmp}/htpasswd\n`,
        );
        cleanups.push(() => basic.stop());
        const B = `127.0.0.1:${basic.port}`;
        await assert.rejects(client().resolve(`${B}/one:v1`), (e: Error) => {
          assert.ok(isKind(e, "unauthenticated"), e.message);
          assert.ok(e.message.includes(`${B}/one:v1`) && e.message.includes("401"), e.message);
          return true;
        });
        await assert.rejects(
          client({ user: "tester:wrong" }).resolve(`${B}/one:v1`),
          (e: Error) => isKind(e, "unauthenticated"),
        );
        const c = client({ user: "tester:secret" });
        const r = await c.resolve(`${B}/one:v1`);
        assert.equal(r.descriptor.digest, one.manifest.digest);
        assert.equal(
          sha256(await readAll(await c.fetcher(r.ref).fetch(one.config))),
          one.config.digest,
        );
        await Deno.writeTextFile(
          `${tmp}/docker-config.json`,
          JSON.stringify({
            auths: { [`http://${B}`]: { auth: btoa("tester:secret") } },
          }),
        );
        const viaConfig = client({ dockerConfig: `${tmp}/docker-config.json` });
        assert.equal(
          (await viaConfig.resolve(`${B}/one:v1`)).descriptor.digest,
          one.manifest.digest,
        );
      });

      await t.step(
        "token auth: the registry itself enforces ES256 JWTs from our token server",
        async () => {
          await run("openssl", [
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            `${tmp}/tok.key`,
          ], {
            check: true,
          });
          await run("openssl", [
            "req",
            "-x509",
            "-new",
            "-key",
            `${tmp}/tok.key`,
            "-subj",
            "/CN=berth-test-token",
            "-days",
            "1",
            "-out",
            `${tmp}/tok.crt`,
          ], { check: true });
          const key = createPrivateKey(await Deno.readTextFile(`${tmp}/tok.key`));
          const kid = libtrustKeyId(
            createPublicKey(await Deno.readTextFile(`${tmp}/tok.crt`)).export({
              type: "spki",
              format: "der",
            }),
          );
          const otherKey = createPrivateKey(
            (await run("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout"], {
              check: true,
            })).stdout,
          );
          let forge = false;
          const tokenRequests: URL[] = [];
          const tokens = front((req, url) => {
            tokenRequests.push(url);
            return issueToken(req, url, kid, forge ? otherKey : key);
          });
          cleanups.push(() => tokens.close());
          const tokReg = await startRegistry(
            tmp,
            storage,
            `auth:
  token:
    realm: http://127.0.0.1:${tokens.port}/token
    service: berth-test-registry
    issuer: berth-test-issuer
    rootcertbundle: ${tmp}/tok.crt
`,
          );
          cleanups.push(() => tokReg.stop());
          const T = `127.0.0.1:${tokReg.port}`;
          await assert.rejects(client().resolve(`${T}/one:v1`), (e: Error) => {
            assert.ok(isKind(e, "unauthenticated"), e.message);
            assert.ok(
              e.message.includes("Token server") &&
                e.message.includes("incorrect username or password"),
              e.message,
            );
            return true;
          });
          tokenRequests.length = 0;
          const c = client({ user: "tester:secret" });
          const r = await c.resolve(`${T}/one:v1`);
          assert.equal(r.descriptor.digest, one.manifest.digest);
          const f = c.fetcher(r.ref);
          const m = parseManifest(await f.fetchBytes(r.descriptor));
          await f.fetchBytes(m.config);
          assert.equal(sha256(await readAll(await f.fetch(m.layers[0]!))), one.layer.digest);
          // One token, asked with the registry's service and our pull scope, reused for every request.
          assert.equal(tokenRequests.length, 1);
          assert.equal(tokenRequests[0]!.searchParams.get("service"), "berth-test-registry");
          assert.deepEqual(tokenRequests[0]!.searchParams.getAll("scope"), ["repository:one:pull"]);
          // A token for one repository does not open another: a new scope, a new token.
          await c.resolve(`${T}/multi:v1`);
          assert.equal(tokenRequests.length, 2);
          assert.deepEqual(tokenRequests[1]!.searchParams.getAll("scope"), [
            "repository:multi:pull",
          ]);
          // The registry checks the signature: a token signed by another key is refused.
          forge = true;
          await assert.rejects(
            client({ user: "tester:secret" }).resolve(`${T}/one:v1`),
            (e: Error) => {
              assert.ok(isKind(e, "unauthenticated"), e.message);
              assert.ok(e.message.includes(`${T}/one:v1`) && e.message.includes("401"), e.message);
              return true;
            },
          );
        },
      );

      await t.step("redirect to another host never carries Authorization", async () => {
        const full = layout.blobs.get(one.layer.digest)!;
        const other = front((_req, url) => {
          const digest = url.pathname.split("/").pop()!;
          const blob = layout.blobs.get(digest);
          return blob ? new Response(blob) : new Response("no", { status: 404 });
        }, "127.0.0.2");
        cleanups.push(() => other.close());
        const fr = front((req, url) => {
          if (req.headers.get("authorization") !== `Basic ${btoa("tester:secret")}`) {
            return new Response("{}", {
              status: 401,
              headers: { "www-authenticate": 'Basic realm="front"' },
            });
          }
          if (url.pathname.includes("/blobs/")) {
            return new Response(null, {
              status: 307,
              headers: {
                location: `http://127.0.0.2:${other.port}/cdn/${url.pathname.split("/").pop()}`,
              },
            });
          }
          return proxy(req, url, reg.port);
        });
        cleanups.push(() => fr.close());
        const c = client({ user: "tester:secret" });
        const got = await readAll(await c.fetcher(`127.0.0.1:${fr.port}/one:v1`).fetch(one.layer));
        assert.deepEqual(got, full);
        assert.ok(
          fr.log.some((l) => l.path.includes("/blobs/") && l.auth?.startsWith("Basic ")),
          "front saw credentials",
        );
        assert.equal(other.log.length, 1);
        assert.equal(other.log[0]!.auth, null, "the other host received no Authorization header");
      });

      await t.step("hosts.toml: mirrors tried in order, then the server", async () => {
        const empty = front(() =>
          new Response('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', { status: 404 })
        );
        cleanups.push(() => empty.close());
        const deadPort = freePort();
        const cfg = `${tmp}/config`;
        await Deno.mkdir(`${cfg}/certs.d/mirrored.example`, { recursive: true });
        await Deno.writeTextFile(
          `${cfg}/certs.d/mirrored.example/hosts.toml`,
          `
server = "http://127.0.0.1:${deadPort}"
[host."http://127.0.0.1:${empty.port}"]
  capabilities = ["pull", "resolve"]
[host."http://${R}"]
  capabilities = ["pull", "resolve"]
`,
        );
        const c = client({ configDir: cfg });
        const r = await c.resolve("mirrored.example/one:v1");
        assert.equal(r.descriptor.digest, one.manifest.digest);
        assert.equal(r.host.host, R);
        assert.deepEqual(empty.log.map((l) => l.path), ["/v2/one/manifests/v1"]);
        assert.equal(
          sha256(await readAll(await c.fetcher(r.ref).fetch(one.layer))),
          one.layer.digest,
        );
        // Nothing anywhere: not found (a down server does not hide the mirrors' answer).
        await assert.rejects(
          c.resolve("mirrored.example/none:v1"),
          (e: Error) => isKind(e, "not_found"),
        );
      });

      await t.step(
        "TLS: a CA from hosts.toml, skip_verify, and a clear error without either",
        async () => {
          const ossl = (...args: string[]) => run("openssl", args, { check: true });
          const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
          await ossl(
            "req",
            "-x509",
            ...ec,
            "-keyout",
            `${tmp}/ca.key`,
            "-out",
            `${tmp}/ca.pem`,
            "-subj",
            "/CN=berth-test-ca",
            "-days",
            "1",
          );
          await ossl(
            "req",
            ...ec,
            "-keyout",
            `${tmp}/srv.key`,
            "-out",
            `${tmp}/srv.csr`,
            "-subj",
            "/CN=127.0.0.1",
          );
          await Deno.writeTextFile(
            `${tmp}/srv.ext`,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
          );
          await ossl(
            "x509",
            "-req",
            "-in",
            `${tmp}/srv.csr`,
            "-CA",
            `${tmp}/ca.pem`,
            "-CAkey",
            `${tmp}/ca.key`,
            "-CAcreateserial",
            "-out",
            `${tmp}/srv.pem`,
            "-days",
            "1",
            "-extfile",
            `${tmp}/srv.ext`,
          );
          const tls = await startRegistry(
            tmp,
            storage,
            `  tls:\n    certificate: ${tmp}/srv.pem\n    key: ${tmp}/srv.key\n`,
            "https",
          );
          cleanups.push(() => tls.stop());
          const S = `127.0.0.1:${tls.port}`;
          const writeHosts = async (dir: string, body: string) => {
            await Deno.mkdir(`${dir}/certs.d/${S}`, { recursive: true });
            await Deno.writeTextFile(
              `${dir}/certs.d/${S}/hosts.toml`,
              `server = "https://${S}"\n${body}`,
            );
            return dir;
          };
          const withCa = await writeHosts(`${tmp}/tls-ca`, `ca = "${tmp}/ca.pem"\n`);
          const c = client({ configDir: withCa });
          const r = await c.resolve(`${S}/one:v1`);
          assert.equal(r.descriptor.digest, one.manifest.digest);
          assert.equal(
            sha256(await readAll(await c.fetcher(r.ref).fetch(one.layer))),
            one.layer.digest,
          );
          const skip = client({
            configDir: await writeHosts(`${tmp}/tls-skip`, "skip_verify = true\n"),
          });
          const rs = await skip.resolve(`${S}/one:v1`);
          assert.equal(rs.descriptor.digest, one.manifest.digest);
          const fs = skip.fetcher(rs.ref);
          assert.equal(sha256(await readAll(await fs.fetch(one.layer))), one.layer.digest);
          const full = layout.blobs.get(one.layer.digest)!;
          assert.deepEqual(
            await readAll(await fs.fetch(one.layer, { offset: 12345 })),
            full.subarray(12345),
          );
          const strict = client({ configDir: await writeHosts(`${tmp}/tls-none`, "") });
          await assert.rejects(strict.resolve(`${S}/one:v1`), (e: Error) => {
            assert.ok(isKind(e, "unavailable"), e.message);
            assert.ok(e.message.includes(S) && e.message.includes("TLS"), e.message);
            return true;
          });
        },
      );

      await t.step("the same blob requested twice downloads once", async () => {
        const fr = front((req, url) => proxy(req, url, reg.port));
        cleanups.push(() => fr.close());
        const c = client();
        const f = c.fetcher(`127.0.0.1:${fr.port}/one:v1`);
        const inflight = new InFlight<string, string>();
        const get = () =>
          inflight.run(
            one.layer.digest,
            async () => sha256(await readAll(await f.fetch(one.layer))),
          );
        const [a, b] = await Promise.all([get(), get()]);
        assert.equal(a, one.layer.digest);
        assert.equal(b, a);
        assert.equal(fr.log.filter((l) => l.path.endsWith(one.layer.digest)).length, 1);
      });
    } finally {
      for (const c of clients) c.close();
      for (const fn of cleanups.reverse()) {
        try {
          await fn();
        } catch { /* keep cleaning */ }
      }
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
});
