/**
 * The conformance suite every snapshotter passes (in the spirit of
 * containerd's SnapshotterSuite; our own cases). Each case runs on a fresh
 * SQLite database and directory, mounts what the snapshotter hands out with
 * src/mount, checks files as a container would see them, and fails if any
 * mount is left behind.
 */
import assert from "node:assert/strict";
import { MetaDb } from "../metadata/db.ts";
import { NamespaceStore } from "../metadata/namespaces.ts";
import { LeaseStore } from "../metadata/leases.ts";
import { Logger } from "../util/log.ts";
import { isKind } from "../core/errdefs.ts";
import { cstr, libc } from "../sys/libc.ts";
import { type Mount, mountsUnder, withTempMount } from "../mount/mod.ts";
import type { Scope, Snapshotter } from "./snapshotter.ts";

export interface SuiteContext {
  /** The snapshotter's own directory (not yet created). */
  root: string;
  db: MetaDb;
  namespaces: NamespaceStore;
  leases: LeaseStore;
  log: Logger;
}

export type SnapshotterFactory = (ctx: SuiteContext) => Promise<Snapshotter>;

export interface SuiteOptions {
  /** Also mount a stack of 150 layers under a long root path. */
  manyLayers?: boolean;
}

interface Env extends SuiteContext {
  dir: string;
  sn: Snapshotter;
}

const NS: Scope = { namespace: "suite" };

async function withEnv(
  factory: SnapshotterFactory,
  fn: (env: Env) => Promise<void>,
  opts: { rootName?: string } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "berth-snapshots-suite-" });
  const db = new MetaDb(`${dir}/meta.db`);
  try {
    const namespaces = new NamespaceStore(db);
    const leases = new LeaseStore(db, namespaces);
    const log = new Logger("error");
    const root = `${dir}/${opts.rootName ?? "snapshots"}`;
    const sn = await factory({ root, db, namespaces, leases, log });
    try {
      await fn({ dir, root, db, namespaces, leases, log, sn });
    } finally {
      assert.deepEqual(
        (await mountsUnder(dir)).map((m) => m.mountPoint),
        [],
        "mounts were left behind",
      );
    }
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function kind(k: string) {
  return (e: unknown) => {
    assert.ok(isKind(e, k as never), `want a ${k} error, got: ${e}`);
    return true;
  };
}

/** Writes files into a fresh active snapshot through its mounts. */
async function fill(mounts: Mount[], files: Record<string, string | null>, dir: string) {
  await withTempMount(mounts, async (root) => {
    for (const [path, content] of Object.entries(files)) {
      const p = `${root}/${path}`;
      if (content === null) await Deno.remove(p, { recursive: true });
      else {
        await Deno.mkdir(p.slice(0, p.lastIndexOf("/")), { recursive: true });
        await Deno.writeTextFile(p, content);
      }
    }
  }, { dir });
}

/** The files (not dirs) visible through `mounts`, path → content. */
async function read(mounts: Mount[], dir: string): Promise<Record<string, string>> {
  return await withTempMount(mounts, async (root) => {
    const out: Record<string, string> = {};
    const walk = async (rel: string) => {
      for await (const e of Deno.readDir(`${root}/${rel}`)) {
        const p = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory) await walk(p);
        else if (e.isFile) out[p] = await Deno.readTextFile(`${root}/${p}`);
      }
    };
    await walk("");
    return out;
  }, { dir });
}

/** Registers the suite's tests for the snapshotter `name`. */
export function snapshotterSuite(
  name: string,
  factory: SnapshotterFactory,
  opts: SuiteOptions = {},
): void {
  const test = (title: string, fn: (env: Env) => Promise<void>) =>
    Deno.test(`${name}: ${title}`, () => withEnv(factory, fn));

  test("prepare, commit and stack: files show through the mounts", async ({ sn, dir }) => {
    const m1 = await sn.prepare(NS, "k1");
    await fill(m1, { "a": "a1", "d/b": "b1", "keep": "k" }, dir);
    await sn.commit(NS, "c1", "k1");
    await assert.rejects(sn.stat(NS, "k1"), kind("not_found"));

    const m2 = await sn.prepare(NS, "k2", { parent: "c1" });
    assert.deepEqual(await read(m2, dir), { "a": "a1", "d/b": "b1", "keep": "k" });
    await fill(m2, { "a": "a2", "d/b": null, "c": "c2" }, dir);
    await sn.commit(NS, "c2", "k2");

    const v2 = await sn.view(NS, "v2", { parent: "c2" });
    assert.deepEqual(await read(v2, dir), { "a": "a2", "c": "c2", "keep": "k" });
    const v1 = await sn.view(NS, "v1", { parent: "c1" });
    assert.deepEqual(await read(v1, dir), { "a": "a1", "d/b": "b1", "keep": "k" });

    // A third layer over two: the stack still merges in order.
    const m3 = await sn.prepare(NS, "k3", { parent: "c2" });
    await fill(m3, { "e": "e3" }, dir);
    assert.deepEqual(await read(m3, dir), { "a": "a2", "c": "c2", "e": "e3", "keep": "k" });
    // Mounts of an active snapshot can be asked for again and show the same.
    assert.deepEqual(await read(await sn.mounts(NS, "k3"), dir), {
      "a": "a2",
      "c": "c2",
      "e": "e3",
      "keep": "k",
    });
    await sn.commit(NS, "c3", "k3");
    const v3 = await sn.view(NS, "v3", { parent: "c3" });
    assert.deepEqual(await read(v3, dir), { "a": "a2", "c": "c2", "e": "e3", "keep": "k" });
  });

  test("concurrent calls: one prepare per key wins; siblings all succeed", async ({ sn }) => {
    const same = await Promise.allSettled(
      Array.from({ length: 5 }, () => sn.prepare(NS, "race")),
    );
    assert.equal(same.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of same) if (r.status === "rejected") kind("already_exists")(r.reason);
    await sn.commit(NS, "base", "race");
    await Promise.all(
      Array.from({ length: 6 }, (_, i) => sn.prepare(NS, `child-${i}`, { parent: "base" })),
    );
    assert.equal((await sn.walk(NS, ["parent==base"])).length, 6);
    const commits = await Promise.allSettled(
      ["child-0", "child-1"].map((k) => sn.commit(NS, "same-name", k)),
    );
    assert.equal(commits.filter((r) => r.status === "fulfilled").length, 1);
  });

  test("views are read-only; a view without parent is empty", async ({ sn, dir }) => {
    await fill(await sn.prepare(NS, "k1"), { "f": "x" }, dir);
    await sn.commit(NS, "c1", "k1");
    const v = await sn.view(NS, "v1", { parent: "c1" });
    await withTempMount(v, async (root) => {
      await assert.rejects(Deno.writeTextFile(`${root}/g`, "y"), /Read-only file system/);
      assert.equal(await Deno.readTextFile(`${root}/f`), "x");
    }, { dir });
    const empty = await sn.view(NS, "v0");
    assert.deepEqual(await read(empty, dir), {});
    assert.equal((await sn.stat(NS, "v1")).kind, "view");
    await assert.rejects(sn.commit(NS, "c-v", "v1"), kind("failed_precondition"));
  });

  test("stat reports kind, parent, labels and times", async ({ sn }) => {
    const before = Date.now();
    await sn.prepare(NS, "k1", { labels: { a: "1" } });
    let info = await sn.stat(NS, "k1");
    assert.equal(info.kind, "active");
    assert.equal(info.parent, "");
    assert.deepEqual(info.labels, { a: "1" });
    assert.ok(info.createdAt.getTime() >= before && info.createdAt <= new Date());
    await sn.commit(NS, "c1", "k1", { labels: { b: "2" } });
    info = await sn.stat(NS, "c1");
    assert.equal(info.kind, "committed");
    assert.equal(info.name, "c1");
    assert.deepEqual(info.labels, { b: "2" }, "commit labels replace the active's");
    await sn.prepare(NS, "k2", { parent: "c1" });
    assert.equal((await sn.stat(NS, "k2")).parent, "c1");
  });

  test("errors: existing keys, missing and uncommitted parents, bad commits", async ({ sn }) => {
    await sn.prepare(NS, "k1");
    await assert.rejects(sn.prepare(NS, "k1"), kind("already_exists"));
    await assert.rejects(sn.view(NS, "k1"), kind("already_exists"));
    await assert.rejects(sn.prepare(NS, "k2", { parent: "nope" }), kind("not_found"));
    await assert.rejects(sn.prepare(NS, "k2", { parent: "k1" }), kind("failed_precondition"));
    await assert.rejects(sn.prepare(NS, ""), kind("invalid_argument"));
    await assert.rejects(sn.stat(NS, "nope"), kind("not_found"));
    await assert.rejects(sn.mounts(NS, "nope"), kind("not_found"));
    await assert.rejects(sn.usage(NS, "nope"), kind("not_found"));
    await assert.rejects(sn.remove(NS, "nope"), kind("not_found"));
    await assert.rejects(sn.commit(NS, "c1", "nope"), kind("not_found"));
    await sn.commit(NS, "c1", "k1");
    await assert.rejects(sn.commit(NS, "c2", "c1"), kind("failed_precondition"));
    await assert.rejects(sn.mounts(NS, "c1"), kind("failed_precondition"));
    await sn.prepare(NS, "k2", { parent: "c1" });
    await assert.rejects(sn.commit(NS, "c1", "k2"), kind("already_exists"));
    // A key that is taken refuses the commit, and the active snapshot stays.
    assert.equal((await sn.stat(NS, "k2")).kind, "active");
    // An unpack naming a target that exists is told so (containerd.io/snapshot.ref).
    await assert.rejects(
      sn.prepare(NS, "extract-1", { labels: { "containerd.io/snapshot.ref": "c1" } }),
      kind("already_exists"),
    );
    await assert.rejects(sn.stat(NS, "extract-1"), kind("not_found"));
  });

  test("removal: children first; storage goes with the snapshot", async ({ sn, root }) => {
    await sn.prepare(NS, "k1");
    await sn.commit(NS, "c1", "k1");
    await sn.prepare(NS, "k2", { parent: "c1" });
    await sn.view(NS, "v1", { parent: "c1" });
    await assert.rejects(sn.remove(NS, "c1"), (e: Error) => {
      kind("failed_precondition")(e);
      assert.match(e.message, /"c1".*"k2"/);
      return true;
    });
    assert.equal((await sn.stat(NS, "c1")).kind, "committed");
    await sn.remove(NS, "k2");
    await assert.rejects(sn.remove(NS, "c1"), kind("failed_precondition"));
    await sn.remove(NS, "v1");
    await sn.remove(NS, "c1");
    assert.deepEqual(await sn.walk(NS), []);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(root)), []);
  });

  test("cleanup removes storage no snapshot refers to", async ({ sn, root }) => {
    await sn.prepare(NS, "k1");
    const [own] = await Array.fromAsync(Deno.readDir(root));
    await Deno.mkdir(`${root}/987654/fs`, { recursive: true });
    await Deno.writeTextFile(`${root}/987654/fs/junk`, "x");
    await sn.cleanup();
    const left = (await Array.fromAsync(Deno.readDir(root))).map((e) => e.name);
    assert.deepEqual(left, [own!.name]);
    assert.equal((await sn.stat(NS, "k1")).kind, "active");
  });

  test("labels: replace all, set and remove one, refuse other fields", async ({ sn }) => {
    await sn.prepare(NS, "k1", { labels: { a: "1", b: "2" } });
    const created = (await sn.stat(NS, "k1")).createdAt;
    await new Promise((r) => setTimeout(r, 5));
    let info = await sn.update(NS, { name: "k1", labels: { c: "3" } }, ["labels.c"]);
    assert.deepEqual(info.labels, { a: "1", b: "2", c: "3" });
    assert.ok(info.updatedAt > created);
    assert.equal(info.createdAt.getTime(), created.getTime());
    info = await sn.update(NS, { name: "k1", labels: {} }, ["labels.a"]);
    assert.deepEqual(info.labels, { b: "2", c: "3" });
    info = await sn.update(NS, { name: "k1", labels: { z: "9" } });
    assert.deepEqual(info.labels, { z: "9" });
    await assert.rejects(
      sn.update(NS, { name: "k1", labels: {} }, ["parent"]),
      kind("invalid_argument"),
    );
    await assert.rejects(sn.update(NS, { name: "nope", labels: {} }), kind("not_found"));
    assert.deepEqual((await sn.stat(NS, "k1")).labels, { z: "9" });
  });

  test("usage counts the snapshot's own files; hard links once", async ({ sn, dir }) => {
    const m = await sn.prepare(NS, "k1");
    const empty = await sn.usage(NS, "k1");
    await withTempMount(m, async (root) => {
      await Deno.writeFile(`${root}/big`, new Uint8Array(1 << 20).fill(7));
      await Deno.link(`${root}/big`, `${root}/big-link`);
      await Deno.writeTextFile(`${root}/small`, "x");
    }, { dir });
    const u = await sn.usage(NS, "k1");
    assert.ok(u.size >= empty.size + (1 << 20), `size ${u.size} counts the 1 MiB file`);
    assert.ok(u.size < empty.size + (1 << 20) + 64 * 1024, `size ${u.size}: the link counts once`);
    assert.equal(u.inodes, empty.inodes + 2);
    await sn.commit(NS, "c1", "k1");
    assert.deepEqual(await sn.usage(NS, "c1"), u);
  });

  test("walk lists by name and honours filters", async ({ sn }) => {
    await sn.prepare(NS, "base", { labels: { tier: "low" } });
    await sn.commit(NS, "c1", "base", { labels: { tier: "low", "containerd.io/gc.root": "x" } });
    await sn.prepare(NS, "k-a", { parent: "c1", labels: { tier: "high" } });
    await sn.view(NS, "v-b", { parent: "c1" });
    const names = async (f?: string[]) => (await sn.walk(NS, f)).map((i) => i.name);
    assert.deepEqual(await names(), ["c1", "k-a", "v-b"]);
    assert.deepEqual(await names(["kind==committed"]), ["c1"]);
    assert.deepEqual(await names(["kind==view", "kind==active"]), ["k-a", "v-b"]);
    assert.deepEqual(await names(["parent==c1"]), ["k-a", "v-b"]);
    assert.deepEqual(await names(["labels.tier==high"]), ["k-a"]);
    assert.deepEqual(await names(['labels."containerd.io/gc.root"']), ["c1"]);
    assert.deepEqual(await names(["name~=^k-"]), ["k-a"]);
    assert.deepEqual(await names(["kind==active,labels.tier==low"]), []);
    await assert.rejects(sn.walk(NS, ["kind=="]), kind("invalid_argument"));
  });

  test("keys are per namespace; leases hold what a call creates", async ({ sn, leases }) => {
    const a: Scope = { namespace: "ns-a" };
    const b: Scope = { namespace: "ns-b" };
    await sn.prepare(a, "k1", { labels: { ns: "a" } });
    await sn.prepare(b, "k1", { labels: { ns: "b" } });
    assert.deepEqual((await sn.stat(a, "k1")).labels, { ns: "a" });
    assert.deepEqual((await sn.walk(b)).map((i) => i.labels.ns), ["b"]);
    await sn.remove(a, "k1");
    assert.equal((await sn.stat(b, "k1")).kind, "active");

    leases.create("ns-a", "l1");
    const la: Scope = { namespace: "ns-a", lease: "l1" };
    await sn.prepare(la, "k2");
    const type = `snapshots/${sn.name}`;
    assert.deepEqual(leases.listResources("ns-a", "l1"), [{ type, id: "k2" }]);
    await sn.commit(la, "c2", "k2");
    assert.deepEqual(leases.listResources("ns-a", "l1"), [{ type, id: "c2" }]);
    await assert.rejects(
      sn.prepare({ namespace: "ns-a", lease: "missing" }, "k3"),
      kind("not_found"),
    );
    await assert.rejects(sn.stat(a, "k3"), kind("not_found"));
  });

  test("a copy keeps hard links, owners, modes, xattrs, times and fifos", async ({ sn, dir }) => {
    const m = await sn.prepare(NS, "k1");
    const old = new Date("2001-02-03T04:05:06Z");
    await withTempMount(m, async (root) => {
      await Deno.writeTextFile(`${root}/file`, "data");
      await Deno.link(`${root}/file`, `${root}/hard`);
      await Deno.writeTextFile(`${root}/suid`, "#!/bin/sh\n");
      await Deno.chmod(`${root}/suid`, 0o4755);
      await Deno.mkdir(`${root}/sticky`);
      await Deno.chmod(`${root}/sticky`, 0o1777);
      await Deno.writeTextFile(`${root}/owned`, "u");
      await Deno.chown(`${root}/owned`, 1000, 1000);
      await Deno.utime(`${root}/owned`, old, old);
      await Deno.symlink("/etc/absolute", `${root}/abs-link`);
      const r = libc().mknod(cstr(`${root}/fifo`), 0o10644, 0n);
      assert.equal(r, 0, "mknod fifo");
      const v = new TextEncoder().encode("hello");
      assert.equal(
        libc().lsetxattr(cstr(`${root}/file`), cstr("user.berth"), v, BigInt(v.length), 0),
        0,
      );
    }, { dir });
    await sn.commit(NS, "c1", "k1");
    await sn.prepare(NS, "k2", { parent: "c1" });
    await withTempMount(await sn.mounts(NS, "k2"), async (root) => {
      const f = await Deno.lstat(`${root}/file`);
      const h = await Deno.lstat(`${root}/hard`);
      assert.equal(f.nlink, 2);
      assert.equal(f.ino, h.ino);
      assert.equal((await Deno.lstat(`${root}/suid`)).mode! & 0o7777, 0o4755);
      assert.equal((await Deno.lstat(`${root}/sticky`)).mode! & 0o7777, 0o1777);
      const o = await Deno.lstat(`${root}/owned`);
      assert.deepEqual([o.uid, o.gid], [1000, 1000]);
      assert.equal(o.mtime?.getTime(), old.getTime());
      assert.equal(await Deno.readLink(`${root}/abs-link`), "/etc/absolute");
      assert.ok((await Deno.lstat(`${root}/fifo`)).isFifo);
      const buf = new Uint8Array(64);
      const n = Number(libc().lgetxattr(cstr(`${root}/file`), cstr("user.berth"), buf, 64n));
      assert.equal(new TextDecoder().decode(buf.subarray(0, Math.max(n, 0))), "hello");
    }, { dir });
  });

  if (opts.manyLayers) {
    Deno.test(`${name}: 150 layers under a long path still mount`, () =>
      withEnv(factory, async ({ sn, dir }) => {
        let parent = "";
        for (let i = 0; i < 150; i++) {
          const key = `layer-${i}-active`;
          const m = await sn.prepare(NS, key, parent ? { parent } : {});
          await fill(m, { [`files/layer-${i}`]: String(i), "top": String(i) }, dir);
          await sn.commit(NS, `layer-${i}`, key);
          parent = `layer-${i}`;
        }
        const m = await sn.prepare(NS, "top", { parent });
        const opt = m[0]!.options.find((o) => o.startsWith("lowerdir="))!;
        assert.ok(opt.length > 4096, `lowerdir is ${opt.length} bytes`);
        const files = await read(m, dir);
        assert.equal(files["top"], "149");
        for (let i = 0; i < 150; i++) assert.equal(files[`files/layer-${i}`], String(i));
        const v = await sn.view(NS, "top-view", { parent });
        assert.equal((await read(v, dir))["files/layer-77"], "77");
      }, { rootName: `${"long-snapshot-root-".repeat(8)}/${"r".repeat(120)}/overlayfs` }));
  }
}
