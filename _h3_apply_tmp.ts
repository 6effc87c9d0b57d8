import { applyLayer } from "./src/archive/apply.ts";
const dir = "/tmp/h3/refenv/oci/big";
const idx = JSON.parse(Deno.readTextFileSync(`${dir}/index.json`));
const blob = (d: string) => `${dir}/blobs/sha256/${d.slice(7)}`;
const m = JSON.parse(Deno.readTextFileSync(blob(idx.manifests[0].digest)));
const out = await Deno.makeTempDir({ prefix: "h3-apply-" });
let total = 0;
for (const [i, l] of m.layers.entries()) {
  const t = performance.now();
  using f = await Deno.open(blob(l.digest));
  await Deno.mkdir(`${out}/${i}`);
  const r = await applyLayer(f.readable, `${out}/${i}`, { mode: "overlay" });
  const ms = performance.now() - t; total += ms;
  console.log(i, l.size, (ms).toFixed(0), "ms", JSON.stringify(r).slice(0, 120));
}
console.log("total", total.toFixed(0));
await Deno.remove(out, { recursive: true });
