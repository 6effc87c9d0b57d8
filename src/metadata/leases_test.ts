import assert from "node:assert/strict";
import { isKind } from "../core/errdefs.ts";
import { MetaDb } from "./db.ts";
import { NamespaceStore } from "./namespaces.ts";
import { EXPIRE_LABEL, LeaseStore } from "./leases.ts";

const D1 = "sha256:" + "1".repeat(64);

async function withStore(fn: (s: LeaseStore, ns: NamespaceStore) => void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "berth-leases-" });
  const db = new MetaDb(`${dir}/meta.db`);
  try {
    const ns = new NamespaceStore(db);
    fn(new LeaseStore(db, ns), ns);
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("lease create generates distinct ids, keeps given ones and refuses duplicates", () =>
  withStore((s, ns) => {
    const ids = new Set(Array.from({ length: 50 }, () => s.create("n", "").id));
    assert.equal(ids.size, 50);
    for (const id of ids) assert.match(id, /^\d+-[A-Za-z0-9_-]{4}$/);
    assert.deepEqual(ns.list().map((n) => n.name), ["n"]);
    // Ids as Go clients make them (base64url may end in "-" or hold "_-").
    assert.equal(s.create("n", "123-ab_-").id, "123-ab_-");
    assert.throws(() => s.create("n", "123-ab_-"), (e) => isKind(e, "already_exists"));
    assert.throws(
      () => s.create("n", "has space"),
      (e) => isKind(e, "invalid_argument") && /printable ASCII/.test(String(e)),
    );
  }));

Deno.test("lease labels: empty values dropped, expiry must be a time", () =>
  withStore((s) => {
    const l = s.create("n", "a", { k: "v", e: "", [EXPIRE_LABEL]: "2030-01-01T00:00:00Z" });
    assert.deepEqual(l.labels, { k: "v", [EXPIRE_LABEL]: "2030-01-01T00:00:00Z" });
    assert.throws(
      () => s.create("n", "b", { [EXPIRE_LABEL]: "tomorrow" }),
      (e) => isKind(e, "invalid_argument") && /not an RFC 3339 time/.test(String(e)),
    );
  }));

Deno.test("lease list filters on id and labels; delete reports a missing lease", () =>
  withStore((s) => {
    s.create("n", "a", { team: "x" });
    s.create("n", "b", { team: "y", "k.dot": "1" });
    s.create("other", "c");
    const ids = (f: string[]) => s.list("n", f).map((l) => l.id);
    assert.deepEqual(ids([]), ["a", "b"]);
    assert.deepEqual(ids(["id==b"]), ["b"]);
    assert.deepEqual(ids(["labels.team==x"]), ["a"]);
    assert.deepEqual(ids(['labels."k.dot"']), ["b"]);
    assert.deepEqual(ids(["id~=^[ab]$,labels.team!=x"]), ["b"]);
    s.delete("n", "a");
    assert.deepEqual(ids([]), ["b"]);
    assert.throws(
      () => s.delete("n", "a"),
      (e) => isKind(e, "not_found") && /lease "a": not found/.test(String(e)),
    );
  }));

Deno.test("lease resources: containerd 1.6's types only, idempotent, gone with the lease", () =>
  withStore((s) => {
    s.create("n", "l");
    s.addResource("n", "l", { type: "content", id: D1 });
    s.addResource("n", "l", { type: "content", id: D1 });
    s.addResource("n", "l", { type: "ingests", id: "ref-1" });
    s.addResource("n", "l", { type: "snapshots/overlayfs", id: "key" });
    assert.deepEqual(s.listResources("n", "l"), [
      { type: "content", id: D1 },
      { type: "ingests", id: "ref-1" },
      { type: "snapshots/overlayfs", id: "key" },
    ]);
    assert.equal(s.holds("n", { type: "content", id: D1 }), true);
    assert.throws(
      () => s.addResource("n", "l", { type: "images", id: "x" }),
      (e) => isKind(e, "not_implemented") && /resource type "images" not supported/.test(String(e)),
    );
    assert.throws(
      () => s.addResource("n", "l", { type: "content", id: "sha256:zz" }),
      (e) => isKind(e, "invalid_argument") && /invalid content resource id/.test(String(e)),
    );
    assert.throws(
      () => s.addResource("n", "l", { type: "snapshots", id: "k" }),
      (e) => isKind(e, "invalid_argument"),
    );
    assert.throws(
      () => s.addResource("n", "nope", { type: "ingests", id: "r" }),
      (e) => isKind(e, "not_found") && /lease "nope"/.test(String(e)),
    );
    s.deleteResource("n", "l", { type: "ingests", id: "ref-1" });
    s.deleteResource("n", "l", { type: "ingests", id: "never-added" });
    assert.equal(s.listResources("n", "l").length, 2);
    s.delete("n", "l");
    assert.equal(s.holds("n", { type: "content", id: D1 }), false);
    assert.throws(() => s.listResources("n", "l"), (e) => isKind(e, "not_found"));
  }));

Deno.test("an expired lease holds nothing", () =>
  withStore((s) => {
    s.create("n", "old", { [EXPIRE_LABEL]: "2001-01-01T00:00:00Z" });
    s.addResource("n", "old", { type: "ingests", id: "r" });
    assert.equal(s.holds("n", { type: "ingests", id: "r" }), false);
  }));
