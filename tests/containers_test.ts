import assert from "node:assert/strict";
import { ok, startDaemon } from "./_harness.ts";
import { Client } from "../src/cmd/cli/client.ts";
import { Containers } from "../src/gen/containerd/services/containers/v1/containers_pb.ts";
import { isKind } from "../src/core/errdefs.ts";

const SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const spec = (args: string[]) => ({
  typeUrl: SPEC_URL,
  value: new TextEncoder().encode(JSON.stringify({ ociVersion: "1.0.2", process: { args } })),
});

Deno.test("containers: created through the API, seen and removed by ctr", async () => {
  await using d = await startDaemon();
  const c = new Client({ address: d.sock, namespace: "default" });
  try {
    const res = await c.call(Containers, "create", {
      container: {
        id: "web-1",
        image: "localhost:5000/busybox:latest",
        runtime: { name: "io.containerd.runc.v2" },
        spec: spec(["sleep", "1"]),
        snapshotter: "overlayfs",
        labels: { app: "web" },
      },
    });
    assert.equal(res.container?.id, "web-1");
    assert.ok(res.container?.createdAt);

    const ls = ok(await d.ctr(["containers", "ls"]));
    assert.match(
      ls.stdout,
      /^web-1\s+localhost:5000\/busybox:latest\s+io\.containerd\.runc\.v2\s*$/m,
    );
    const info = JSON.parse(ok(await d.ctr(["containers", "info", "web-1"])).stdout);
    assert.equal(info.ID, "web-1");
    assert.equal(info.Labels.app, "web");
    assert.deepEqual(info.Spec.process.args, ["sleep", "1"]);
    assert.equal(info.Snapshotter, "overlayfs");

    ok(await d.ctr(["containers", "label", "web-1", "tier=front"]));
    const got = await c.call(Containers, "get", { id: "web-1" });
    assert.deepEqual(got.container?.labels, { app: "web", tier: "front" });

    const filtered = ok(await d.ctr(["containers", "ls", "-q", "labels.tier==front"]));
    assert.equal(filtered.stdout.trim(), "web-1");
    const none = ok(await d.ctr(["containers", "ls", "-q", "image~=nginx"]));
    assert.equal(none.stdout.trim(), "");

    // Close our channel first: Deno's http2 client can crash on the GOAWAY of a daemon going down.
    c.close();
    await d.restart();
    const after = ok(await d.ctr(["containers", "ls", "-q"]));
    assert.equal(after.stdout.trim(), "web-1");

    ok(await d.ctr(["containers", "rm", "web-1"]));
    assert.equal(ok(await d.ctr(["containers", "ls", "-q"])).stdout.trim(), "");
  } finally {
    c.close();
  }
});

Deno.test("containers: bad input is refused with the right class", async () => {
  await using d = await startDaemon();
  const c = new Client({ address: d.sock, namespace: "default" });
  try {
    const base = { id: "c1", runtime: { name: "io.containerd.runc.v2" }, spec: spec(["true"]) };
    await c.call(Containers, "create", { container: base });
    await assert.rejects(
      c.call(Containers, "create", { container: base }),
      (e) => isKind(e, "already_exists") && /container "c1": already exists/.test(String(e)),
    );
    await assert.rejects(
      c.call(Containers, "create", { container: { ...base, id: "c2", runtime: { name: "" } } }),
      (e) => isKind(e, "invalid_argument") && /runtime name must be set/.test(String(e)),
    );
    await assert.rejects(
      c.call(Containers, "create", { container: { ...base, id: "c3", snapshotKey: "k" } }),
      (e) => isKind(e, "invalid_argument") && /snapshotter must be set/.test(String(e)),
    );
    await assert.rejects(
      c.call(Containers, "create", { container: { ...base, id: "bad id" } }),
      (e) => isKind(e, "invalid_argument"),
    );
    await assert.rejects(
      c.call(Containers, "update", { container: { ...base }, updateMask: { paths: ["runtime"] } }),
      (e) => isKind(e, "invalid_argument") && /cannot update "runtime"/.test(String(e)),
    );
    await assert.rejects(
      c.call(Containers, "get", { id: "nope" }),
      (e) => isKind(e, "not_found") && /container "nope": not found/.test(String(e)),
    );
    const rm = await d.ctr(["namespaces", "rm", "default"]);
    assert.notEqual(rm.code, 0);
    assert.match(rm.stderr, /1 containers/);
  } finally {
    c.close();
  }
});
