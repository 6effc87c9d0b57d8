/**
 * The content store end to end: Debian's ctr and berth's CLI against a real
 * daemon, plus direct Write streams for what the CLIs cannot express
 * (partial ingests, resume after a restart, leases).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ok, type Run, startDaemon, type TestDaemon } from "./_harness.ts";
import { Client } from "../src/cmd/cli/client.ts";
import { Content, WriteAction } from "../src/gen/containerd/services/content/v1/content_pb.ts";
import { Leases } from "../src/gen/containerd/services/leases/v1/leases_pb.ts";
import { Events } from "../src/gen/containerd/services/events/v1/events_pb.ts";
import { isKind } from "../src/core/errdefs.ts";

/** Random bytes (getRandomValues fills at most 64 KiB at a time). */
function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

function sha256(b: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(b).digest("hex");
}

/** Runs a command and keeps its stdout as bytes (blobs are binary). */
async function runBytes(cmd: string, args: string[]): Promise<Run & { bytes: Uint8Array }> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  return {
    code: out.code,
    stdout: "",
    stderr: new TextDecoder().decode(out.stderr),
    bytes: out.stdout,
  };
}

function blobFile(d: TestDaemon, digest: string): string {
  return `${d.root}/content/blobs/sha256/${digest.slice("sha256:".length)}`;
}

async function blobFiles(d: TestDaemon): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(`${d.root}/content/blobs/sha256`)) names.push(e.name);
  return names.sort();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A Write stream with one reply awaited per request, as containerd's clients use it. */
function writer(c: Client) {
  const call = c.duplex(Content, "write");
  return {
    async req(msg: Parameters<typeof call.send>[0]) {
      await call.send(msg);
      const r = await call.replies.next();
      if (r.done) throw new Error("write stream ended early");
      return r.value;
    },
    async close() {
      call.end();
      for await (const _ of call.replies) { /* the stream's last reply */ }
    },
  };
}

// 3 MiB and a bit: spans several 1 MiB Read chunks and Write messages.
const BIG = 3 * 1024 * 1024 + 123;

Deno.test("ctr content ingest, ls, get and rm round-trip 3 MB of binary data", async () => {
  await using d = await startDaemon();
  const data = randomBytes(BIG);
  const digest = sha256(data);
  ok(await d.ctr(["content", "ingest", "blob-1"], { stdin: data }), "ctr content ingest");
  const ls = ok(await d.ctr(["content", "ls"]), "ctr content ls");
  // ctr prints sizes with Docker's HumanSize (decimal units, 4 digits).
  assert.match(ls.stdout, new RegExp(`^${digest}\\s+3\\.146MB\\s+.*\\s-$`, "m"));
  const got = await runBytes("ctr", ["-a", d.sock, "content", "get", digest]);
  assert.equal(got.code, 0, got.stderr);
  assert.equal(got.bytes.length, data.length);
  assert.ok(got.bytes.every((b, i) => b === data[i]), "ctr content get returns the exact bytes");
  assert.ok(await exists(blobFile(d, digest)), "the blob is on disk");
  const rm = ok(await d.ctr(["content", "rm", digest]), "ctr content rm");
  assert.equal(rm.stdout.trim(), digest);
  const after = ok(await d.ctr(["content", "ls", "-q"]));
  assert.equal(after.stdout.trim(), "");
  assert.equal(await exists(blobFile(d, digest)), false, "the blob file is gone");
  const missing = await d.ctr(["content", "get", digest]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /not found/);
});

Deno.test("berth content ingest, ls --json, get, label and rm", async () => {
  await using d = await startDaemon();
  const data = randomBytes(BIG);
  const digest = sha256(data);
  const ing = ok(
    await d.berth(["content", "ingest", "--expected-size", String(BIG), "b-1"], { stdin: data }),
    "berth content ingest",
  );
  assert.equal(ing.stdout.trim(), digest);
  const js = JSON.parse(ok(await d.berth(["content", "ls", "--json"])).stdout);
  assert.equal(js.length, 1);
  assert.equal(js[0].digest, digest);
  assert.equal(js[0].size, BIG);
  assert.deepEqual(js[0].labels, {});
  assert.ok(Date.now() - Date.parse(js[0].createdAt) < 60_000);
  const table = ok(await d.berth(["content", "ls"])).stdout;
  assert.match(table, /^DIGEST\s+SIZE\s+AGE\s+LABELS$/m);
  assert.match(table, new RegExp(`^${digest}\\s+3\\.0 MiB\\s+\\S.*\\s+-$`, "m"));
  const got = await runBytes(Deno.execPath(), [
    "run",
    "-A",
    new URL("../main.ts", import.meta.url).pathname,
    "-a",
    d.sock,
    "content",
    "get",
    digest,
  ]);
  assert.equal(got.code, 0, got.stderr);
  assert.ok(got.bytes.length === data.length && got.bytes.every((b, i) => b === data[i]));
  const lab = ok(await d.berth(["content", "label", digest, "tier=gold", "x=y"]));
  assert.equal(lab.stdout.trim(), "tier=gold,x=y");
  ok(await d.berth(["content", "label", digest, "x="]));
  const js2 = JSON.parse(
    ok(await d.berth(["content", "ls", "--json", "labels.tier==gold"])).stdout,
  );
  assert.deepEqual(js2.map((i: { labels: unknown }) => i.labels), [{ tier: "gold" }]);
  const none = ok(await d.berth(["content", "ls", "-q", "labels.tier==silver"]));
  assert.equal(none.stdout.trim(), "");
  assert.match(ok(await d.berth(["content", "ls", "--help"])).stdout, /Usage: berth content ls/);
  assert.match(ok(await d.berth(["content", "--help"])).stdout, /Usage: berth content/);
  const rm = ok(await d.berth(["content", "rm", digest]));
  assert.equal(rm.stdout.trim(), digest);
  assert.equal(await exists(blobFile(d, digest)), false);
  const again = await d.berth(["content", "rm", digest]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, new RegExp(`content digest ${digest}: not found`));
  const bad = await d.berth(["content", "get", "sha256:nothex"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid digest "sha256:nothex"/);
  const noRef = await d.berth(["content", "ingest"], { stdin: "x" });
  assert.equal(noRef.code, 2);
  assert.match(noRef.stderr, /one REF is required/);
});

Deno.test("a Write whose data does not match the expected digest or size commits nothing", async () => {
  await using d = await startDaemon();
  const data = randomBytes(200_000);
  const wrong = sha256(new TextEncoder().encode("something else"));
  const r = await d.ctr(["content", "ingest", "--expected-digest", wrong, "bad-1"], {
    stdin: data,
  });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`unexpected commit digest ${sha256(data)}, expected ${wrong}`));
  assert.match(r.stderr, /failed precondition/);

  const c = new Client({ address: d.sock, namespace: "default" });
  try {
    const w = writer(c);
    const st = await w.req({ action: WriteAction.STAT, ref: "bad-2", expected: wrong });
    assert.equal(st.offset, 0n);
    const wr = await w.req({ action: WriteAction.WRITE, offset: 0n, data });
    assert.equal(wr.offset, BigInt(data.length));
    assert.equal(wr.digest, sha256(data));
    await assert.rejects(
      w.req({ action: WriteAction.COMMIT, offset: BigInt(data.length), expected: wrong }),
      (e) => isKind(e, "failed_precondition") && /unexpected commit digest/.test(String(e)),
    );
    // A size mismatch is refused the same way.
    const w2 = writer(c);
    await w2.req({ action: WriteAction.STAT, ref: "bad-3" });
    await w2.req({ action: WriteAction.WRITE, offset: 0n, data });
    await assert.rejects(
      w2.req({
        action: WriteAction.COMMIT,
        offset: BigInt(data.length),
        total: BigInt(data.length + 1),
      }),
      (e) =>
        isKind(e, "failed_precondition") &&
        new RegExp(`unexpected commit size ${data.length}, expected ${data.length + 1}`).test(
          String(e),
        ),
    );
  } finally {
    c.close();
  }
  const size = await d.berth(["content", "ingest", "--expected-size", "5", "bad-4"], {
    stdin: "123456",
  });
  assert.equal(size.code, 1);
  assert.match(size.stderr, /unexpected commit size 6, expected 5: failed precondition/);
  assert.deepEqual(await blobFiles(d), [], "no blob file was committed");
  assert.equal(ok(await d.ctr(["content", "ls", "-q"])).stdout.trim(), "");
  // As in containerd, the failed ingests stay (resumable) until aborted.
  const active = ok(await d.ctr(["content", "active"])).stdout;
  assert.match(active, /^bad-1\s/m);
  assert.match(active, /^bad-2\s/m);
});

Deno.test("a partial ingest survives a daemon restart and resumes at its offset", async () => {
  await using d = await startDaemon();
  const data = randomBytes(BIG);
  const half = Math.floor(BIG / 2);
  const digest = sha256(data);
  let c = new Client({ address: d.sock, namespace: "default" });
  const w = writer(c);
  const st = await w.req({ action: WriteAction.STAT, ref: "resume-me", total: BigInt(BIG) });
  assert.equal(st.offset, 0n);
  assert.equal(st.total, BigInt(BIG));
  let off = 0;
  while (off < half) {
    const end = Math.min(half, off + (1 << 20));
    const r = await w.req({
      action: WriteAction.WRITE,
      offset: BigInt(off),
      data: data.subarray(off, end),
    });
    off = Number(r.offset);
  }
  assert.equal(off, half);
  await w.close();
  c.close();

  await d.restart();
  c = new Client({ address: d.sock, namespace: "default" });
  try {
    const status = (await c.call(Content, "status", { ref: "resume-me" })).status!;
    assert.equal(status.ref, "resume-me");
    assert.equal(status.offset, BigInt(half));
    assert.equal(status.total, BigInt(BIG));
    const active = ok(await d.ctr(["content", "active"])).stdout;
    assert.match(active, /^resume-me\s/m);

    const w2 = writer(c);
    const st2 = await w2.req({ action: WriteAction.STAT, ref: "resume-me" });
    assert.equal(st2.offset, BigInt(half));
    assert.equal(st2.digest, sha256(data.subarray(0, half)), "the resumed bytes were re-hashed");
    await assert.rejects(
      w2.req({ action: WriteAction.WRITE, offset: BigInt(half + 1), data: data.subarray(0, 1) }),
      (e) => isKind(e, "out_of_range") && /must occur at current offset/.test(String(e)),
    );
    const w3 = writer(c);
    off = half;
    while (off < BIG) {
      const end = Math.min(BIG, off + (1 << 20));
      const r = await w3.req({
        action: WriteAction.WRITE,
        ref: "resume-me",
        offset: BigInt(off),
        data: data.subarray(off, end),
      });
      off = Number(r.offset);
    }
    const done = await w3.req({
      action: WriteAction.COMMIT,
      offset: BigInt(off),
      total: BigInt(BIG),
      expected: digest,
    });
    assert.equal(done.action, WriteAction.COMMIT);
    assert.equal(done.digest, digest);
    assert.equal(done.offset, BigInt(BIG));
    await w3.close();
    const info = (await c.call(Content, "info", { digest })).info!;
    assert.equal(info.size, BigInt(BIG));
    await assert.rejects(
      c.call(Content, "status", { ref: "resume-me" }),
      (e) => isKind(e, "not_found"),
    );
    // Read with an offset and size returns that window.
    const parts: Uint8Array[] = [];
    for await (const r of c.stream(Content, "read", { digest, offset: 100n, size: 5000n })) {
      parts.push(r.data);
    }
    const win = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (win.set(p, at), at + p.length), 0);
    assert.deepEqual(win, data.subarray(100, 5100));
    await assert.rejects(
      (async () => {
        for await (const _ of c.stream(Content, "read", { digest, offset: BigInt(BIG + 1) })) {
          // nothing
        }
      })(),
      (e) => isKind(e, "out_of_range"),
    );
  } finally {
    c.close();
  }
});

Deno.test("a Write at offset 0 starts a partial ingest over; Abort drops it", async () => {
  await using d = await startDaemon();
  const c = new Client({ address: d.sock, namespace: "default" });
  try {
    const w = writer(c);
    await w.req({ action: WriteAction.STAT, ref: "over" });
    await w.req({ action: WriteAction.WRITE, offset: 0n, data: new TextEncoder().encode("junk") });
    const r = await w.req({
      action: WriteAction.COMMIT,
      offset: 0n,
      data: new TextEncoder().encode("good"),
    });
    assert.equal(r.offset, 4n);
    assert.equal(r.digest, sha256(new TextEncoder().encode("good")));
    await w.close();

    const w2 = writer(c);
    await w2.req({ action: WriteAction.STAT, ref: "dropme" });
    await w2.req({ action: WriteAction.WRITE, data: new TextEncoder().encode("partial") });
    await w2.close();
    const list = (await c.call(Content, "listStatuses", { filters: ['ref=="dropme"'] })).statuses;
    assert.deepEqual(list.map((s) => [s.ref, s.offset]), [["dropme", 7n]]);
    await c.call(Content, "abort", { ref: "dropme" });
    assert.deepEqual((await c.call(Content, "listStatuses", {})).statuses, []);
    await assert.rejects(
      c.call(Content, "abort", { ref: "dropme" }),
      (e) => isKind(e, "not_found"),
    );
    const empty = await new Promise<number>((resolve, reject) => {
      Deno.readDir(`${d.root}/content/ingest`)[Symbol.asyncIterator]().next().then(
        (r) => resolve(r.done ? 0 : 1),
        reject,
      );
    });
    assert.equal(empty, 0, "the ingest directory is gone");
  } finally {
    c.close();
  }
});

Deno.test("content and labels survive a daemon restart", async () => {
  await using d = await startDaemon();
  const data = randomBytes(100_000);
  const digest = sha256(data);
  ok(await d.ctr(["-n", "keep", "content", "ingest", "k-1"], { stdin: data }));
  ok(await d.ctr(["-n", "keep", "content", "label", digest, "app=web", "gen=1"]));
  await d.restart();
  const ls = ok(await d.ctr(["-n", "keep", "content", "ls"])).stdout;
  // ctr prints labels in Go's map order: either order is right.
  assert.match(ls, new RegExp(`^${digest}\\s+100kB\\s+.*\\s(app=web,gen=1|gen=1,app=web)$`, "m"));
  const got = await runBytes("ctr", ["-a", d.sock, "-n", "keep", "content", "get", digest]);
  assert.deepEqual(got.bytes, data);
});

Deno.test("content is stored once and visible only in namespaces that hold it", async () => {
  await using d = await startDaemon();
  // Small enough for a pipe buffer: ctr may not read stdin when the blob exists.
  const data = randomBytes(40_000);
  const digest = sha256(data);
  ok(await d.ctr(["-n", "ns-a", "content", "ingest", "x"], { stdin: data }));
  assert.equal(ok(await d.ctr(["-n", "ns-b", "content", "ls", "-q"])).stdout.trim(), "");
  const hidden = await d.ctr(["-n", "ns-b", "content", "get", digest]);
  assert.notEqual(hidden.code, 0);
  assert.match(hidden.stderr, new RegExp(`content digest ${digest}: not found`));
  ok(
    await d.ctr(["-n", "ns-b", "content", "ingest", "--expected-digest", digest, "y"], {
      stdin: data,
    }),
    "ingest of the same bytes in ns-b",
  );
  assert.equal(ok(await d.ctr(["-n", "ns-b", "content", "ls", "-q"])).stdout.trim(), digest);
  assert.deepEqual(await blobFiles(d), [digest.slice(7)], "one file on disk");
  assert.equal(
    ok(await d.ctr(["-n", "ns-b", "content", "active"])).stdout.trim(),
    "REF\tSIZE\tAGE",
  );
  // The same through berth's CLI and a third namespace; labels stay per namespace.
  const c = ok(
    await d.berth(["-n", "ns-c", "content", "ingest", "--expected-digest", digest, "z"], {
      stdin: data,
    }),
  );
  assert.equal(c.stdout.trim(), digest);
  ok(await d.ctr(["-n", "ns-c", "content", "label", digest, "only=c"]));
  assert.match(
    ok(await d.ctr(["-n", "ns-b", "content", "ls"])).stdout,
    new RegExp(`${digest}.*-$`, "m"),
  );
  // The bytes stay while any namespace holds the blob.
  ok(await d.ctr(["-n", "ns-a", "content", "rm", digest]));
  ok(await d.ctr(["-n", "ns-c", "content", "rm", digest]));
  assert.ok(await exists(blobFile(d, digest)));
  const got = await runBytes("ctr", ["-a", d.sock, "-n", "ns-b", "content", "get", digest]);
  assert.deepEqual(got.bytes, data);
  ok(await d.ctr(["-n", "ns-b", "content", "rm", digest]));
  assert.equal(await exists(blobFile(d, digest)), false);
});

Deno.test("a namespace holding content or an ingest cannot be removed", async () => {
  await using d = await startDaemon();
  const data = new TextEncoder().encode("held");
  ok(await d.ctr(["-n", "holder", "content", "ingest", "h"], { stdin: data }));
  const r = await d.ctr(["namespaces", "rm", "holder"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /namespace "holder" must be empty.*1 blobs.*failed precondition/);
  ok(await d.ctr(["-n", "holder", "content", "rm", sha256(data)]));
  // A partial ingest holds it too.
  const c = new Client({ address: d.sock, namespace: "holder" });
  try {
    const w = writer(c);
    await w.req({ action: WriteAction.STAT, ref: "part" });
    await w.req({ action: WriteAction.WRITE, data });
    await w.close();
    const r2 = await d.ctr(["namespaces", "rm", "holder"]);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /1 ingests.*failed precondition/);
    await c.call(Content, "abort", { ref: "part" });
  } finally {
    c.close();
  }
  ok(await d.ctr(["namespaces", "rm", "holder"]));
});

Deno.test("ctr content ls filters on labels and digest after ctr content label", async () => {
  await using d = await startDaemon();
  const blobs = ["one", "two", "three"].map((s) => new TextEncoder().encode(s.repeat(1000)));
  const digests = blobs.map(sha256);
  for (const [i, b] of blobs.entries()) {
    ok(await d.ctr(["content", "ingest", `f-${i}`], { stdin: b }));
  }
  const lab = ok(await d.ctr(["content", "label", digests[0]!, "foo=bar"]));
  assert.equal(lab.stdout.trim(), "foo=bar");
  ok(await d.ctr(["content", "label", digests[1]!, "foo=baz", "other=1"]));
  const q = (f: string[]) =>
    d.ctr(["content", "ls", "-q", ...f]).then((r) =>
      ok(r).stdout.trim().split("\n").filter(Boolean)
    );
  assert.deepEqual(await q(["labels.foo==bar"]), [digests[0]]);
  assert.deepEqual(await q(["labels.foo~=^ba"]), [digests[0], digests[1]].sort());
  assert.deepEqual(await q(["labels.other"]), [digests[1]]);
  assert.deepEqual(await q([`digest==${digests[2]}`]), [digests[2]]);
  assert.deepEqual(
    await q(["labels.foo==bar", "labels.other==1"]),
    [digests[0], digests[1]].sort(),
  );
  assert.deepEqual(await q(["size==3000"]), [digests[0], digests[1]].sort());
  // Removing a label with k=.
  ok(await d.ctr(["content", "label", digests[0]!, "foo="]));
  assert.deepEqual(await q(["labels.foo==bar"]), []);
  const bad = await d.ctr(["content", "ls", "labels.foo=="]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /invalid argument/);
});

Deno.test("Update accepts only label paths; Delete publishes /content/delete", async () => {
  await using d = await startDaemon();
  const data = new TextEncoder().encode("evented");
  const digest = sha256(data);
  ok(await d.ctr(["-n", "ev", "content", "ingest", "e"], { stdin: data }));
  const c = new Client({ address: d.sock, namespace: "ev" });
  const ac = new AbortController();
  try {
    await assert.rejects(
      c.call(Content, "update", { info: { digest, size: 1n }, updateMask: { paths: ["size"] } }),
      (e) => isKind(e, "invalid_argument") && /cannot update size field/.test(String(e)),
    );
    const up = await c.call(Content, "update", {
      info: { digest, labels: { a: "1", b: "2" } },
      updateMask: { paths: ["labels"] },
    });
    assert.deepEqual(up.info?.labels, { a: "1", b: "2" });
    const up2 = await c.call(Content, "update", {
      info: { digest, labels: { b: "3" } },
      updateMask: { paths: ["labels.b"] },
    });
    assert.deepEqual(up2.info?.labels, { a: "1", b: "3" });
    const events = c.stream(
      Events,
      "subscribe",
      { filters: ['topic=="/content/delete"'] },
      ac.signal,
    );
    const first = events.next();
    // The subscription is live once the daemon counts it; give it a moment.
    await new Promise((r) => setTimeout(r, 300));
    await c.call(Content, "delete", { digest });
    const ev = await first;
    assert.equal(ev.done, false);
    assert.equal(ev.value?.topic, "/content/delete");
    assert.equal(ev.value?.namespace, "ev");
    assert.equal(ev.value?.event?.typeUrl, "containerd.events.ContentDelete");
  } finally {
    ac.abort();
    c.close();
  }
});

Deno.test("a lease on the call holds the ingest, then the committed blob", async () => {
  await using d = await startDaemon();
  ok(await d.ctr(["-n", "ls1", "leases", "create", "--id", "l1"]));
  const c = new Client({ address: d.sock, namespace: "ls1", lease: "l1" });
  try {
    const data = new TextEncoder().encode("leased bytes");
    const w = writer(c);
    await w.req({ action: WriteAction.STAT, ref: "lr" });
    const res = async () =>
      (await c.call(Leases, "listResources", { id: "l1" })).resources.map((r) =>
        `${r.type}:${r.id}`
      );
    assert.deepEqual(await res(), ["ingests:lr"]);
    await w.req({ action: WriteAction.COMMIT, data, expected: sha256(data) });
    await w.close();
    assert.deepEqual(await res(), [`content:${sha256(data)}`]);
    await c.call(Content, "delete", { digest: sha256(data) });
    assert.deepEqual(await res(), []);
  } finally {
    c.close();
  }
});
