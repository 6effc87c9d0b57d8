import assert from "node:assert/strict";
import {
  CriEncoder,
  criLogUri,
  CriParser,
  MAX_RECORD,
  openCriLogSink,
  parseCriLine,
  parseCriLog,
  parseCriLogUri,
  recordBytes,
  recordText,
  rfc3339NanoNow,
} from "./crilog.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const T = "2026-11-27T16:40:00.000000001Z";
const text = (rs: Uint8Array[]) => rs.map((r) => dec.decode(r)).join("");

Deno.test("encoder: full lines are F records, a tail without newline is P at once", () => {
  const e = new CriEncoder("stdout", { now: () => T });
  assert.equal(
    text(e.write(enc.encode("a\nbb\nc"))),
    `${T} stdout F a\n${T} stdout F bb\n${T} stdout P c\n`,
  );
  assert.equal(text(e.write(enc.encode("d\n"))), `${T} stdout F d\n`);
  assert.equal(text(e.write(enc.encode("\n"))), `${T} stdout F \n`, "an empty line stays a line");
  assert.deepEqual(e.flush(), []);
});

Deno.test("encoder with holdPartial keeps the tail until the newline or flush", () => {
  const e = new CriEncoder("stderr", { now: () => T, holdPartial: true });
  assert.deepEqual(e.write(enc.encode("par")), []);
  assert.equal(text(e.write(enc.encode("tial\nx"))), `${T} stderr F partial\n`);
  assert.equal(text(e.flush()), `${T} stderr P x\n`);
});

Deno.test("encoder splits a long line at 16 KiB into P records", () => {
  const e = new CriEncoder("stdout", { now: () => T });
  const line = "x".repeat(MAX_RECORD * 2 + 5);
  const recs = e.write(enc.encode(line + "\n")).map((r) => dec.decode(r));
  assert.equal(recs.length, 3);
  assert.equal(recs[0], `${T} stdout P ${"x".repeat(MAX_RECORD)}\n`);
  assert.equal(recs[1], `${T} stdout P ${"x".repeat(MAX_RECORD)}\n`);
  assert.equal(recs[2], `${T} stdout F xxxxx\n`);
  const back = parseCriLog(enc.encode(recs.join("")));
  assert.equal(back.map((r) => dec.decode(recordBytes(r))).join(""), line + "\n");
});

Deno.test("parser: records split across chunks, both streams, P joined back", () => {
  const log = `${T} stdout P hel\n${T} stderr F oops\n${T} stdout F lo\n`;
  const p = new CriParser();
  const recs = [];
  for (let i = 0; i < log.length; i += 7) recs.push(...p.push(enc.encode(log.slice(i, i + 7))));
  recs.push(...p.end());
  assert.deepEqual(recs.map((r) => [r.time, r.stream, r.partial, recordText(r)]), [
    [T, "stdout", true, "hel"],
    [T, "stderr", false, "oops"],
    [T, "stdout", false, "lo"],
  ]);
  const out = recs.filter((r) => r.stream === "stdout").map((r) => dec.decode(recordBytes(r)));
  assert.equal(out.join(""), "hello\n");
});

Deno.test("parser keeps a line that is not CRI as stdout text, with no time", () => {
  const r = parseCriLine(enc.encode("plain output"));
  assert.deepEqual([r.time, r.stream, r.partial, recordText(r)], [
    "",
    "stdout",
    false,
    "plain output",
  ]);
  const z = parseCriLine(enc.encode("2026-01-02T03:04:05+01:00 stderr F é"));
  assert.deepEqual([z.time, z.stream, recordText(z)], ["2026-01-02T03:04:05+01:00", "stderr", "é"]);
});

Deno.test("rfc3339NanoNow has nine fraction digits and parses as now", () => {
  const t = rfc3339NanoNow();
  assert.match(t, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
  assert.ok(Math.abs(Date.parse(t) - Date.now()) < 5000);
});

Deno.test("URIs: criLogUri round-trips, other URIs are not CRI logs", () => {
  const u = criLogUri("/run/x y/io/default/c1/log", "stderr");
  assert.equal(u, "file:///run/x%20y/io/default/c1/log?stream=stderr&format=cri");
  assert.deepEqual(parseCriLogUri(u), { path: "/run/x y/io/default/c1/log", stream: "stderr" });
  assert.equal(parseCriLogUri("file:///tmp/out"), undefined);
  assert.equal(parseCriLogUri("/run/fifo"), undefined);
});

Deno.test("openCriLogSink: two streams share one file, records whole and in order", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-crilog-" });
  try {
    const path = `${dir}/sub/c.log`;
    const out = await openCriLogSink(path, "stdout");
    const err = await openCriLogSink(path, "stderr");
    await Promise.all([
      out.write(enc.encode("one\ntw")),
      err.write(enc.encode("E1\n")),
      out.write(enc.encode("o\n")),
    ]);
    out.close();
    await err.write(enc.encode("E2"));
    err.close();
    await new Promise((r) => setTimeout(r, 50));
    const recs = parseCriLog(await Deno.readFile(path));
    const by = (s: string) =>
      recs.filter((r) => r.stream === s).map((r) => dec.decode(recordBytes(r))).join("");
    assert.equal(by("stdout"), "one\ntwo\n");
    assert.equal(by("stderr"), "E1\nE2");
    assert.ok(recs.every((r) => r.time !== ""), "every line is a CRI record");
    // A new writer after both closed appends to the same file.
    const again = await openCriLogSink(path, "stdout");
    await again.write(enc.encode("three\n"));
    again.close();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(recordText(parseCriLog(await Deno.readFile(path)).at(-1)!), "three");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
