import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  Content,
  type Info,
  WriteAction,
} from "../../gen/containerd/services/content/v1/content_pb.ts";
import { Leases } from "../../gen/containerd/services/leases/v1/leases_pb.ts";
import { digestProblem } from "../../content/digest.ts";
import { isKind } from "../../core/errdefs.ts";
import {
  type Command,
  dispatch,
  formatLabels,
  formatSize,
  type Globals,
  parse,
  parseLabels,
  table,
  toJson,
  UsageError,
} from "./command.ts";

const HELP = `Usage: berth content <command>

Manage content blobs: immutable bytes addressed by digest. A blob is stored
once and visible in each namespace that committed (or was given) it.

Commands:
  ls [-q] [--json] [FILTER...]                  list blobs
  get DIGEST                                    write a blob's bytes to stdout
  ingest [--expected-size N] [--expected-digest D] REF
                                                store stdin as a blob
  rm DIGEST...                                  remove blobs from the namespace
  label DIGEST [KEY=VALUE|KEY=...]              set labels (KEY= removes one)
  prune                                         garbage-collect everything no image,
                                                container, lease or gc.root label holds

Run 'berth content <command> --help' for details.
`;

const LS_HELP = `Usage: berth content ls [-q] [--json] [FILTER...]

Lists the namespace's blobs as DIGEST, SIZE, AGE and LABELS.
Filters use containerd's syntax and are OR-ed; fields are digest, size and
labels.<key>, e.g. 'labels.foo==bar' or 'digest~=^sha256:ab'.

Options:
  -q, --quiet   print digests only
  --json        print JSON (digest, size, createdAt, updatedAt, labels)
`;

const GET_HELP = `Usage: berth content get DIGEST

Writes the blob's bytes to standard output.
`;

const INGEST_HELP = `Usage: berth content ingest [--expected-size N] [--expected-digest D] REF

Reads standard input into the ingest REF and commits it as a blob; prints the
blob's digest. With --expected-digest, a blob the store already holds is not
sent again, and an interrupted ingest of REF resumes where it stopped (the
bytes already stored are skipped on standard input). A digest or size
mismatch commits nothing.

Options:
  --expected-size N     the blob must be N bytes
  --expected-digest D   the blob must have digest D (e.g. sha256:...)
`;

const RM_HELP = `Usage: berth content rm DIGEST...

Removes blobs from the namespace. The bytes are deleted once no namespace
holds the blob.
`;

const LABEL_HELP = `Usage: berth content label DIGEST [KEY=VALUE|KEY=...]

Sets labels on a blob (KEY= removes KEY) and prints its labels.
`;

const CHUNK = 1 << 20;

function checkDigest(d: string): string {
  const problem = digestProblem(d);
  if (problem) throw new UsageError(`invalid digest "${d}": ${problem}`);
  return d;
}

function plural(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? "" : "s"}`;
}

/** How long ago `t` was, in the words ctr uses (Docker's HumanDuration). */
export function formatAge(t: Date, now = Date.now()): string {
  const s = Math.floor((now - t.getTime()) / 1000);
  if (s < 1) return "Less than a second";
  if (s < 60) return plural(s, "second");
  const m = Math.floor(s / 60);
  if (m === 1) return "About a minute";
  if (m < 60) return plural(m, "minute");
  const h = Math.floor(m / 60);
  if (h === 1) return "About an hour";
  if (h < 48) return plural(h, "hour");
  if (h < 24 * 14) return plural(Math.floor(h / 24), "day");
  if (h < 24 * 90) return plural(Math.floor(h / (24 * 7)), "week");
  if (h < 24 * 365 * 2) return plural(Math.floor(h / (24 * 30)), "month");
  return plural(Math.floor(h / (24 * 365)), "year");
}

function infoJson(i: Info) {
  return {
    digest: i.digest,
    size: Number(i.size),
    createdAt: i.createdAt ? timestampDate(i.createdAt).toISOString() : undefined,
    updatedAt: i.updatedAt ? timestampDate(i.updatedAt).toISOString() : undefined,
    labels: i.labels,
  };
}

async function writeAll(
  out: { write(p: Uint8Array): Promise<number> },
  data: Uint8Array,
): Promise<void> {
  for (let done = 0; done < data.length;) done += await out.write(data.subarray(done));
}

/** Reads a stream in chunks of exactly `size` bytes (the last may be shorter). */
async function* rechunk(src: ReadableStream<Uint8Array>, size: number) {
  let buf = new Uint8Array(size);
  let fill = 0;
  for await (const piece of src) {
    let at = 0;
    while (at < piece.length) {
      const n = Math.min(size - fill, piece.length - at);
      buf.set(piece.subarray(at, at + n), fill);
      fill += n;
      at += n;
      if (fill === size) {
        yield buf;
        buf = new Uint8Array(size);
        fill = 0;
      }
    }
  }
  if (fill > 0) yield buf.subarray(0, fill);
}

async function ls(g: Globals, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    quiet: { type: "boolean", short: "q" },
    json: { type: "boolean" },
  }, LS_HELP);
  const infos: Info[] = [];
  for await (const res of g.client().stream(Content, "list", { filters: positionals })) {
    infos.push(...res.info);
  }
  if (values.json) g.out(toJson(infos.map(infoJson)));
  else if (values.quiet) { for (const i of infos) g.out(i.digest); }
  else {
    g.out(table(
      ["DIGEST", "SIZE", "AGE", "LABELS"],
      infos.map((i) => [
        i.digest,
        formatSize(i.size),
        i.createdAt ? formatAge(timestampDate(i.createdAt)) : "-",
        formatLabels(i.labels),
      ]),
    ));
  }
  return 0;
}

async function get(g: Globals, args: string[]): Promise<number> {
  const { positionals } = parse(args, {}, GET_HELP);
  if (positionals.length !== 1) {
    throw new UsageError(`content get: one DIGEST is required\n\n${GET_HELP}`);
  }
  const digest = checkDigest(positionals[0]!);
  for await (const res of g.client().stream(Content, "read", { digest })) {
    await writeAll(Deno.stdout, res.data);
  }
  return 0;
}

async function ingest(g: Globals, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    "expected-size": { type: "string" },
    "expected-digest": { type: "string" },
  }, INGEST_HELP);
  if (positionals.length !== 1) {
    throw new UsageError(`content ingest: one REF is required\n\n${INGEST_HELP}`);
  }
  const ref = positionals[0]!;
  const sizeArg = values["expected-size"];
  let total = 0;
  if (sizeArg !== undefined) {
    if (!/^\d+$/.test(sizeArg)) {
      throw new UsageError(`--expected-size "${sizeArg}" must be a number of bytes`);
    }
    total = Number(sizeArg);
  }
  const expected = values["expected-digest"] ? checkDigest(values["expected-digest"]) : "";
  const call = g.client().duplex(Content, "write");
  const reply = async () => {
    const r = await call.replies.next();
    if (r.done) throw new Error(`ingest "${ref}": the daemon ended the write stream early`);
    return r.value;
  };
  try {
    await call.send({ action: WriteAction.STAT, ref, total: BigInt(total), expected });
    let offset: number;
    try {
      offset = Number((await reply()).offset);
    } catch (e) {
      if (expected && isKind(e, "already_exists")) {
        g.out(expected);
        return 0;
      }
      throw e;
    }
    let skip = 0;
    if (offset > 0 && expected) skip = offset;
    else offset = 0; // Unverifiable resume: the first write at 0 starts the ingest over.
    for await (let chunk of rechunk(Deno.stdin.readable, CHUNK)) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.length);
        skip -= n;
        chunk = chunk.subarray(n);
        if (chunk.length === 0) continue;
      }
      await call.send({ action: WriteAction.WRITE, offset: BigInt(offset), data: chunk });
      offset = Number((await reply()).offset);
    }
    if (skip > 0) {
      throw new Error(
        `ingest "${ref}": standard input ended before the ${offset} bytes already stored`,
      );
    }
    await call.send({
      action: WriteAction.COMMIT,
      offset: BigInt(offset),
      total: BigInt(total),
      expected,
    });
    let digest: string;
    try {
      digest = (await reply()).digest;
    } catch (e) {
      if (isKind(e, "already_exists")) digest = expected;
      else throw e;
    }
    call.end();
    for await (const _ of call.replies) { /* drain the stream's last reply */ }
    g.out(digest);
    return 0;
  } finally {
    call.end();
  }
}

async function rm(g: Globals, args: string[]): Promise<number> {
  const { positionals } = parse(args, {}, RM_HELP);
  if (positionals.length === 0) {
    throw new UsageError(`content rm: at least one DIGEST is required\n\n${RM_HELP}`);
  }
  let failed = 0;
  for (const d of positionals) {
    try {
      await g.client().call(Content, "delete", { digest: checkDigest(d) });
      g.out(d);
    } catch (e) {
      g.err(`berth: ${(e as Error).message}`);
      failed++;
    }
  }
  return failed ? 1 : 0;
}

async function label(g: Globals, args: string[]): Promise<number> {
  const { positionals } = parse(args, {}, LABEL_HELP);
  const [d, ...rest] = positionals;
  if (!d) throw new UsageError(`content label: a DIGEST is required\n\n${LABEL_HELP}`);
  const digest = checkDigest(d);
  const set = parseLabels(rest);
  const paths = Object.keys(set).map((k) => `labels.${k}`);
  const info = paths.length === 0
    ? (await g.client().call(Content, "info", { digest })).info
    : (await g.client().call(Content, "update", {
      info: { digest, labels: set },
      updateMask: { paths },
    })).info;
  g.out(formatLabels(info?.labels ?? {}));
  return 0;
}

const PRUNE_HELP = `Usage: berth content prune

Runs garbage collection now (containerd's label model: images, containers,
leases and containerd.io/gc.root keep what they reference) and prints the
digests that were removed from this namespace.
`;

async function prune(g: Globals, args: string[]): Promise<number> {
  parse(args, {}, PRUNE_HELP);
  const c = g.client();
  const list = async () => {
    const out = new Set<string>();
    for await (const res of c.stream(Content, "list", { filters: [] })) {
      for (const i of res.info) out.add(i.digest);
    }
    return out;
  };
  const before = await list();
  // Deleting a lease with sync runs a full collection and waits for it.
  const { lease } = await c.call(Leases, "create", { id: "", labels: {} });
  await c.call(Leases, "delete", { id: lease!.id, sync: true });
  const after = await list();
  for (const d of before) if (!after.has(d)) g.out(d);
  return 0;
}

export const contentCommand: Command = {
  name: "content",
  summary: "Manage content blobs",
  help: HELP,
  run: (g, args) =>
    dispatch(g, args, HELP, { ls, list: ls, get, ingest, rm, delete: rm, label, prune }),
};
