/**
 * The apply pool and its worker: a layer applied on a worker thread gives the
 * same tree and diffID as one applied inline, errors keep their kind, an
 * isolated apply refuses to guess what the lowers hold, and a layer can be
 * read from an ingest file while it is still being written.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { isKind } from "../core/errdefs.ts";
import { applyLayer, LowersNeededError } from "../archive/apply.ts";
import { buildTar, type TarWriteEntry } from "../archive/tar_writer.ts";
import { ApplyPool, readBlob } from "./apply_pool.ts";

const LAYER: TarWriteEntry[] = [
  { name: "etc/", type: "dir", mode: 0o755 },
  { name: "etc/hostname", type: "file", data: "berth\n", mode: 0o644, uid: 7, gid: 8 },
  { name: "usr/", type: "dir" },
  { name: "usr/bin/", type: "dir", mode: 0o711 },
  { name: "usr/bin/tool", type: "file", data: "x".repeat(100_000), mode: 0o755 },
  { name: "usr/bin/alias", type: "link", linkname: "usr/bin/tool" },
  { name: "usr/bin/sh", type: "symlink", linkname: "tool" },
  { name: ".wh.gone", type: "file" },
];

function diffIdOf(tar: Uint8Array): string {
  return `sha256:${createHash("sha256").update(tar).digest("hex")}`;
}

/** `path mode uid:gid size/link` for every entry under root, sorted. */
function listing(root: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(rel ? `${root}/${rel}` : root)) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    const st = Deno.lstatSync(`${root}/${r}`);
    const what = st.isSymlink
      ? `-> ${Deno.readLinkSync(`${root}/${r}`)}`
      : st.isFile
      ? `${st.size}b nlink=${st.nlink}`
      : st.isCharDevice
      ? `char ${st.rdev}`
      : "dir";
    out.push(`${r} ${(st.mode! & 0o7777).toString(8)} ${st.uid}:${st.gid} ${what}`);
    if (st.isDirectory) out.push(...listing(root, r));
  }
  return out.sort();
}

async function withDirs<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "berth-apply-pool-test-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("apply pool: a worker applies a gzip layer like an inline apply, diffID checked", async () => {
  await withDirs(async (dir) => {
    const tar = buildTar(LAYER);
    await Deno.writeFile(`${dir}/blob`, gzipSync(tar));
    const size = (await Deno.stat(`${dir}/blob`)).size;
    await Deno.mkdir(`${dir}/a`);
    await Deno.mkdir(`${dir}/b`);
    const pool = new ApplyPool({ size: 2, inlineBelow: 0 });
    try {
      const r = await pool.apply({
        blob: `${dir}/blob`,
        size,
        target: `${dir}/a`,
        mode: "overlay",
        parents: [],
        isolated: true,
        expectedDiffId: diffIdOf(tar),
      });
      assert.equal(r.diffId, diffIdOf(tar));
      assert.equal(r.size, tar.length);
      const f = await Deno.open(`${dir}/blob`);
      await applyLayer(f.readable, `${dir}/b`, { mode: "overlay" });
      assert.deepEqual(listing(`${dir}/a`), listing(`${dir}/b`));
      assert.ok(listing(`${dir}/a`).includes("gone 0 0:0 char 0"), "whiteout device");

      // A wrong diffID fails with its kind, and the pool keeps working.
      await Deno.mkdir(`${dir}/c`);
      const bad = `sha256:${"0".repeat(64)}`;
      await assert.rejects(
        pool.apply({
          blob: `${dir}/blob`,
          size,
          target: `${dir}/c`,
          mode: "overlay",
          parents: [],
          isolated: false,
          expectedDiffId: bad,
        }),
        (e: Error) => isKind(e, "failed_precondition") && e.message.includes(bad),
      );
      // A blob shorter than its descriptor says is refused.
      await Deno.mkdir(`${dir}/d`);
      await assert.rejects(
        pool.apply({
          blob: `${dir}/blob`,
          size: size + 10,
          target: `${dir}/d`,
          mode: "overlay",
          parents: [],
          isolated: false,
        }),
        (e: Error) => isKind(e, "data_loss") && /ends at \d+ of \d+ bytes/.test(e.message),
      );
    } finally {
      pool.close();
    }
  });
});

Deno.test("apply pool: an isolated apply stops where the lowers would decide", async () => {
  await withDirs(async (dir) => {
    const pool = new ApplyPool({ size: 1, inlineBelow: 0 });
    try {
      const cases: Array<[string, TarWriteEntry[]]> = [
        ["implicit parent", [{ name: "usr/lib/x", type: "file", data: "x" }]],
        ["hardlink to a lower file", [{ name: "b", type: "link", linkname: "a" }]],
        ["whiteout in an unlisted dir", [{ name: "etc/.wh.passwd", type: "file" }]],
      ];
      for (const [what, entries] of cases) {
        const blob = `${dir}/${what.replaceAll(" ", "-")}`;
        await Deno.writeFile(blob, buildTar(entries));
        const target = `${blob}.d`;
        await Deno.mkdir(target);
        await assert.rejects(
          pool.apply({
            blob,
            size: (await Deno.stat(blob)).size,
            target,
            mode: "overlay",
            parents: [],
            isolated: true,
          }),
          (e: Error) => e instanceof LowersNeededError,
          what,
        );
      }
    } finally {
      pool.close();
    }
  });
});

Deno.test("apply pool: readBlob follows a growing ingest, then the renamed blob", async () => {
  await withDirs(async (dir) => {
    const ingest = `${dir}/ingest`;
    const blob = `${dir}/blob`;
    const data = new Uint8Array(300_000).map((_, i) => i % 251);
    const f = await Deno.open(ingest, { write: true, create: true });
    await f.write(data.subarray(0, 1000));
    const got: Uint8Array[] = [];
    const reading = (async () => {
      for await (
        const c of readBlob(
          { blob, size: data.length, follow: ingest },
          new AbortController().signal,
        )
      ) {
        got.push(c);
      }
    })();
    await new Promise((r) => setTimeout(r, 30));
    await f.write(data.subarray(1000, 200_000));
    await new Promise((r) => setTimeout(r, 30));
    await f.write(data.subarray(200_000));
    f.close();
    await Deno.rename(ingest, blob); // a commit meanwhile: the open file reads on
    await reading;
    const all = new Uint8Array(got.reduce((n, c) => n + c.length, 0));
    let o = 0;
    for (const c of got) {
      all.set(c, o);
      o += c.length;
    }
    assert.deepEqual(all, data);

    // Nothing there and the download failed: the abort ends the wait.
    const stop = new AbortController();
    const waiting = (async () => {
      for await (
        const _ of readBlob(
          { blob: `${dir}/none`, size: 10, follow: `${dir}/no-ingest` },
          stop.signal,
        )
      ) {
        // never
      }
    })();
    setTimeout(() => stop.abort(new Error("download failed")), 20);
    await assert.rejects(waiting, (e: Error) => isKind(e, "canceled"));
  });
});
