/**
 * Process IO in the shim: the runtime's stdio are pipes to the shim (Deno can
 * hand a child nothing else), and the shim copies them to what the client
 * asked for:
 *
 * - a FIFO path (what ctr and the berth CLI create). Output FIFOs are opened
 *   read-write, so the open never blocks and they survive a client that comes
 *   and goes. The stdin FIFO is opened read-only, as containerd's shim does,
 *   but non-blocking, waited on with the process's one poll (sys/nbfile.ts):
 *   a blocking open or read would pin one of Deno's 32 pool threads per
 *   container until its client comes, which may be never (`ctr run -d`),
 *   and with ~30 containers every file operation of the shim would queue.
 *   When the client closes its end the process reads EOF (`ctr run` relies
 *   on this; CloseIO does the same on request);
 * - `file:///path`: output appended to a file (stdin not supported);
 * - `file:///path?stream=stdout&format=cri` (and `stream=stderr`): both
 *   streams into one log file in the CRI format (`<time> <stream> <P|F> <msg>`),
 *   which `berth logs` and kubelet read;
 * - empty: discarded.
 *
 * Output is copied as it comes; nothing is buffered beyond one chunk.
 */
import { invalidArgument } from "../../core/errdefs.ts";
import { type NonBlockingFile, openFifo } from "../../sys/nbfile.ts";
import { openCriLogSink, parseCriLogUri } from "../crilog.ts";

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

type Sink = { write(b: Uint8Array): Promise<number>; close(): void };

async function openSink(uri: string): Promise<Sink | undefined> {
  if (uri === "") return undefined;
  // berth's own containers log both streams into one CRI-format file.
  const cri = parseCriLogUri(uri);
  if (cri) return await openCriLogSink(cri.path, cri.stream);
  if (uri.startsWith("file://")) {
    const path = decodeURIComponent(new URL(uri).pathname);
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || "/", { recursive: true });
    return await Deno.open(path, { write: true, append: true, create: true });
  }
  if (uri.includes("://")) {
    throw invalidArgument(`unsupported IO URI "${uri}": use a FIFO path or file:///path`);
  }
  // Read-write: the open never waits for a reader, and writes wait (without
  // a pool thread) while the FIFO is full and nobody reads.
  return openFifo(uri, "readwrite");
}

async function writeAll(sink: Sink, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.length) off += await sink.write(chunk.subarray(off));
}

/**
 * Bytes per read of a process's output: a silent process keeps one read
 * pending per stream for its whole life, holding its buffer (Deno's default
 * for a pipe is 64 KiB each, ~2.5 MB for 20 containers doing nothing). So
 * reads start at PUMP_MIN, double while they come back full (a chatty
 * process), and shrink to fit what the last read got.
 */
const PUMP_MIN = 1024;
const PUMP_MAX = 64 * 1024;

/** The buffer size for the read after one that got `got` bytes into `size`. */
export function nextPumpSize(size: number, got: number): number {
  if (got >= size) return Math.min(size * 2, PUMP_MAX);
  let next = PUMP_MIN;
  while (next < got) next *= 2;
  return Math.min(next, PUMP_MAX);
}

/** Copies a readable stream to a sink until EOF; errors on the sink drop output, never the process. */
async function pump(src: ReadableStream<Uint8Array>, sink: Sink | undefined): Promise<void> {
  let ok = sink !== undefined;
  const deliver = async (chunk: Uint8Array) => {
    if (!ok) return; // keep draining so the process never blocks on a full pipe
    try {
      await writeAll(sink!, chunk);
    } catch {
      ok = false;
    }
  };
  // Byte streams (child pipes) are read into our own small buffer; others (a pty) as they come.
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = src.getReader({ mode: "byob" });
  } catch { /* not a byte stream */ }
  const reader = byob ?? src.getReader();
  try {
    if (byob) {
      let buf: Uint8Array<ArrayBuffer> = new Uint8Array(PUMP_MIN);
      for (;;) {
        const { value, done } = await byob.read(buf);
        if (done || !value) break;
        await deliver(value);
        const size = nextPumpSize(value.buffer.byteLength, value.length);
        // The read transferred the buffer to `value`: reuse it when the size stays.
        buf = size === value.buffer.byteLength
          ? new Uint8Array(value.buffer)
          : new Uint8Array(size);
      }
    } else {
      const r = reader as ReadableStreamDefaultReader<Uint8Array>;
      for (;;) {
        const { value, done } = await r.read();
        if (done) break;
        await deliver(value);
      }
    }
  } finally {
    reader.releaseLock();
    try {
      sink?.close();
    } catch { /* already closed */ }
  }
}

/** The streams of a process as the shim holds them. */
export interface ProcessStreams {
  stdout: ReadableStream<Uint8Array>;
  /** Absent for a terminal (its output is all on stdout). */
  stderr?: ReadableStream<Uint8Array>;
  /** Absent when the process has no stdin. */
  stdin?: WritableStream<Uint8Array>;
}

/** The live IO of one process: copying goes on until the process's output ends. */
export class ProcessIo {
  #stdin: NonBlockingFile | undefined;
  #stdinPath = "";
  #stdinClosed = false;
  #stdinWriter: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #copies: Promise<void>[] = [];
  #stdinCopy: Promise<void> | undefined;

  /**
   * Starts copying between `child`'s pipes and the client's paths. Call right
   * after the runtime call that created the process returned.
   */
  static attach(child: Deno.ChildProcess, paths: StdioPaths): Promise<ProcessIo> {
    return ProcessIo.attachStreams({
      stdout: child.stdout,
      stderr: paths.terminal ? undefined : child.stderr,
      stdin: paths.stdin ? child.stdin : undefined,
    }, paths);
  }

  /**
   * Starts copying between a process's streams (pipes, or a pty master's
   * readable/writable for a terminal) and the client's paths.
   */
  static async attachStreams(streams: ProcessStreams, paths: StdioPaths): Promise<ProcessIo> {
    const io = new ProcessIo();
    if (paths.stdin.includes("://")) {
      throw invalidArgument(`unsupported stdin URI "${paths.stdin}": use a FIFO path`);
    }
    const [out, err] = await Promise.all([openSink(paths.stdout), openSink(paths.stderr)]);
    io.#copies.push(pump(streams.stdout, out));
    if (streams.stderr) io.#copies.push(pump(streams.stderr, err));
    else err?.close();
    if (paths.stdin && streams.stdin) {
      io.#stdinPath = paths.stdin;
      io.#stdinWriter = streams.stdin.getWriter();
      io.#stdinCopy = io.#copyStdin();
    }
    return io;
  }

  async #copyStdin(): Promise<void> {
    const w = this.#stdinWriter!;
    try {
      const f = openFifo(this.#stdinPath, "read");
      if (this.#stdinClosed) f.close();
      else {
        this.#stdin = f;
        for (;;) {
          // No buffer is held while waiting: `ctr run -d` makes a stdin FIFO it never opens.
          const chunk = await f.readChunk();
          if (chunk === null || this.#stdinClosed) break;
          await w.write(chunk);
        }
      }
    } catch { /* the FIFO is gone, or the process went away */ }
    this.#stdin?.close();
    // The client closed its end: the process reads EOF, as with containerd's shim.
    await w.close().catch(() => {});
  }

  /** Closes the process's stdin (CloseIO): it reads EOF. */
  closeStdin(): void {
    if (this.#stdinClosed) return;
    this.#stdinClosed = true;
    this.#stdin?.close();
    // Closing the pipe now, not after a pending read returns, gives the process its EOF at once.
    this.#stdinWriter?.close().catch(() => {});
    this.#stdinWriter = undefined;
  }

  /** Resolves when all output has been copied (the process and its children closed it). */
  async drained(): Promise<void> {
    await Promise.all(this.#copies);
  }

  close(): void {
    this.closeStdin();
  }
}
