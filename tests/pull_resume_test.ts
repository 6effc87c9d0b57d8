/**
 * A pull survives `kill -9` of the daemon: the test builds a one-layer image
 * of ~150 MB of random data, serves it through a front that paces the blob
 * (so there is a moment to kill in), kills the daemon once some bytes are on
 * disk, restarts it and pulls again. The second pull completes, asks the
 * registry for the rest with a Range request, and fetches only what was not
 * on disk.
 */
import assert from "node:assert/strict";
import { ok, startDaemon, waitFor } from "./_harness.ts";
import { buildBigImage, front, proxy, startRegistryEnv } from "./_registry.ts";

const MB = 1 << 20;
const SIZE_MB = Number(Deno.env.get("BERTH_RESUME_MB") ?? 150);
/** Pace of the blob while the first pull runs (bytes per second). */
const PACE = 25 * MB;

/** The ingest of `digest` in `ctr content active`: its offset in bytes, rounded as ctr prints it. */
function activeOffset(out: string, digest: string): number | undefined {
  for (const line of out.trim().split("\n").slice(1)) {
    const [ref, size] = line.trim().split(/\s+/);
    if (!ref?.includes(digest) || !size) continue;
    const m = /^([\d.]+)\s*([kMG]?B)$/.exec(size);
    if (!m) throw new Error(`Cannot parse size "${size}"`);
    return Number(m[1]) * { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 }[m[2] as "B" | "kB" | "MB" | "GB"];
  }
  return undefined;
}

Deno.test({
  name: "pull resume: kill -9 mid-pull, restart, the pull fetches only what was missing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using env = await startRegistryEnv("berth-pull-resume-");
    const img = await buildBigImage(env.tmp, env.host, "big", SIZE_MB);
    const layer = img.layers[0]!.desc;
    assert.ok(layer.size > (SIZE_MB - 1) * MB, `layer of ${layer.size} bytes`);

    let pace = true;
    const fr = front(async (req, url) => {
      const res = await proxy(req, url, env.port);
      if (!pace || req.method !== "GET" || !url.pathname.endsWith(layer.digest) || !res.body) {
        return res;
      }
      const reader = res.body.getReader();
      return new Response(
        new ReadableStream<Uint8Array>({
          async pull(c) {
            const { done, value } = await reader.read();
            if (done) return c.close();
            await new Promise((r) => setTimeout(r, (value.length / PACE) * 1000));
            c.enqueue(value);
          },
          cancel: (why) => reader.cancel(why),
        }),
        { status: res.status, headers: res.headers },
      );
    });
    env.defer(() => fr.close());
    const ref = `${fr.host}/big:v1`;

    await using d = await startDaemon({ logLevel: "info" });
    const first = d.berth(["pull", ref]);
    let before = 0;
    await waitFor("some of the layer on disk", async () => {
      const out = (await d.ctr(["content", "active"])).stdout;
      before = activeOffset(out, layer.digest) ?? 0;
      return before > 10 * MB;
    }, 60_000);
    await d.kill(); // SIGKILL: no chance to flush or clean up
    const killed = await first;
    assert.notEqual(killed.code, 0, "the first pull failed with the daemon gone");
    assert.ok(before < layer.size, "killed before the layer was complete");

    await d.start();
    const out = ok(await d.ctr(["content", "active"])).stdout;
    const onDisk = activeOffset(out, layer.digest);
    assert.ok(onDisk !== undefined, `the partial ingest survived the restart:\n${out}`);
    assert.ok(onDisk >= before - 1e6, `kept at least what was seen before (${before})`);
    assert.ok(onDisk < layer.size);
    assert.equal(ok(await d.berth(["images", "-q"])).stdout, "", "no image after the kill");

    pace = false;
    const logBefore = fr.log.length;
    const r = ok(await d.berth(["pull", "--json", ref]), "pull after restart");
    const res = JSON.parse(r.stdout) as { digest: string; fetchedBytes: number };
    assert.equal(res.digest, img.manifest.digest);
    // Only the missing part was fetched (ctr rounds the offset to 3 digits: 1 MB slack).
    assert.ok(res.fetchedBytes < layer.size, `fetched ${res.fetchedBytes} < ${layer.size}`);
    assert.ok(
      Math.abs(res.fetchedBytes - (layer.size - onDisk)) < 1e6,
      `fetched ${res.fetchedBytes}, expected about ${layer.size - onDisk} (${onDisk} on disk)`,
    );
    const rangeGets = fr.log.slice(logBefore).filter((l) =>
      l.path.endsWith(layer.digest) && l.method === "GET"
    );
    assert.equal(rangeGets.length, 1, "one request for the layer");
    assert.match(rangeGets[0]!.range ?? "", /^bytes=[1-9]\d*-$/, "asked for the rest only");
    console.log(
      `layer ${layer.size} B, on disk after restart ${onDisk} B, fetched ${res.fetchedBytes} B`,
    );

    // The pulled image is whole: listed, and its layer committed.
    assert.equal(ok(await d.berth(["images", "-q"])).stdout.trim(), ref);
    assert.ok(ok(await d.berth(["content", "ls", "-q"])).stdout.includes(layer.digest));
    assert.equal(ok(await d.ctr(["content", "active"])).stdout.trim().split("\n").length, 1);
  },
});
