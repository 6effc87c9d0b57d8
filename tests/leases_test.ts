import assert from "node:assert/strict";
import { ok, startDaemon } from "./_harness.ts";
import { Client } from "../src/cmd/cli/client.ts";
import { Leases } from "../src/gen/containerd/services/leases/v1/leases_pb.ts";
import { isKind } from "../src/core/errdefs.ts";

const EXPIRE = "containerd.io/gc.expire";
const RFC3339 = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/;

/** The expire label's time in the row of lease `id` of a leases ls table, in ms. */
function expiryIn(table: string, id: string): number {
  const row = table.split("\n").find((l) => l.startsWith(`${id} `));
  assert.ok(row, `lease ${id} in:\n${table}`);
  const m = new RegExp(`${EXPIRE}=(${RFC3339.source})`).exec(row);
  assert.ok(m, `expire label in: ${row}`);
  return Date.parse(m[1]!);
}

Deno.test("ctr leases create, ls, rm against berth", async () => {
  await using d = await startDaemon();
  const made = ok(await d.ctr(["leases", "create"])).stdout.trim();
  assert.match(made, /^\S+$/);
  ok(await d.ctr(["leases", "create", "--id", "x", "--expires", "1h", "team=a"]));
  const ls = ok(await d.ctr(["leases", "ls"])).stdout;
  const [header, ...rows] = ls.trim().split("\n");
  assert.match(header!, /^ID\s+CREATED AT\s+LABELS\s*$/);
  assert.equal(rows.length, 2);
  // ctr's default expiry is 24h; --expires 1h gives an hour.
  const day = expiryIn(ls, made) - Date.now();
  assert.ok(day > 23.9 * 3600e3 && day <= 24 * 3600e3 + 2000, `24h expiry, got ${day} ms`);
  const hour = expiryIn(ls, "x") - Date.now();
  assert.ok(hour > 3590e3 && hour <= 3602e3, `1h expiry, got ${hour} ms`);
  assert.match(
    rows.find((r) => r.startsWith("x "))!,
    new RegExp(`^x\\s+${RFC3339.source}\\s+${EXPIRE}=${RFC3339.source},team=a\\s*$`),
  );
  assert.equal(ok(await d.ctr(["leases", "ls", "-q", "labels.team==a"])).stdout, "x\n");
  assert.equal(ok(await d.ctr(["leases", "ls", "-q", `id==${made}`])).stdout, `${made}\n`);
  assert.equal(ok(await d.ctr(["leases", "rm", "x"])).stdout, "x\n");
  assert.equal(ok(await d.ctr(["leases", "ls", "-q"])).stdout, `${made}\n`);
  const missing = await d.ctr(["leases", "rm", "x"]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /lease "x": not found/);
  const dup = await d.ctr(["leases", "create", "--id", made]);
  assert.notEqual(dup.code, 0);
  assert.match(dup.stderr, /already exists/);
});

Deno.test("berth leases ls, create, rm with --json, filters and errors", async () => {
  await using d = await startDaemon();
  assert.equal(
    ok(await d.berth(["leases", "create", "--id", "b1", "-x", "30m", "k=v"])).stdout,
    "b1\n",
  );
  assert.equal(
    ok(await d.berth(["leases", "create", "--id", "b2", "--expires", "0"])).stdout,
    "b2\n",
  );
  const generated = ok(await d.berth(["lease", "create"])).stdout.trim();
  assert.match(generated, /^\d+-[A-Za-z0-9_-]{4}$/);
  const js = JSON.parse(ok(await d.berth(["leases", "ls", "--json"])).stdout) as Array<{
    id: string;
    createdAt: string;
    labels: Record<string, string>;
  }>;
  assert.deepEqual(js.map((l) => l.id).sort(), [generated, "b1", "b2"].sort());
  const b1 = js.find((l) => l.id === "b1")!;
  assert.equal(b1.labels.k, "v");
  const left = Date.parse(b1.labels[EXPIRE]!) - Date.now();
  assert.ok(left > 29 * 60e3 && left <= 30 * 60e3 + 2000, `30m expiry, got ${left} ms`);
  assert.ok(Math.abs(Date.parse(b1.createdAt) - Date.now()) < 60e3);
  assert.deepEqual(js.find((l) => l.id === "b2")!.labels, {}, "--expires 0 never expires");
  const table = ok(await d.berth(["leases", "ls"])).stdout;
  assert.match(table, /^ID\s+CREATED AT\s+LABELS\n/);
  assert.match(
    table,
    new RegExp(`^b1\\s+${RFC3339.source}\\s+${EXPIRE}=${RFC3339.source},k=v$`, "m"),
  );
  assert.match(table, new RegExp(`^b2\\s+${RFC3339.source}\\s+-$`, "m"));
  assert.equal(ok(await d.berth(["leases", "ls", "-q", "labels.k==v"])).stdout, "b1\n");
  assert.equal(ok(await d.berth(["leases", "ls", "-q", "id==nope"])).stdout, "");
  // ctr sees what berth made.
  assert.match(ok(await d.ctr(["leases", "ls"])).stdout, /^b1\s+/m);
  const rm = await d.berth(["leases", "rm", "b1", "nope", "b2"]);
  assert.equal(rm.code, 1);
  assert.equal(rm.stdout, "b1\nb2\n");
  assert.match(rm.stderr, /berth: lease "nope": not found/);
  assert.equal(ok(await d.berth(["leases", "ls", "-q"])).stdout, `${generated}\n`);
  const badDuration = await d.berth(["leases", "create", "--expires", "soon"]);
  assert.equal(badDuration.code, 2);
  assert.match(badDuration.stderr, /invalid duration "soon"/);
  const badFilter = await d.berth(["leases", "ls", "id=="]);
  assert.equal(badFilter.code, 1);
  assert.match(badFilter.stderr, /filter "id==" .*invalid argument/);
  const noId = await d.berth(["leases", "rm"]);
  assert.equal(noId.code, 2);
  assert.match(ok(await d.berth(["leases", "--help"])).stdout, /Usage: berth leases/);
  assert.match(ok(await d.berth(["leases", "create", "--help"])).stdout, /--expires/);
});

Deno.test("lease resources through the API: add, list, delete, refused types", async () => {
  await using d = await startDaemon();
  const c = new Client({ address: d.sock, namespace: "res" });
  try {
    const { lease } = await c.call(Leases, "create", { id: "", labels: { a: "b" } });
    const id = lease!.id;
    assert.ok(id.length > 0);
    const digest = "sha256:" + "0".repeat(64);
    await c.call(Leases, "addResource", { id, resource: { type: "content", id: digest } });
    await c.call(Leases, "addResource", {
      id,
      resource: { type: "snapshots/overlayfs", id: "k1" },
    });
    await c.call(Leases, "addResource", { id, resource: { type: "ingests", id: "ref" } });
    let res = await c.call(Leases, "listResources", { id });
    assert.deepEqual(res.resources.map((r) => `${r.type} ${r.id}`), [
      `content ${digest}`,
      "ingests ref",
      "snapshots/overlayfs k1",
    ]);
    await c.call(Leases, "deleteResource", { id, resource: { type: "ingests", id: "ref" } });
    res = await c.call(Leases, "listResources", { id });
    assert.equal(res.resources.length, 2);
    await assert.rejects(
      c.call(Leases, "addResource", { id, resource: { type: "images", id: "busybox" } }),
      (e) => isKind(e, "not_implemented") && /resource type "images" not supported/.test(String(e)),
    );
    await assert.rejects(
      c.call(Leases, "addResource", { id, resource: { type: "content", id: "sha256:12" } }),
      (e) =>
        isKind(e, "invalid_argument") && /invalid content resource id "sha256:12"/.test(String(e)),
    );
    await assert.rejects(
      c.call(Leases, "listResources", { id: "nope" }),
      (e) => isKind(e, "not_found") && /lease "nope": not found/.test(String(e)),
    );
    await assert.rejects(
      c.call(Leases, "delete", { id: "nope" }),
      (e) => isKind(e, "not_found"),
    );
    const list = await c.call(Leases, "list", { filters: ["labels.a==b"] });
    assert.deepEqual(list.leases.map((l) => l.id), [id]);
    await c.call(Leases, "delete", { id, sync: true });
    assert.deepEqual((await c.call(Leases, "list", { filters: [] })).leases, []);
  } finally {
    c.close();
  }
});

Deno.test("leases survive a restart and keep their namespace from removal", async () => {
  await using d = await startDaemon();
  ok(await d.ctr(["-n", "keep", "leases", "create", "--id", "held", "--expires", "2h", "x=y"]));
  const before = ok(await d.ctr(["-n", "keep", "leases", "ls"])).stdout;
  const rm = await d.ctr(["namespaces", "rm", "keep"]);
  assert.notEqual(rm.code, 0);
  assert.match(
    rm.stderr,
    /namespace "keep" must be empty, but it still holds 1 leases: failed precondition/,
  );
  await d.restart();
  assert.equal(ok(await d.ctr(["-n", "keep", "leases", "ls"])).stdout, before);
  const c = new Client({ address: d.sock });
  try {
    const { Namespaces } = await import(
      "../src/gen/containerd/services/namespaces/v1/namespace_pb.ts"
    );
    await assert.rejects(
      c.call(Namespaces, "delete", { name: "keep" }),
      (e) => isKind(e, "failed_precondition") && /1 leases/.test(String(e)),
    );
  } finally {
    c.close();
  }
  ok(await d.ctr(["-n", "keep", "leases", "rm", "held"]));
  ok(await d.ctr(["namespaces", "rm", "keep"]));
});
