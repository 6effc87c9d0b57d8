import assert from "node:assert/strict";
import { readonlyView } from "./run.ts";

Deno.test("readonlyView: one layer is a read-only bind, several a read-only overlay of the lowers", () => {
  const upper = ["upperdir=/s/9/fs", "workdir=/s/9/work"];
  assert.deepEqual(
    readonlyView([{
      type: "overlay",
      source: "overlay",
      options: ["index=off", ...upper, "lowerdir=/s/1/fs"],
    }]),
    [{ type: "bind", source: "/s/1/fs", options: ["rbind", "ro"] }],
  );
  assert.deepEqual(
    readonlyView([{
      type: "overlay",
      source: "overlay",
      options: ["index=off", ...upper, "lowerdir=/s/2/fs:/s/1/fs"],
    }]),
    [{
      type: "overlay",
      source: "overlay",
      options: ["index=off", "lowerdir=/s/2/fs:/s/1/fs", "ro"],
    }],
  );
  // The native snapshotter's rw bind becomes read-only; anything else is left as is.
  assert.deepEqual(
    readonlyView([{ type: "bind", source: "/s/3/fs", options: ["rbind", "rw"] }]),
    [{ type: "bind", source: "/s/3/fs", options: ["rbind", "ro"] }],
  );
  const two = [
    { type: "bind", source: "/a", options: ["rbind"] },
    { type: "bind", source: "/b", options: ["rbind"] },
  ];
  assert.deepEqual(readonlyView(two), two);
});
