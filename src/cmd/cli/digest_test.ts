import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chainIds, sha256Hex } from "./digest.ts";

Deno.test("sha256Hex matches node:crypto for text and bytes", async () => {
  for (const v of ["", "abc", "ä/ü", new Uint8Array([0, 1, 255])]) {
    assert.equal(await sha256Hex(v), createHash("sha256").update(v).digest("hex"));
  }
});

Deno.test("chainIds follows the image spec: ChainID(L0..n) = sha256(ChainID(n-1) + ' ' + DiffID(n))", async () => {
  const d = (c: string) => `sha256:${c.repeat(64)}`;
  const one = [d("a")];
  assert.deepEqual(await chainIds(one), one);
  const ids = await chainIds([d("a"), d("b"), d("c")]);
  const h = (s: string) => `sha256:${createHash("sha256").update(s).digest("hex")}`;
  const second = h(`${d("a")} ${d("b")}`);
  assert.deepEqual(ids, [d("a"), second, h(`${second} ${d("c")}`)]);
  assert.deepEqual(await chainIds([]), []);
});
