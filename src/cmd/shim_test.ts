import assert from "node:assert/strict";
import { parseShimArgs } from "./shim.ts";

Deno.test("shim args: containerd's start command line", () => {
  const { flags, action } = parseShimArgs([
    "-namespace",
    "default",
    "-address",
    "/run/containerd/containerd.sock",
    "-publish-binary",
    "/usr/bin/containerd",
    "-id",
    "c1",
    "-debug",
    "start",
  ]);
  assert.equal(action, "start");
  assert.equal(flags.namespace, "default");
  assert.equal(flags.address, "/run/containerd/containerd.sock");
  assert.equal(flags.publishBinary, "/usr/bin/containerd");
  assert.equal(flags.id, "c1");
  assert.equal(flags.debug, true);
});

Deno.test("shim args: -name=value, double dashes and -bundle for delete", () => {
  const { flags, action } = parseShimArgs([
    "--namespace=k8s.io",
    "-id=c2",
    "-bundle",
    "/run/b/c2",
    "-debug=false",
    "delete",
  ]);
  assert.equal(action, "delete");
  assert.equal(flags.namespace, "k8s.io");
  assert.equal(flags.id, "c2");
  assert.equal(flags.bundle, "/run/b/c2");
  assert.equal(flags.debug, false);
});

Deno.test("shim args: bad input names what is wrong", () => {
  assert.throws(
    () => parseShimArgs(["-nope", "x", "start"]),
    /flag provided but not defined: -nope/,
  );
  assert.throws(() => parseShimArgs(["-namespace"]), /flag needs an argument: -namespace/);
  assert.throws(() => parseShimArgs(["-namespace", "n", "-id", "x"]), /missing action/);
  assert.throws(() => parseShimArgs(["-id", "x", "start"]), /namespace cannot be empty/);
  assert.throws(() => parseShimArgs(["-namespace", "n", "start"]), /id cannot be empty/);
});
