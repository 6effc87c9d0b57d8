import assert from "node:assert/strict";
import { mountAll, mountOne, mountOverlayCompact, unmountAll, withTempMount } from "./mount.ts";
import { mountsUnder } from "./mountinfo.ts";
import { escapeLowerdir, optionsSize } from "./options.ts";

async function tempDir(t: { name: string }): Promise<string> {
  return await Deno.makeTempDir({
    prefix: `berth-mount-test-` + t.name.replace(/\W+/g, "-").slice(0, 20),
  });
}

async function assertNoMountsUnder(dir: string) {
  assert.deepEqual((await mountsUnder(dir)).map((m) => m.mountPoint), []);
}

Deno.test("a read-only bind mount shows the files and refuses writes", async (t) => {
  const dir = await tempDir(t);
  try {
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/hello`, "hi");
    await Deno.mkdir(`${dir}/dst`);
    await mountAll(
      [{ type: "bind", source: `${dir}/src`, options: ["ro", "rbind"] }],
      `${dir}/dst`,
    );
    try {
      assert.equal(await Deno.readTextFile(`${dir}/dst/hello`), "hi");
      await assert.rejects(Deno.writeTextFile(`${dir}/dst/new`, "x"), /Read-only file system/);
      const [mi] = await mountsUnder(`${dir}/dst`);
      assert.match(mi!.options, /^ro\b/);
    } finally {
      await unmountAll(`${dir}/dst`);
    }
    await assertNoMountsUnder(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an overlay merges layers, nearest first, and writes go to the upper dir", async (t) => {
  const dir = await tempDir(t);
  try {
    for (const d of ["l1", "l2", "up", "work"]) await Deno.mkdir(`${dir}/${d}`);
    await Deno.writeTextFile(`${dir}/l1/a`, "from l1");
    await Deno.writeTextFile(`${dir}/l1/b`, "from l1");
    await Deno.writeTextFile(`${dir}/l2/a`, "from l2");
    const mounts = [{
      type: "overlay",
      source: "overlay",
      options: [`workdir=${dir}/work`, `upperdir=${dir}/up`, `lowerdir=${dir}/l2:${dir}/l1`],
    }];
    await withTempMount(mounts, async (root) => {
      assert.equal(await Deno.readTextFile(`${root}/a`), "from l2");
      assert.equal(await Deno.readTextFile(`${root}/b`), "from l1");
      await Deno.writeTextFile(`${root}/c`, "new");
    }, { dir });
    assert.equal(await Deno.readTextFile(`${dir}/up/c`), "new");
    await assertNoMountsUnder(dir);
    // The temporary mount point is gone too.
    assert.deepEqual(
      (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort(),
      ["l1", "l2", "up", "work"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** 150 layers under a long directory: far more than a page of lowerdir. */
async function manyLayers(dir: string): Promise<{ lowers: string[]; base: string }> {
  const base = `${dir}/${"a-rather-long-directory-name-".repeat(6)}/${"x".repeat(100)}`;
  const lowers: string[] = [];
  for (let i = 0; i < 150; i++) {
    const l = `${base}/${i}/fs`;
    await Deno.mkdir(l, { recursive: true });
    await Deno.writeTextFile(`${l}/layer-${i}`, String(i));
    await Deno.writeTextFile(`${l}/top`, String(i));
    lowers.unshift(l); // nearest (last) first
  }
  return { lowers, base };
}

Deno.test("an overlay of 150 layers with long paths mounts through the new mount API", async (t) => {
  const dir = await tempDir(t);
  try {
    const { lowers } = await manyLayers(dir);
    const options = [`lowerdir=${lowers.map(escapeLowerdir).join(":")}`];
    assert.ok(optionsSize(options) > 4096 * 5, "the options pass a page");
    assert.ok(lowers[0]!.length > 256, "each path is longer than fsconfig takes as a string");
    await Deno.mkdir(`${dir}/m`);
    const method = mountOne({ type: "overlay", source: "overlay", options }, `${dir}/m`);
    try {
      assert.equal(method, "fsconfig");
      assert.equal(await Deno.readTextFile(`${dir}/m/top`), "149");
      assert.equal(await Deno.readTextFile(`${dir}/m/layer-0`), "0");
      assert.equal((await Array.fromAsync(Deno.readDir(`${dir}/m`))).length, 151);
    } finally {
      await unmountAll(`${dir}/m`);
    }
    // With an upper dir whose path is long too, through withTempMount.
    const up = `${lowers[0]!}-up`, work = `${lowers[0]!}-work`;
    await Deno.mkdir(up);
    await Deno.mkdir(work);
    const rw = [`workdir=${work}`, `upperdir=${up}`, ...options];
    await withTempMount([{ type: "overlay", source: "overlay", options: rw }], async (root) => {
      await Deno.writeTextFile(`${root}/written`, "w");
      assert.equal(await Deno.readTextFile(`${root}/layer-3`), "3");
    }, { dir });
    assert.equal(await Deno.readTextFile(`${up}/written`), "w");
    await assertNoMountsUnder(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the relative-path fallback mounts 150 layers and restores the cwd", async (t) => {
  const dir = await tempDir(t);
  const cwd = Deno.cwd();
  try {
    const { lowers } = await manyLayers(dir);
    await Deno.mkdir(`${dir}/m`);
    mountOverlayCompact(
      { type: "overlay", source: "overlay", options: [`lowerdir=${lowers.join(":")}`] },
      `${dir}/m`,
    );
    try {
      assert.equal(Deno.cwd(), cwd);
      assert.equal(await Deno.readTextFile(`${dir}/m/top`), "149");
      assert.equal(await Deno.readTextFile(`${dir}/m/layer-7`), "7");
    } finally {
      await unmountAll(`${dir}/m`);
    }
    await assertNoMountsUnder(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a failed mount names the target and the cause, and leaves nothing mounted", async (t) => {
  const dir = await tempDir(t);
  try {
    await Deno.mkdir(`${dir}/m`);
    await assert.rejects(
      mountAll(
        [{ type: "overlay", source: "overlay", options: [`lowerdir=${dir}/missing`] }],
        `${dir}/m`,
      ),
      (e: Error) => e.message.includes(`${dir}/m`) && /ENOENT/.test(e.message),
    );
    await assert.rejects(
      mountAll([{ type: "bind", source: `${dir}/nope`, options: ["rbind"] }], `${dir}/m`),
      /ENOENT/,
    );
    await assertNoMountsUnder(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
