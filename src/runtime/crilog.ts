/**
 * The CRI container log format, berth's one store of a container's output:
 * one line per record, `<RFC3339Nano time> <stdout|stderr> <P|F> <message>`,
 * where `F` ends a line of the program's output and `P` is a piece of a line
 * (output without a newline yet, or a line cut at {@link MAX_RECORD} bytes).
 * This is what kubelet reads (`kuberuntime` logs) and what `berth logs` and
 * `berth run` read back.
 *
 * Both streams of a container share one file; each stream keeps its own
 * unfinished line, so the interleaving of stdout and stderr is kept line by
 * line, never inside a line.
 *
 * @module
 */

/** A record longer than this is cut into `P` records (as containerd's CRI does, 16 KiB). */
export const MAX_RECORD = 16 * 1024;

/** The stream a record came from. */
export type CriStream = "stdout" | "stderr";

/** One parsed record of a CRI log. */
export interface CriRecord {
  /** The time as written (RFC 3339 with nanoseconds); "" for a line that was not CRI. */
  time: string;
  stream: CriStream;
  /** True for `P`: the message continues in the next record of the stream. */
  partial: boolean;
  /** The message, without the line's own newline. */
  msg: Uint8Array;
}

const NL = 0x0a;
const enc = new TextEncoder();
const dec = new TextDecoder();

function pad(n: number, w: number): string {
  return String(n).padStart(w, "0");
}

/**
 * The current time in RFC 3339 with nanoseconds, UTC (`2026-11-27T16:40:00.123456789Z`).
 * Date has milliseconds; performance.now() adds the sub-millisecond digits so
 * records of one burst still sort.
 */
export function rfc3339NanoNow(): string {
  const ms = Date.now();
  const d = new Date(ms);
  const frac = Math.floor((performance.timeOrigin + performance.now()) * 1e6) % 1e9;
  const nanos = (ms % 1000) * 1e6 + (frac % 1e6);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}T${
    pad(d.getUTCHours(), 2)
  }:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.${pad(nanos, 9)}Z`;
}

function record(time: string, stream: CriStream, tag: "P" | "F", msg: Uint8Array): Uint8Array {
  const head = enc.encode(`${time} ${stream} ${tag} `);
  const out = new Uint8Array(head.length + msg.length + 1);
  out.set(head);
  out.set(msg, head.length);
  out[out.length - 1] = NL;
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Options of {@link CriEncoder}. */
export interface CriEncoderOptions {
  /** The clock (tests); default {@link rfc3339NanoNow}. */
  now?: () => string;
  /**
   * Keep the bytes after a chunk's last newline until more output (or
   * {@link CriEncoder.flush}) instead of writing them at once as a `P`
   * record. Default false: a prompt without a newline must reach a reader
   * following the log (`berth run -i`) while the program waits for input.
   */
  holdPartial?: boolean;
}

/**
 * Turns a stream's output chunks into CRI records. A line longer than
 * {@link MAX_RECORD} is written in `P` pieces; output after the last newline
 * of a chunk becomes a `P` record at once (or waits, with `holdPartial`).
 */
export class CriEncoder {
  readonly stream: CriStream;
  #pending: Uint8Array = new Uint8Array(0);
  #now: () => string;
  #hold: boolean;

  constructor(stream: CriStream, opts: CriEncoderOptions = {}) {
    this.stream = stream;
    this.#now = opts.now ?? rfc3339NanoNow;
    this.#hold = opts.holdPartial ?? false;
  }

  /** The records `chunk` completes, in order (possibly none). */
  write(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let buf = concat(this.#pending, chunk);
    const time = this.#now();
    for (;;) {
      const nl = buf.indexOf(NL);
      if (nl < 0) break;
      let line = buf.subarray(0, nl);
      while (line.length > MAX_RECORD) {
        out.push(record(time, this.stream, "P", line.subarray(0, MAX_RECORD)));
        line = line.subarray(MAX_RECORD);
      }
      out.push(record(time, this.stream, "F", line));
      buf = buf.subarray(nl + 1);
    }
    while (buf.length > MAX_RECORD) {
      out.push(record(time, this.stream, "P", buf.subarray(0, MAX_RECORD)));
      buf = buf.subarray(MAX_RECORD);
    }
    if (!this.#hold && buf.length > 0) {
      out.push(record(time, this.stream, "P", buf));
      buf = buf.subarray(buf.length);
    }
    this.#pending = buf.slice();
    return out;
  }

  /**
   * Emits the unfinished line as a `P` record (the output ended, or paused:
   * a prompt without a newline must still reach the reader).
   */
  flush(): Uint8Array[] {
    if (this.#pending.length === 0) return [];
    const r = record(this.#now(), this.stream, "P", this.#pending);
    this.#pending = new Uint8Array(0);
    return [r];
  }
}

const CRI_LINE =
  /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (stdout|stderr) ([PF]) /;

/**
 * Parses one line (without its newline) of a CRI log. A line that is not in
 * the format (a log written raw by a shim that does not know it) is kept as
 * a whole stdout line with no time, so nothing the program wrote is lost.
 */
export function parseCriLine(line: Uint8Array): CriRecord {
  // The header is ASCII and short: decode only its first bytes.
  const head = dec.decode(line.subarray(0, 64));
  const m = CRI_LINE.exec(head);
  if (!m) return { time: "", stream: "stdout", partial: false, msg: line };
  const skip = enc.encode(m[0]).length;
  return {
    time: m[1]!,
    stream: m[2] as CriStream,
    partial: m[3] === "P",
    msg: line.subarray(skip),
  };
}

/**
 * Splits CRI log bytes into records. Feed chunks as they are read; the
 * bytes after the last newline wait for the next chunk.
 */
export class CriParser {
  #rest: Uint8Array = new Uint8Array(0);

  /** The complete records in `chunk` (plus what earlier chunks left). */
  push(chunk: Uint8Array): CriRecord[] {
    let buf = concat(this.#rest, chunk);
    const out: CriRecord[] = [];
    for (;;) {
      const nl = buf.indexOf(NL);
      if (nl < 0) break;
      out.push(parseCriLine(buf.subarray(0, nl)));
      buf = buf.subarray(nl + 1);
    }
    this.#rest = buf.slice();
    return out;
  }

  /** The last record when the log did not end with a newline. */
  end(): CriRecord[] {
    if (this.#rest.length === 0) return [];
    const r = parseCriLine(this.#rest);
    this.#rest = new Uint8Array(0);
    return [r];
  }
}

/** Parses a whole CRI log. */
export function parseCriLog(bytes: Uint8Array): CriRecord[] {
  const p = new CriParser();
  return [...p.push(bytes), ...p.end()];
}

/** The bytes a record stands for in the program's output: `F` gets its newline back. */
export function recordBytes(r: CriRecord): Uint8Array {
  if (r.partial) return r.msg;
  const out = new Uint8Array(r.msg.length + 1);
  out.set(r.msg);
  out[r.msg.length] = NL;
  return out;
}

/** One stream's writer into a shared CRI log file. */
export interface CriLogSink {
  write(chunk: Uint8Array): Promise<number>;
  close(): void;
}

interface SharedFile {
  file: Deno.FsFile;
  users: number;
  /** Writes in order, one at a time, so records of the two streams never interleave. */
  queue: Promise<void>;
}

/** Open log files by path: both streams of a container append through one handle. */
const OPEN = new Map<string, SharedFile>();

async function writeAll(f: Deno.FsFile, b: Uint8Array): Promise<void> {
  let off = 0;
  while (off < b.length) off += await f.write(b.subarray(off));
}

/**
 * Opens `path` (created, appended to) as the CRI log sink of `stream`. Both
 * streams of a container open the same path and share one file handle, so
 * their records are appended whole and in order; each stream keeps its own
 * unfinished line, written as a `P` record when the stream closes.
 *
 * The shim calls this for an output URI `file:///path?stream=stdout&format=cri`.
 */
export async function openCriLogSink(path: string, stream: CriStream): Promise<CriLogSink> {
  let shared = OPEN.get(path);
  if (!shared) {
    const dir = path.slice(0, path.lastIndexOf("/")) || "/";
    await Deno.mkdir(dir, { recursive: true });
    // Another open of the same path may have won while we awaited.
    shared = OPEN.get(path);
    if (!shared) {
      const file = await Deno.open(path, { write: true, append: true, create: true });
      shared = { file, users: 0, queue: Promise.resolve() };
      OPEN.set(path, shared);
    }
  }
  const s = shared;
  s.users++;
  const encoder = new CriEncoder(stream);
  let closed = false;
  const append = (records: Uint8Array[]) => {
    if (records.length === 0) return s.queue;
    const bytes = records.length === 1 ? records[0]! : records.reduce(concat);
    s.queue = s.queue.then(() => writeAll(s.file, bytes));
    return s.queue;
  };
  return {
    async write(chunk) {
      if (closed) throw new Error(`CRI log ${path} (${stream}) is closed`);
      await append(encoder.write(chunk));
      return chunk.length;
    },
    close() {
      if (closed) return;
      closed = true;
      const last = append(encoder.flush()).catch(() => {});
      if (--s.users === 0) {
        OPEN.delete(path);
        last.finally(() => {
          try {
            s.file.close();
          } catch { /* already closed */ }
        });
      }
    },
  };
}

/** The CRI-format URI of a container log (what the task's stdout and stderr are set to). */
export function criLogUri(path: string, stream: CriStream): string {
  return `file://${encodeURI(path)}?stream=${stream}&format=cri`;
}

/** Parses a task output URI made by {@link criLogUri}; undefined for any other URI. */
export function parseCriLogUri(uri: string): { path: string; stream: CriStream } | undefined {
  if (!uri.startsWith("file://")) return undefined;
  const u = new URL(uri);
  if (u.searchParams.get("format") !== "cri") return undefined;
  const stream = u.searchParams.get("stream");
  if (stream !== "stdout" && stream !== "stderr") return undefined;
  return { path: decodeURIComponent(u.pathname), stream };
}

/** For messages: a record's text (lossy for non-UTF-8 output). */
export function recordText(r: CriRecord): string {
  return dec.decode(r.msg);
}
