import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { isKind } from "../core/errdefs.ts";
import { LocalContentStore } from "./store.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const sha = (b: Uint8Array | string) =>
  "sha256:" + createHash("sha256").update(typeof b === "string" ? enc(b) : b).digest("hex");

async function withStore(fn: (s: LocalContentStore, dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "berth-content-" });
  try {
    await fn(new LocalContentStore(`${dir}/content`), `${dir}/content`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<string> {
  let s = "";
  for await (const c of it) s += new TextDecoder().decode(c);
  return s;
}

Deno.test("an ingest closed half-way resumes at its offset with the bytes re-hashed", async () => {
  await withStore(async (s, root) => {
    const w = await s.writer("r1", { total: 11 });
    await w.write(enc("hello "));
    w.close();
    const st = await s.status("r1");
    assert.equal(st.offset, 6);
    assert.equal(st.total, 11);
    const again = await s.writer("r1");
    assert.equal(again.offset, 6);
    assert.equal(again.digest(), sha("hello "));
    await again.write(enc("world"));
    const res = await again.commit(11, sha("hello world"));
    assert.deepEqual(res, { digest: sha("hello world"), size: 11, existed: false });
    const file = `${root}/blobs/sha256/${res.digest.slice(7)}`;
    assert.equal(await Deno.readTextFile(file), "hello world");
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o444);
    assert.equal((await s.info(res.digest)).size, 11);
    await assert.rejects(s.status("r1"), (e) => isKind(e, "not_found"));
    assert.deepEqual([...Deno.readDirSync(`${root}/ingest`)], []);
  });
});

Deno.test("one writer per ref: a second gets unavailable until the first lets go", async () => {
  await withStore(async (s) => {
    const w = await s.writer("locked");
    await assert.rejects(s.writer("locked"), (e) => isKind(e, "unavailable"));
    w.close();
    const w2 = await s.writer("locked");
    w2.close();
    await assert.rejects(s.writer(""), (e) => isKind(e, "invalid_argument"));
  });
});

Deno.test("a digest or size mismatch commits nothing and leaves the ingest", async () => {
  await withStore(async (s, root) => {
    const w = await s.writer("bad");
    await w.write(enc("abc"));
    await assert.rejects(
      w.commit(0, sha("xyz")),
      (e) => isKind(e, "failed_precondition") && /unexpected commit digest/.test(String(e)),
    );
    await assert.rejects(w.write(enc("d")), (e) => isKind(e, "failed_precondition"));
    assert.deepEqual([...Deno.readDirSync(`${root}/blobs/sha256`)], []);
    assert.equal((await s.status("bad")).offset, 3);
    const w2 = await s.writer("bad");
    await assert.rejects(
      w2.commit(4, ""),
      (e) =>
        isKind(e, "failed_precondition") && /unexpected commit size 3, expected 4/.test(String(e)),
    );
    assert.deepEqual([...Deno.readDirSync(`${root}/blobs/sha256`)], []);
  });
});

Deno.test("resuming with another total, or truncating, starts the ingest over", async () => {
  await withStore(async (s) => {
    const w = await s.writer("t", { total: 10 });
    await w.write(enc("12345"));
    w.close();
    const w2 = await s.writer("t", { total: 20 });
    assert.equal(w2.offset, 0);
    assert.equal(w2.status().total, 20);
    await w2.write(enc("junk"));
    await w2.truncate(0);
    assert.equal(w2.digest(), sha(""));
    await w2.write(enc("ok"));
    assert.equal((await w2.commit(2, sha("ok"))).digest, sha("ok"));
  });
});

Deno.test("a blob already on disk makes a commit drop its bytes", async () => {
  await withStore(async (s, root) => {
    const a = await s.writer("a");
    await a.write(enc("same"));
    await a.commit(0, "");
    const b = await s.writer("b");
    await b.write(enc("same"));
    let linked: boolean | undefined;
    const res = await b.commit(4, sha("same"), { link: (_d, _n, existed) => (linked = existed) });
    assert.equal(res.existed, true);
    assert.equal(linked, true);
    assert.deepEqual([...Deno.readDirSync(`${root}/ingest`)], []);
  });
});

Deno.test("read windows, walk, delete and abort", async () => {
  await withStore(async (s) => {
    const w = await s.writer("x");
    await w.write(enc("0123456789"));
    const { digest } = await w.commit(10, "");
    assert.equal(await collect(s.read(digest)), "0123456789");
    assert.equal(await collect(s.read(digest, { offset: 3, size: 4 })), "3456");
    const chunks: number[] = [];
    for await (const c of s.read(digest, { chunkSize: 4 })) chunks.push(c.length);
    assert.deepEqual(chunks, [4, 4, 2]);
    const all = [];
    for await (const b of s.walk()) all.push([b.digest, b.size]);
    assert.deepEqual(all, [[digest, 10]]);
    assert.equal(s.has(digest), true);
    s.deleteSync(digest);
    assert.equal(s.has(digest), false);
    assert.throws(() => s.deleteSync(digest), (e) => isKind(e, "not_found"));
    await assert.rejects(collect(s.read(digest)), (e) => isKind(e, "not_found"));

    const held = await s.writer("gone");
    await held.write(enc("partial"));
    assert.deepEqual((await s.listStatuses()).map((st) => [st.ref, st.offset]), [["gone", 7]]);
    await s.abort("gone");
    await assert.rejects(held.write(enc("more")), (e) => isKind(e, "not_found"));
    await assert.rejects(s.abort("gone"), (e) => isKind(e, "not_found"));
    assert.deepEqual(await s.listStatuses(), []);
    (await s.writer("gone")).close();
  });
});
