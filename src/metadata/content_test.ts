import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { isKind } from "../core/errdefs.ts";
import { LocalContentStore } from "../content/store.ts";
import { Logger } from "../util/log.ts";
import { ContentStore } from "./content.ts";
import { MetaDb } from "./db.ts";
import { LeaseStore } from "./leases.ts";
import { NamespaceStore } from "./namespaces.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const sha = (s: string) => "sha256:" + createHash("sha256").update(enc(s)).digest("hex");

interface Env {
  store: ContentStore;
  db: MetaDb;
  namespaces: NamespaceStore;
  leases: LeaseStore;
  root: string;
}

async function withStore(fn: (e: Env) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "berth-meta-content-" });
  const db = new MetaDb(`${dir}/meta.db`);
  try {
    const log = new Logger("error");
    const namespaces = new NamespaceStore(db);
    const leases = new LeaseStore(db, namespaces);
    const local = new LocalContentStore(`${dir}/content`, log);
    const store = new ContentStore({ db, namespaces, leases, local, log });
    await fn({ store, db, namespaces, leases, root: `${dir}/content` });
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function put(store: ContentStore, ns: string, ref: string, s: string): Promise<string> {
  const w = await store.writer(ns, ref);
  await w.write(enc(s));
  return await w.commit(s.length, sha(s));
}

function files(root: string): string[] {
  return [...Deno.readDirSync(`${root}/blobs/sha256`)].map((e) => e.name);
}

Deno.test("a blob is visible only where recorded; an expected digest on disk is shared", async () => {
  await withStore(async ({ store, root, namespaces }) => {
    const d = await put(store, "a", "r", "shared bytes");
    assert.equal(store.info("a", d).size, 12);
    assert.throws(() => store.info("b", d), (e) => isKind(e, "not_found"));
    assert.deepEqual(store.list("b"), []);
    // A size that disagrees with the blob on disk gets an ordinary ingest.
    const w = await store.writer("b", "r", { expected: d, total: 5 });
    w.close();
    await store.abort("b", "r");
    await assert.rejects(
      store.writer("b", "r", { expected: d, labels: { via: "share" } }),
      (e) => isKind(e, "already_exists"),
    );
    assert.deepEqual(store.info("b", d).labels, { via: "share" });
    assert.equal(namespaces.get("b").name, "b");
    assert.deepEqual(files(root), [d.slice(7)]);
    await assert.rejects(
      store.writer("a", "again", { expected: d }),
      (e) => isKind(e, "already_exists"),
    );
    store.delete("a", d);
    assert.deepEqual(files(root), [d.slice(7)], "b still holds the bytes");
    store.delete("b", d);
    assert.deepEqual(files(root), []);
    assert.throws(() => store.delete("b", d), (e) => isKind(e, "not_found"));
  });
});

Deno.test("committing a blob the namespace already has is already exists, and ends the ingest", async () => {
  await withStore(async ({ store }) => {
    await put(store, "n", "one", "dup");
    const w = await store.writer("n", "two");
    await w.write(enc("dup"));
    await assert.rejects(w.commit(3, ""), (e) => isKind(e, "already_exists"));
    assert.deepEqual(await store.listStatuses("n"), []);
  });
});

Deno.test("the same ref in two namespaces is two ingests", async () => {
  await withStore(async ({ store }) => {
    const a = await store.writer("a", "same");
    const b = await store.writer("b", "same");
    await a.write(enc("aaa"));
    await b.write(enc("b"));
    a.close();
    b.close();
    assert.equal((await store.status("a", "same")).offset, 3);
    assert.equal((await store.status("b", "same")).offset, 1);
    await assert.rejects(store.status("c", "same"), (e) => isKind(e, "not_found"));
    const w = await store.writer("a", "other", { expected: sha("zzz") });
    w.close();
    assert.deepEqual((await store.listStatuses("a", ["ref==other"])).map((s) => s.ref), ["other"]);
    assert.deepEqual(
      (await store.listStatuses("a", [`expected==${sha("zzz")}`])).map((s) => s.ref),
      ["other"],
    );
    assert.deepEqual((await store.listStatuses("a")).map((s) => s.ref), ["other", "same"]);
  });
});

Deno.test("labels change only through label paths", async () => {
  await withStore(async ({ store }) => {
    const d = await put(store, "n", "r", "labelled");
    assert.deepEqual(store.update("n", d, { a: "1", b: "2" }, []).labels, { a: "1", b: "2" });
    assert.deepEqual(store.update("n", d, { c: "3" }, ["labels.c", "labels.a"]).labels, {
      b: "2",
      c: "3",
    });
    assert.deepEqual(store.update("n", d, { x: "y" }, ["labels"]).labels, { x: "y" });
    assert.throws(
      () => store.update("n", d, {}, ["size"]),
      (e) => isKind(e, "invalid_argument") && /cannot update size field/.test(String(e)),
    );
    assert.throws(() => store.update("n", sha("nope"), {}, []), (e) => isKind(e, "not_found"));
    assert.throws(() => store.info("n", "sha256:short"), (e) => isKind(e, "invalid_argument"));
    assert.deepEqual(store.list("n", ["labels.x==y"]).map((i) => i.digest), [d]);
    assert.deepEqual(store.list("n", ["labels.x==z"]), []);
    assert.deepEqual(store.list("n", ["size==8"]).map((i) => i.digest), [d]);
  });
});

Deno.test("a lease holds the ingest and then the blob; an unknown lease is refused", async () => {
  await withStore(async ({ store, leases }) => {
    await assert.rejects(store.writer("n", "r", { lease: "none" }), (e) => isKind(e, "not_found"));
    leases.create("n", "l1");
    const w = await store.writer("n", "r", { lease: "l1" });
    assert.deepEqual(leases.listResources("n", "l1"), [{ type: "ingests", id: "r" }]);
    await w.write(enc("held"));
    const d = await w.commit(4, "");
    assert.deepEqual(leases.listResources("n", "l1"), [{ type: "content", id: d }]);
    store.delete("n", d, "l1");
    assert.deepEqual(leases.listResources("n", "l1"), []);
  });
});
