import assert from "node:assert/strict";
import { durably, MetaDb, relaxedDurability } from "./db.ts";

/** The `synchronous` setting a commit of `db` runs under, seen from inside its transaction. */
function syncOfCommit(db: MetaDb): number {
  return db.tx(() => {
    db.run("INSERT INTO server (key, value) VALUES ('k', 'v') ON CONFLICT(key) DO NOTHING");
    return Number(db.get("PRAGMA synchronous")!.synchronous);
  });
}

const FULL = 2, NORMAL = 1;

Deno.test("commits are synced, except inside relaxedDurability; durably syncs there too", async () => {
  const dir = await Deno.makeTempDir();
  const db = new MetaDb(`${dir}/meta.db`);
  try {
    assert.equal(syncOfCommit(db), FULL);
    await relaxedDurability(async () => {
      assert.equal(syncOfCommit(db), NORMAL);
      // Across awaits of the same operation, too.
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(syncOfCommit(db), NORMAL);
      assert.equal(durably(() => syncOfCommit(db)), FULL);
      assert.equal(syncOfCommit(db), NORMAL);
    });
    // Other work running meanwhile keeps its synced commits.
    let inside = 0;
    const relaxedWork = relaxedDurability(async () => {
      await new Promise((r) => setTimeout(r, 20));
      inside = syncOfCommit(db);
    });
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(syncOfCommit(db), FULL);
    await relaxedWork;
    assert.equal(inside, NORMAL);
    assert.equal(syncOfCommit(db), FULL);
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});
