import assert from "node:assert/strict";
import { ok, startDaemon } from "./_harness.ts";

Deno.test("ctr version and plugins ls talk to berth", async () => {
  await using d = await startDaemon();
  const v = ok(await d.ctr(["version"]), "ctr version");
  assert.match(v.stdout, /Server:\s+Version:\s+0\.1\.0/);
  assert.match(v.stdout, /UUID: [0-9a-f-]{36}/);
  const p = ok(await d.ctr(["plugins", "ls"]), "ctr plugins ls");
  assert.match(p.stdout, /io\.containerd\.grpc\.v1\s+namespaces\s+-\s+ok/);
  assert.match(p.stdout, /io\.containerd\.grpc\.v1\s+version\s+/);
});

Deno.test("ctr namespaces create, ls, label, remove", async () => {
  await using d = await startDaemon();
  ok(await d.ctr(["namespaces", "create", "team-a", "owner=alice"]));
  let ls = ok(await d.ctr(["namespaces", "ls"]));
  assert.match(ls.stdout, /^team-a\s+owner=alice\s*$/m);
  ok(await d.ctr(["namespaces", "label", "team-a", "tier=gold"]));
  ls = ok(await d.ctr(["namespaces", "ls"]));
  assert.match(ls.stdout, /^team-a\s+owner=alice,tier=gold\s*$/m);
  ok(await d.ctr(["namespaces", "label", "team-a", "owner="]));
  ls = ok(await d.ctr(["namespaces", "ls", "-q"]));
  assert.deepEqual(ls.stdout.trim().split("\n"), ["team-a"]);
  const dup = await d.ctr(["namespaces", "create", "team-a"]);
  assert.notEqual(dup.code, 0);
  assert.match(dup.stderr, /namespace "team-a": already exists/);
  ok(await d.ctr(["namespaces", "remove", "team-a"]));
  ls = ok(await d.ctr(["namespaces", "ls", "-q"]));
  assert.equal(ls.stdout.trim(), "");
});

Deno.test("berth namespaces verbs, --json and errors", async () => {
  await using d = await startDaemon();
  ok(await d.berth(["namespaces", "create", "n1", "a=b"]));
  const js = JSON.parse(ok(await d.berth(["ns", "ls", "--json"])).stdout);
  assert.deepEqual(js, [{ name: "n1", labels: { a: "b" } }]);
  const filtered = ok(await d.berth(["ns", "ls", "-q", "labels.a==c"]));
  assert.equal(filtered.stdout.trim(), "");
  const bad = await d.berth(["ns", "create", "bad name!"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /namespace identifier "bad name!" must match/);
  const missing = await d.berth(["ns", "rm", "nope"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /namespace "nope": not found/);
  const help = ok(await d.berth(["ns", "--help"]));
  assert.match(help.stdout, /Usage: berth namespaces/);
});

Deno.test("an invalid namespace name in the call metadata gets INVALID_ARGUMENT", async () => {
  await using d = await startDaemon();
  const { Client } = await import("../src/cmd/cli/client.ts");
  const { Events } = await import("../src/gen/containerd/services/events/v1/events_pb.ts");
  const { isKind } = await import("../src/core/errdefs.ts");
  const c = new Client({ address: d.sock, namespace: "bad/ns" });
  try {
    await assert.rejects(
      c.call(Events, "publish", { topic: "/x", event: { typeUrl: "x", value: new Uint8Array() } }),
      (e) => isKind(e, "invalid_argument") && /namespace identifier "bad\/ns"/.test(String(e)),
    );
  } finally {
    c.close();
  }
});
