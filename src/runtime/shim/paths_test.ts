import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { runcRoot, selfCommand, shimSocketPath, shimStateDir } from "./paths.ts";

Deno.test("shim paths: state dir follows berth's socket, else /run/berth", () => {
  const saved = Deno.env.get("BERTH_SHIM_STATE");
  Deno.env.delete("BERTH_SHIM_STATE");
  try {
    assert.equal(shimStateDir("/tmp/x/state/berth.sock"), "/tmp/x/state");
    assert.equal(shimStateDir("unix:///tmp/x/state/berth.sock"), "/tmp/x/state");
    assert.equal(shimStateDir("/run/containerd/containerd.sock"), "/run/berth");
    Deno.env.set("BERTH_SHIM_STATE", "/srv/state");
    assert.equal(shimStateDir("/run/containerd/containerd.sock"), "/srv/state");
  } finally {
    if (saved === undefined) Deno.env.delete("BERTH_SHIM_STATE");
    else Deno.env.set("BERTH_SHIM_STATE", saved);
  }
});

Deno.test("shim paths: socket named like containerd's, short enough for sun_path", async () => {
  const saved = Deno.env.get("BERTH_SHIM_STATE");
  Deno.env.delete("BERTH_SHIM_STATE");
  try {
    const hash = createHash("sha256").update("/run/berth/berth.sock/default/c1").digest("hex");
    assert.equal(
      await shimSocketPath("/run/berth/berth.sock", "default", "c1"),
      `/run/berth/s/${hash}`,
    );
    assert.notEqual(
      await shimSocketPath("/run/berth/berth.sock", "default", "c1"),
      await shimSocketPath("/run/berth/berth.sock", "other", "c1"),
    );
    const deep = `/tmp/${"d".repeat(60)}/berth.sock`;
    const p = await shimSocketPath(deep, "default", "c1");
    assert.ok(p.startsWith("/run/berth/s/"), p);
    assert.ok(new TextEncoder().encode(p).length < 108);
    assert.equal(runcRoot("/run/berth", "default"), "/run/berth/runc/default");
  } finally {
    if (saved !== undefined) Deno.env.set("BERTH_SHIM_STATE", saved);
  }
});

Deno.test("shim paths: re-running this program goes through deno with its config", () => {
  const { command, args } = selfCommand();
  assert.equal(command, Deno.execPath());
  // Under `deno test` the main module is this test file, beside no deno.json.
  assert.deepEqual(args.slice(0, 3), ["run", "-A", "--quiet"]);
  assert.ok(args.at(-1)!.endsWith(".ts"));
});
