/**
 * `berth pull` with bad input, end to end: a missing tag, no credentials, a
 * blob whose bytes do not match its digest, a blob that is always cut short,
 * a malformed manifest, an unsupported media type, a registry that is down
 * and a full disk. Each must fail with an error naming the reference and the
 * cause, record no image, keep what was fetched resumable, and leave the
 * daemon serving.
 */
import assert from "node:assert/strict";
import { ok, run, startDaemon, type TestDaemon } from "./_harness.ts";
import {
  buildBigImage,
  buildTestImages,
  freePort,
  front,
  proxy,
  sha256,
  startBasicAuthRegistry,
  startRegistryEnv,
} from "./_registry.ts";
import { MediaType } from "../src/oci/image.ts";

/** Runs a pull that must fail; returns its stderr after the common checks. */
async function failingPull(d: TestDaemon, ref: string, ns = "default"): Promise<string> {
  const r = await d.berth(["-n", ns, "pull", ref]);
  assert.notEqual(r.code, 0, `pull of ${ref} should fail:\n${r.stdout}`);
  console.log(`    ${r.stderr.trim()}`); // the message a user sees, for the record
  assert.ok(r.stderr.includes(ref), `the error names the reference ${ref}:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/, "no stack trace for the user");
  // No image recorded, and the daemon still answers.
  assert.equal(ok(await d.berth(["-n", ns, "images", "-q"])).stdout, "", "no image recorded");
  ok(await d.berth(["version"]), "berth version after the failure");
  return r.stderr;
}

/** `ctr content active` rows: ref → offset (bytes on disk). */
async function activeIngests(d: TestDaemon, ns = "default"): Promise<Map<string, number>> {
  const out = ok(await d.ctr(["-n", ns, "content", "active"])).stdout.trim().split("\n").slice(1);
  const m = new Map<string, number>();
  for (const line of out) {
    const [ref, size] = line.trim().split(/\s+/);
    if (ref) m.set(ref, parseSize(size!));
  }
  return m;
}

/** ctr's human sizes (go-units, decimal): "1.5kB", "3MB", "12B". */
function parseSize(s: string): number {
  const m = /^([\d.]+)\s*([kMG]?B)$/.exec(s);
  if (!m) throw new Error(`Cannot parse size "${s}"`);
  const mult = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 }[m[2] as "B" | "kB" | "MB" | "GB"];
  return Number(m[1]) * mult;
}

Deno.test({
  name: "pull errors: each a clear error naming the reference, no image, daemon serving",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using env = await startRegistryEnv("berth-pull-errors-");
    const imgs = await buildTestImages(env.tmp, env.host);
    await using d = await startDaemon();
    const R = env.host;
    const layer = imgs.busybox.layers[0]!.desc;
    const layerBytes = await Deno.readFile(
      `${env.tmp}/oci-busybox/blobs/sha256/${layer.digest.slice(7)}`,
    );

    await t.step("404: a tag that does not exist", async () => {
      const err = await failingPull(d, `${R}/busybox:nope`);
      assert.match(err, /not found/);
      await failingPull(d, `${R}/no/such/repo:v1`);
    });

    await t.step("unauthorized: no credentials for a Basic-auth registry", async () => {
      const basic = await startBasicAuthRegistry(env.tmp, env.storage);
      env.defer(() => basic.stop());
      const err = await failingPull(d, `${basic.host}/busybox:v1`);
      assert.match(err, /401|unauthorized|authenticat/i);
    });

    await t.step("digest mismatch: a front that corrupts one blob", async () => {
      const fr = front((req, url) => {
        if (req.method === "GET" && url.pathname.endsWith(`/blobs/${layer.digest}`)) {
          const bad = layerBytes.slice();
          bad[bad.length >> 1]! ^= 0xff;
          return new Response(bad, { headers: { "content-length": String(bad.length) } });
        }
        return proxy(req, url, env.port);
      });
      env.defer(() => fr.close());
      const err = await failingPull(d, `${fr.host}/busybox:v1`, "corrupt");
      assert.match(err, /digest mismatch/);
      assert.ok(err.includes(layer.digest), err);
      // The corrupt bytes were not committed.
      const c = ok(await d.berth(["-n", "corrupt", "content", "ls", "-q"])).stdout;
      assert.ok(!c.includes(layer.digest), "corrupt blob not in the content store");
    });

    await t.step("truncated blob: clear error, the partial ingest resumes", async () => {
      // Every response (the first and each Range retry) stops after 64 KiB.
      const cut = 64 << 10;
      const fr = front((req, url) => {
        if (req.method !== "GET" || !url.pathname.endsWith(`/blobs/${layer.digest}`)) {
          return proxy(req, url, env.port);
        }
        const start = Number(/bytes=(\d+)-/.exec(req.headers.get("range") ?? "")?.[1] ?? 0);
        const rest = layerBytes.subarray(start);
        return new Response(
          new ReadableStream({
            start(c) {
              c.enqueue(rest.slice(0, cut));
            },
            async pull(c) {
              await new Promise((r) => setTimeout(r, 10));
              c.error(new Error("connection cut on purpose"));
            },
          }),
          {
            status: start ? 206 : 200,
            headers: {
              "content-length": String(rest.length),
              ...(start
                ? {
                  "content-range": `bytes ${start}-${layerBytes.length - 1}/${layerBytes.length}`,
                }
                : {}),
            },
          },
        );
      });
      env.defer(() => fr.close());
      const err = await failingPull(d, `${fr.host}/busybox:v1`, "trunc");
      assert.match(err, /truncated|connection|unexpected end/i);
      assert.ok(err.includes(layer.digest), err);
      const active = await activeIngests(d, "trunc");
      const partial = [...active.entries()].find(([ref]) => ref.includes(layer.digest));
      assert.ok(partial, `an active ingest for the layer: ${[...active.keys()]}`);
      const onDisk = partial[1];
      assert.ok(onDisk > 0 && onDisk < layer.size, `partial ingest of ${onDisk} bytes`);
      // The same layer from the healthy registry: only the rest is fetched.
      const r = ok(await d.berth(["-n", "trunc", "pull", "--json", `${R}/busybox:v1`]));
      const fetched = JSON.parse(r.stdout).fetchedBytes as number;
      // ctr prints the size rounded to 3 digits (kB).
      assert.ok(
        Math.abs(fetched - (layer.size - onDisk)) < 1000,
        `fetched ${fetched} of ${layer.size} with ${onDisk} on disk`,
      );
      assert.equal((await activeIngests(d, "trunc")).size, 0, "no ingest left");
    });

    await t.step("malformed manifest", async () => {
      const body = new TextEncoder().encode('{"schemaVersion": 2, "config": ');
      const fr = front((req, url) => {
        if (url.pathname.includes("/manifests/")) {
          return new Response(req.method === "HEAD" ? null : body, {
            headers: {
              "content-type": MediaType.ociManifest,
              "content-length": String(body.length),
              "docker-content-digest": sha256(body),
            },
          });
        }
        return proxy(req, url, env.port);
      });
      env.defer(() => fr.close());
      const err = await failingPull(d, `${fr.host}/busybox:v1`);
      assert.match(err, /malformed|invalid|JSON|parse/i);
      assert.ok(err.includes(sha256(body)), `names the manifest digest: ${err}`);
    });

    await t.step("unsupported media type", async () => {
      const kind = "application/vnd.example.thing.v1+json";
      const body = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType: kind }));
      const fr = front((req, url) => {
        if (url.pathname.includes("/manifests/")) {
          return new Response(req.method === "HEAD" ? null : body, {
            headers: {
              "content-type": kind,
              "content-length": String(body.length),
              "docker-content-digest": sha256(body),
            },
          });
        }
        return proxy(req, url, env.port);
      });
      env.defer(() => fr.close());
      const err = await failingPull(d, `${fr.host}/busybox:v1`);
      assert.ok(err.includes(kind), `names the media type: ${err}`);
      assert.match(err, /unsupported|not supported|not implemented/i);
    });

    await t.step("registry down", async () => {
      const port = freePort();
      const err = await failingPull(d, `127.0.0.1:${port}/busybox:v1`);
      assert.match(err, /connection refused/);
    });

    await t.step("disk full: a 4 MiB tmpfs as the daemon's root", async () => {
      const big = await buildBigImage(env.tmp, R, "eight", 8);
      const dir = await Deno.makeTempDir({ prefix: "berth-diskfull-" });
      await Deno.mkdir(`${dir}/root`);
      ok(
        await run("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", `${dir}/root`]),
        "mount tmpfs",
      );
      let small: TestDaemon | undefined;
      try {
        small = await startDaemon({ dir });
        const err = await failingPull(small, `${R}/eight:v1`);
        assert.match(err, /no space|ENOSPC|disk full|space left/i);
        // What it wrote before the disk filled stays as an ingest to resume.
        const active = await activeIngests(small);
        assert.ok(
          [...active.keys()].some((k) => k.includes(big.layers[0]!.desc.digest)),
          `partial ingest kept: ${[...active.keys()]}`,
        );
      } finally {
        await small?.stop();
        await run("umount", [`${dir}/root`]);
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    });
  },
});
