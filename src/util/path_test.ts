import assert from "node:assert/strict";
import * as node from "node:path";
import { dirname, isAbsolute, join, normalize, resolve } from "./path.ts";

const SAMPLES = [
  "",
  ".",
  "..",
  "/",
  "//",
  "///a//b/",
  "a",
  "a/",
  "a/b/../c",
  "a/../..",
  "../a/./b",
  "/a/b/../../..",
  "/./a/.",
  "a//b",
  "./",
  "/..",
  "a/b/c/../../d/",
  "//a",
  "...",
  ".a/..b",
];

Deno.test("isAbsolute, normalize and dirname answer as node:path.posix", () => {
  for (const p of SAMPLES) {
    assert.equal(isAbsolute(p), node.posix.isAbsolute(p), `isAbsolute(${JSON.stringify(p)})`);
    assert.equal(normalize(p), node.posix.normalize(p), `normalize(${JSON.stringify(p)})`);
    assert.equal(dirname(p), node.posix.dirname(p), `dirname(${JSON.stringify(p)})`);
  }
});

Deno.test("join and resolve answer as node:path.posix", () => {
  for (const a of SAMPLES) {
    for (const b of ["", "x", "/y", "../z", "w/"]) {
      assert.equal(
        join(a, b),
        node.posix.join(a, b),
        `join(${JSON.stringify(a)}, ${JSON.stringify(b)})`,
      );
      assert.equal(
        resolve(a, b),
        node.posix.resolve(a, b),
        `resolve(${JSON.stringify(a)}, ${JSON.stringify(b)})`,
      );
    }
  }
  assert.equal(join(), node.posix.join());
  assert.equal(resolve(), node.posix.resolve());
});
