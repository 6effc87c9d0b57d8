/**
 * Process IO in the shim: the runtime's stdio are pipes to the shim (Deno can
 * hand a child nothing else), and the shim copies them to what the client
 * asked for:
 *
 * - a FIFO path (what ctr and the berth CLI create). Output FIFOs are opened
 *   read-write, so the open never blocks and they survive a client that comes
 *   and goes. The stdin FIFO is opened read-only, as containerd's shim does:
 *   the open waits (on a pool thread) for the client's end, and when the
 *   client closes it the process reads EOF (`ctr run` relies on this; CloseIO
 *   does the same on request);
 * - `file:///path`: output appended to a file (stdin not supported);
 * - `file:///path?stream=stdout&format=cri` (and `stream=stderr`): both
 *   streams into one log file in the CRI format (`<time> <stream> <P|F> <msg>`),
 *   which `berth logs` and kubelet read;
 * - empty: discarded.
 *
 * Output is copied as it comes; nothing is buffered beyond one chunk.
 */
import { invalidArgument } from "../../core/errdefs.ts";
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
  return await Deno.open(uri, { read: true, write: true });
}

async function writeAll(sink: Sink, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.length) off += await sink.write(chunk.subarray(off));
}

/** Copies a readable stream to a sink until EOF; errors on the sink drop output, never the process. */
async function pump(src: ReadableStream<Uint8Array>, sink: Sink | undefined): Promise<void> {
  const reader = src.getReader();
  let ok = sink !== undefined;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (!ok) continue; // keep draining so the process never blocks on a full pipe
      try {
        await writeAll(sink!, value);
      } catch {
        ok = false;
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
  #stdin: Deno.FsFile | undefined;
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
    const buf = new Uint8Array(32 * 1024);
    const w = this.#stdinWriter!;
    try {
      // Completes once the client opens its end (or closeStdin releases it).
      const f = await Deno.open(this.#stdinPath, { read: true });
      if (this.#stdinClosed) f.close();
      else {
        this.#stdin = f;
        for (;;) {
          const n = await f.read(buf);
          if (n === null || this.#stdinClosed) break;
          await w.write(buf.slice(0, n));
        }
      }
    } catch { /* closed by closeStdin or the process went away */ }
    // The client closed its end: the process reads EOF, as with containerd's shim.
    await w.close().catch(() => {});
  }

  /** Closes the process's stdin (CloseIO): it reads EOF. */
  closeStdin(): void {
    if (this.#stdinClosed) return;
    this.#stdinClosed = true;
    const f = this.#stdin;
    this.#stdin = undefined;
    if (f) {
      try {
        f.close();
      } catch { /* already closed */ }
    } else if (this.#stdinPath) {
      // An open still waiting for the client: opening the other end ourselves releases it.
      try {
        Deno.openSync(this.#stdinPath, { read: true, write: true }).close();
      } catch { /* the FIFO is gone */ }
    }
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
