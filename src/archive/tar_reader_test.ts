import assert from "node:assert/strict";
import { type TarEntry, TarFormatError, TarReader } from "./tar_reader.ts";
import { buildTar, type TarWriteEntry } from "./tar_writer.ts";

interface Seen {
  entry: TarEntry;
  data: Uint8Array;
}

/** Reads a whole archive, feeding it in chunks of `step` bytes. */
function read(tar: Uint8Array, step = tar.length): Seen[] {
  const seen: Seen[] = [];
  let parts: Uint8Array[] = [];
  let open = false;
  const r = new TarReader({
    entry(e) {
      assert.equal(open, false, "entry() while another entry is open");
      open = true;
      parts = [];
      seen.push({ entry: e, data: new Uint8Array(0) });
    },
    data(b) {
      parts.push(b.slice());
    },
    end() {
      open = false;
      const n = parts.reduce((a, p) => a + p.length, 0);
      const d = new Uint8Array(n);
      let o = 0;
      for (const p of parts) {
        d.set(p, o);
        o += p.length;
      }
      seen[seen.length - 1]!.data = d;
    },
  });
  for (let i = 0; i < tar.length; i += step) r.push(tar.subarray(i, i + step));
  r.finish();
  assert.equal(open, false);
  return seen;
}

const dec = new TextDecoder();
const LONG = "d/" + "n".repeat(150) + "/file-with-a-long-name.txt";
const LONG_TARGET = "../".repeat(10) + "t".repeat(120);

const ENTRIES: TarWriteEntry[] = [
  { name: "dir/", type: "dir", mode: 0o2775, uid: 1000, gid: 1001, mtime: 1000000000 },
  { name: "dir/file", type: "file", mode: 0o4755, data: "hello\n" },
  { name: "dir/empty", type: "file", data: "" },
  { name: "dir/big", type: "file", data: new Uint8Array(70000).fill(7) },
  { name: "dir/sym", type: "symlink", linkname: "/etc/passwd" },
  { name: "dir/hard", type: "link", linkname: "dir/file" },
  { name: "dir/fifo", type: "fifo", mode: 0o600 },
  { name: "dir/null", type: "char", devmajor: 1, devminor: 3, mode: 0o666 },
  { name: "dir/loop", type: "block", devmajor: 7, devminor: 0 },
  { name: LONG, type: "file", data: "long" },
  { name: "dir/longlink", type: "symlink", linkname: LONG_TARGET },
  {
    name: "dir/x",
    type: "file",
    data: "x",
    xattrs: { "user.bin": new Uint8Array([0, 0xff, 0x80, 10]), "user.text": "v=1" },
  },
];

function check(seen: Seen[]): void {
  assert.deepEqual(seen.map((s) => s.entry.name), ENTRIES.map((e) => e.name));
  assert.deepEqual(seen.map((s) => s.entry.type), ENTRIES.map((e) => e.type));
  const by = new Map(seen.map((s) => [s.entry.name, s]));
  const d = by.get("dir/")!.entry;
  assert.equal(d.mode, 0o2775);
  assert.equal(d.uid, 1000);
  assert.equal(d.gid, 1001);
  assert.equal(d.mtimeSec, 1000000000);
  assert.equal(by.get("dir/file")!.entry.mode, 0o4755);
  assert.equal(dec.decode(by.get("dir/file")!.data), "hello\n");
  assert.equal(by.get("dir/big")!.data.length, 70000);
  assert.ok(by.get("dir/big")!.data.every((b) => b === 7));
  assert.equal(by.get("dir/sym")!.entry.linkname, "/etc/passwd");
  assert.equal(by.get("dir/hard")!.entry.linkname, "dir/file");
  assert.equal(by.get("dir/null")!.entry.devmajor, 1);
  assert.equal(by.get("dir/null")!.entry.devminor, 3);
  assert.equal(dec.decode(by.get(LONG)!.data), "long");
  assert.equal(by.get("dir/longlink")!.entry.linkname, LONG_TARGET);
  const x = by.get("dir/x")!.entry.xattrs!;
  assert.deepEqual([...x.get("user.bin")!], [0, 0xff, 0x80, 10]);
  assert.equal(dec.decode(x.get("user.text")!), "v=1");
}

Deno.test("tar reader: PAX archive, whole and split at every byte boundary", () => {
  const tar = buildTar(ENTRIES);
  check(read(tar));
  check(read(tar, 1));
  check(read(tar, 511));
  check(read(tar, 513));
});

Deno.test("tar reader: GNU long names and link names", () => {
  const tar = buildTar(ENTRIES.map((e) => ({ ...e, longNames: "gnu" as const })));
  check(read(tar, 100));
});

Deno.test("tar reader: reads what GNU tar writes (gnu and posix formats)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const deep = `${dir}/src/${"a".repeat(90)}/${"b".repeat(90)}`;
    await Deno.mkdir(deep, { recursive: true });
    await Deno.writeTextFile(`${deep}/${"c".repeat(120)}`, "deep\n");
    await Deno.symlink("../" + "z".repeat(110), `${dir}/src/s`);
    for (const format of ["gnu", "posix"]) {
      const out = await new Deno.Command("tar", {
        args: [`--format=${format}`, "-C", `${dir}/src`, "-cf", "-", "."],
        stdout: "piped",
      }).output();
      assert.equal(out.code, 0);
      const seen = read(out.stdout, 4096);
      const names = seen.map((s) => s.entry.name);
      const file = `./${"a".repeat(90)}/${"b".repeat(90)}/${"c".repeat(120)}`;
      assert.ok(names.includes(file), `${format}: ${names}`);
      assert.equal(dec.decode(seen.find((s) => s.entry.name === file)!.data), "deep\n");
      assert.equal(
        seen.find((s) => s.entry.name === "./s")!.entry.linkname,
        "../" + "z".repeat(110),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function setField(tar: Uint8Array, hdr: number, off: number, bytes: number[]): void {
  tar.set(bytes, hdr + off);
  tar.fill(0x20, hdr + 148, hdr + 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += tar[hdr + i]!;
  tar.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), hdr + 148);
}

Deno.test("tar reader: GNU base-256 numbers", () => {
  const tar = buildTar([{ name: "f", type: "file", data: "" }]);
  // uid 3_000_000 (too big for 7 octal digits), mtime -1 (before 1970)
  setField(tar, 0, 108, [0x80, 0, 0, 0, 0, 0x2d, 0xc6, 0xc0]);
  setField(tar, 0, 136, new Array(12).fill(0xff));
  const [s] = read(tar);
  assert.equal(s!.entry.uid, 3_000_000);
  assert.equal(s!.entry.mtimeSec, -1);
});

Deno.test("tar reader: a bad checksum is a format error with the offset", () => {
  const tar = buildTar([{ name: "a", type: "file", data: "1" }, { name: "b", type: "file" }]);
  tar[1024] = 0x78; // first byte of the second header's name
  assert.throws(() => read(tar), (err: unknown) => {
    assert.ok(err instanceof TarFormatError);
    assert.match(err.message, /checksum at offset 1024/);
    return true;
  });
});

Deno.test("tar reader: a stream cut inside an entry is an error naming it", () => {
  const tar = buildTar([{ name: "cut-here", type: "file", data: "x".repeat(2000) }]);
  assert.throws(
    () => read(tar.subarray(0, 1000)),
    /unexpected end of tar stream in entry "cut-here"/,
  );
  // no end-of-archive blocks at all is accepted, as Go's reader does
  assert.equal(read(tar.subarray(0, tar.length - 1024)).length, 1);
});

Deno.test("tar reader: PAX times with fractions and sparse files refused", () => {
  const tar = buildTar([{ name: "t", type: "file" }]);
  const rec = (k: string, v: string) => {
    const body = ` ${k}=${v}\n`;
    let n = body.length + 2;
    if (String(n).length !== 2) n = body.length + String(n).length;
    return `${n}${body}`;
  };
  const paxTar = (records: string) => {
    const body = new TextEncoder().encode(records);
    const hdr = buildTar([{ name: "PaxHeader", type: "file", data: body }]).subarray(0, 512);
    const h = hdr.slice();
    setField(h, 0, 156, [0x78]);
    const blocks = new Uint8Array(512 + Math.ceil(body.length / 512) * 512);
    blocks.set(h);
    blocks.set(body, 512);
    const out = new Uint8Array(blocks.length + tar.length);
    out.set(blocks);
    out.set(tar, blocks.length);
    return out;
  };
  const [s] = read(paxTar(rec("mtime", "1700000000.5") + rec("atime", "-1.25")));
  assert.equal(s!.entry.mtimeSec, 1700000000);
  assert.equal(s!.entry.mtimeNsec, 500000000);
  assert.equal(s!.entry.atimeSec, -2);
  assert.equal(s!.entry.atimeNsec, 750000000);
  assert.throws(() => read(paxTar(rec("GNU.sparse.size", "10"))), /unsupported sparse file "t"/);
});
