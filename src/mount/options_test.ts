import assert from "node:assert/strict";
import { compactLowerdirs, MS, parseMountOptions, splitLowerdirs } from "./options.ts";

Deno.test("parseMountOptions splits flags from data, in order", () => {
  const p = parseMountOptions([
    "ro",
    "rbind",
    "nosuid",
    "nodev",
    "noexec",
    "lowerdir=/a",
    "index=off",
  ]);
  assert.equal(p.flags, MS.RDONLY | MS.BIND | MS.REC | MS.NOSUID | MS.NODEV | MS.NOEXEC);
  assert.equal(p.data, "lowerdir=/a,index=off");
  assert.equal(p.loop, false);
  assert.equal(parseMountOptions(["ro", "rw"]).flags, 0);
  assert.equal(
    parseMountOptions(["rprivate", "remount", "defaults"]).flags,
    MS.PRIVATE | MS.REC | MS.REMOUNT,
  );
  assert.equal(parseMountOptions(["loop"]).loop, true);
});

Deno.test("splitLowerdirs honours escaped colons", () => {
  assert.deepEqual(splitLowerdirs("/a:/b\\:c:/d"), ["/a", "/b:c", "/d"]);
});

Deno.test("compactLowerdirs makes layer paths relative to their common directory", () => {
  const c = compactLowerdirs([
    "upperdir=/r/s/9/fs",
    "lowerdir=/r/s/2/fs:/r/s/10/fs:/r/s/1/fs",
  ]);
  assert.deepEqual(c, { dir: "/r/s", options: ["upperdir=/r/s/9/fs", "lowerdir=2/fs:10/fs:1/fs"] });
  assert.equal(compactLowerdirs(["lowerdir=/only/one"]), undefined);
  assert.equal(compactLowerdirs(["upperdir=/x"]), undefined);
});
