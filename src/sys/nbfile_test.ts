import assert from "node:assert/strict";
import { openFifo } from "./nbfile.ts";
import { fdPoller } from "./fdpoll.ts";

async function mkfifo(path: string): Promise<void> {
  const r = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(r.success, `mkfifo ${path}`);
}

/** Fails instead of hanging when `p` does not settle within `ms`. */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const text = (b: Uint8Array, n: number | null) => new TextDecoder().decode(b.subarray(0, n ?? 0));

Deno.test("a FIFO read waits for a writer, gets its data, then end of file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await mkfifo(`${dir}/in`);
    using f = openFifo(`${dir}/in`, "read");
    const buf = new Uint8Array(64);
    const first = f.read(buf);
    // No writer yet: the read must still be pending, not end of file.
    const early = await Promise.race([
      first,
      new Promise((r) => setTimeout(() => r("pending"), 100)),
    ]);
    assert.equal(early, "pending");
    const w = await Deno.open(`${dir}/in`, { write: true });
    await w.write(new TextEncoder().encode("hello"));
    assert.equal(text(buf, await within(5000, "read", first)), "hello");
    w.close();
    assert.equal(await within(5000, "read at EOF", f.read(buf)), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readChunk waits for a writer, returns just the bytes read, at most max, then null", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await mkfifo(`${dir}/in`);
    using f = openFifo(`${dir}/in`, "read");
    const first = f.readChunk(4);
    const early = await Promise.race([
      first,
      new Promise((r) => setTimeout(() => r("pending"), 100)),
    ]);
    assert.equal(early, "pending");
    const w = await Deno.open(`${dir}/in`, { write: true });
    await w.write(new TextEncoder().encode("hello world"));
    const a = await within(5000, "readChunk", first);
    assert.equal(new TextDecoder().decode(a!), "hell");
    // Each chunk is its own buffer of its own length, not a view of a shared one.
    assert.equal(a!.byteLength, 4);
    assert.equal(a!.buffer.byteLength, 4);
    const b = await within(5000, "readChunk", f.readChunk());
    assert.equal(new TextDecoder().decode(b!), "o world");
    assert.equal(new TextDecoder().decode(a!), "hell");
    w.close();
    assert.equal(await within(5000, "readChunk at EOF", f.readChunk()), null);
    // A closed file ends a pending readChunk with null too.
    const again = openFifo(`${dir}/in`, "read");
    const pending = again.readChunk();
    again.close();
    assert.equal(await within(5000, "readChunk of a closed file", pending), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("idle FIFOs hold no pool threads: file operations go on with 48 reads pending", async () => {
  // Deno's blocking pool has 32 threads; a read per FIFO parked on it would
  // leave none for Deno.readTextFile below, which would then never finish.
  const dir = await Deno.makeTempDir();
  const files = [];
  try {
    for (let i = 0; i < 48; i++) {
      await mkfifo(`${dir}/f${i}`);
      files.push(openFifo(`${dir}/f${i}`, "read"));
    }
    const reads = files.map((f) => f.read(new Uint8Array(16)));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(fdPoller().pending, 48);
    for (let i = 0; i < 20; i++) {
      await within(5000, "Deno.readTextFile", Deno.readTextFile("/proc/self/status"));
    }
    const threads = Number(
      /Threads:\s+(\d+)/.exec(await Deno.readTextFile("/proc/self/status"))![1],
    );
    assert.ok(threads < 30, `${threads} threads with 48 idle FIFOs`);
    // Closing ends each pending read with null and frees its fd.
    for (const f of files) f.close();
    assert.deepEqual(await within(5000, "closed reads", Promise.all(reads)), reads.map(() => null));
    assert.equal(fdPoller().pending, 0);
  } finally {
    for (const f of files) f.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a read-write FIFO takes output with no reader, and waits when full", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await mkfifo(`${dir}/out`);
    using f = openFifo(`${dir}/out`, "readwrite");
    await within(5000, "small write", f.writeAll(new TextEncoder().encode("line\n")));
    // Fill the pipe (64 KiB by default): the write that does not fit waits.
    const big = new Uint8Array(256 * 1024).fill(0x61);
    const pending = f.writeAll(big);
    const early = await Promise.race([
      pending,
      new Promise((r) => setTimeout(() => r("pending"), 100)),
    ]);
    assert.equal(early, "pending");
    // A reader drains it; the write completes.
    const r = await Deno.open(`${dir}/out`, { read: true });
    let got = 0;
    const buf = new Uint8Array(64 * 1024);
    while (got < 5 + big.length) {
      const n = await within(5000, "drain", r.read(buf));
      if (n === null) break;
      got += n;
    }
    await within(5000, "the big write", pending);
    assert.equal(got, 5 + big.length);
    r.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a wait ends with the signal's reason when aborted", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await mkfifo(`${dir}/x`);
    using f = openFifo(`${dir}/x`, "read");
    const ac = new AbortController();
    const p = fdPoller().wait(f.fd, 1, ac.signal);
    ac.abort(new Error("stop waiting"));
    await assert.rejects(within(5000, "aborted wait", p), /stop waiting/);
    assert.equal(fdPoller().pending, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
