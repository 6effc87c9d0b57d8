import assert from "node:assert/strict";
import { familiarReference, formatReference, parseReference } from "./reference.ts";
import { isKind } from "../core/errdefs.ts";

const D = "sha256:" + "ab".repeat(32);

Deno.test("reference: Docker normalization", () => {
  const cases: Array<[string, string]> = [
    ["busybox", "docker.io/library/busybox:latest"],
    ["busybox:1.36", "docker.io/library/busybox:1.36"],
    ["user/app", "docker.io/user/app:latest"],
    ["index.docker.io/library/busybox", "docker.io/library/busybox:latest"],
    ["localhost:5000/x:tag", "localhost:5000/x:tag"],
    ["localhost/x", "localhost/x:latest"],
    ["127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c:latest"],
    [`host.example/x@${D}`, `host.example/x@${D}`],
    [`x:tag@${D}`, `docker.io/library/x:tag@${D}`],
    ["[::1]:5000/x:v1", "[::1]:5000/x:v1"],
    ["a.b/c__d.e-f---g:_T.1-x", "a.b/c__d.e-f---g:_T.1-x"],
  ];
  for (const [input, want] of cases) {
    assert.equal(formatReference(parseReference(input)), want, input);
  }
});

Deno.test("reference: parts and familiar form", () => {
  const r = parseReference(`localhost:5000/x:tag@${D}`);
  assert.deepEqual(r, { domain: "localhost:5000", path: "x", tag: "tag", digest: D });
  assert.equal(familiarReference(parseReference("busybox")), "busybox:latest");
  assert.equal(familiarReference(parseReference("user/app:1")), "user/app:1");
  // A digest alone means no implicit latest tag.
  assert.equal(parseReference(`busybox@${D}`).tag, undefined);
});

Deno.test("reference: invalid input names the reference", () => {
  for (
    const bad of [
      "",
      "library/UPPER",
      "docker.io/Library/x",
      "x:",
      "x@sha256:abc",
      "x:t@",
      "a//b",
      "-x",
      "x:" + "t".repeat(129),
      "host:port:x/y",
    ]
  ) {
    assert.throws(() => parseReference(bad), (e: Error) => {
      assert.ok(isKind(e, "invalid_argument"), `${bad}: ${e.message}`);
      assert.ok(e.message.includes(`"${bad.trim()}"`), e.message);
      return true;
    }, bad);
  }
});
