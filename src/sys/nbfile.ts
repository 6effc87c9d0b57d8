/**
 * Files on raw non-blocking fds: pty masters and FIFOs. Reads and writes are
 * synchronous libc calls on an O_NONBLOCK fd (so errno is reliable and
 * nothing is ever left blocked in the kernel); waiting for readiness goes
 * through the process's single poller (fdpoll.ts), so no Deno pool thread is
 * held per file however long the file stays idle.
 *
 * Deno.FsFile cannot serve here: every read or write of an FsFile takes a
 * pool thread until it completes, and a FIFO read waits for as long as the
 * client writes nothing (a stdin nobody types into), a FIFO write for as long
 * as nobody reads (a detached container that prints).
 */
import { check, cstr, errno, libc, SysError } from "./libc.ts";
import { POLLIN, POLLOUT, Waitable } from "./fdpoll.ts";

const O_RDONLY = 0;
const O_RDWR = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const F_SETFL = 4;
const EINTR = 4;
const EIO = 5;
const EAGAIN = 11;

/** The most {@link NonBlockingFile.readChunk} takes by default. */
const CHUNK = 32 * 1024;
/** {@link NonBlockingFile}'s internal verdicts of a read(2) that must be tried again. */
const AGAIN = -1;
const INTERRUPTED = -2;
/**
 * Where every readChunk of the process reads: read(2) on these non-blocking
 * fds is a synchronous call, so no two reads ever use it at once.
 */
let scratch = new Uint8Array(0);

/** How a {@link NonBlockingFile} reads. */
export interface NonBlockingOptions {
  /** A name for errors (the path, or `pty master /dev/ptmx`). */
  name: string;
  /** EIO means end of file (a pty master whose slave side is all closed). */
  eioIsEof?: boolean;
  /**
   * Wait for readiness before the first read: a FIFO opened O_NONBLOCK with
   * no writer reads 0 (end of file) until a writer has come, while poll(2)
   * reports nothing until a writer writes or comes and goes.
   */
  pollBeforeRead?: boolean;
}

/** A file on a raw non-blocking fd, with FsFile-like read/write/streams. */
export class NonBlockingFile {
  readonly name: string;
  #w: Waitable;
  #eioIsEof: boolean;
  #pollBeforeRead: boolean;

  /** Takes ownership of `fd` (made non-blocking here). */
  constructor(fd: number, opts: NonBlockingOptions) {
    try {
      const flags = check(libc().fcntl(fd, F_GETFL, 0), "fcntl(F_GETFL)", opts.name);
      if ((flags & O_NONBLOCK) === 0) {
        check(libc().fcntl(fd, F_SETFL, flags | O_NONBLOCK), "fcntl(F_SETFL)", opts.name);
      }
    } catch (err) {
      libc().close(fd);
      throw err;
    }
    this.name = opts.name;
    this.#w = new Waitable(fd, opts.name);
    this.#eioIsEof = opts.eioIsEof ?? false;
    this.#pollBeforeRead = opts.pollBeforeRead ?? false;
  }

  /** The raw fd (owned by this object). */
  get fd(): number {
    return this.#w.fd;
  }

  get closed(): boolean {
    return this.#w.closed;
  }

  /** Reads into `p`; resolves the byte count, or null at end of file or once closed. */
  async read(p: Uint8Array): Promise<number | null> {
    if (p.length === 0) return 0;
    let wait = this.#pollBeforeRead;
    for (;;) {
      if (wait && !(await this.#readable())) return null;
      const n = this.#tryRead(p);
      if (n === AGAIN) wait = true;
      else if (n === INTERRUPTED) wait = false;
      else return n;
    }
  }

  /**
   * Reads what is there, up to `max` bytes, into a new buffer of just that
   * size; null at end of file or once closed. Unlike {@link read}, a read
   * that has to wait holds no buffer meanwhile: the bytes land in one
   * process-wide scratch buffer (the read itself is a synchronous call) and
   * are copied out. A stdin nobody types into, or a silent pty, then costs
   * nothing but its poll entry however long it stays idle.
   */
  async readChunk(max: number = CHUNK): Promise<Uint8Array | null> {
    if (!(max > 0)) throw new RangeError(`readChunk: max must be positive, got ${max}`);
    let wait = this.#pollBeforeRead;
    for (;;) {
      if (wait && !(await this.#readable())) return null;
      if (scratch.length < max) scratch = new Uint8Array(max);
      const n = this.#tryRead(scratch.subarray(0, max));
      if (n === AGAIN) wait = true;
      else if (n === INTERRUPTED) wait = false;
      else return n === null ? null : scratch.slice(0, n);
    }
  }

  /** Waits until the fd is readable; false once the file is closed. */
  async #readable(): Promise<boolean> {
    try {
      await this.#w.ready(POLLIN);
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.BadResource) return false;
      throw err;
    }
  }

  /** One read(2): the byte count, null at end of file, or why it must be retried. */
  #tryRead(p: Uint8Array): number | null | typeof AGAIN | typeof INTERRUPTED {
    if (this.#w.closed) return null;
    const n = Number(libc().read(this.#w.fd, p, BigInt(p.length)));
    if (n > 0) return n;
    if (n === 0) return null;
    const e = errno();
    if (e === EIO && this.#eioIsEof) return null;
    if (e === EINTR) return INTERRUPTED;
    if (e !== EAGAIN) throw new SysError("read", e, this.name);
    return AGAIN;
  }

  /** Writes some of `p`; resolves how many bytes were taken. */
  async write(p: Uint8Array): Promise<number> {
    if (p.length === 0) return 0;
    for (;;) {
      if (this.#w.closed) throw new Deno.errors.BadResource(`${this.name} is closed`);
      const n = Number(libc().write(this.#w.fd, p, BigInt(p.length)));
      if (n >= 0) return n;
      const e = errno();
      if (e === EINTR) continue;
      if (e === EIO && this.#eioIsEof) {
        throw new Deno.errors.BrokenPipe(`${this.name}: the terminal is gone`);
      }
      if (e !== EAGAIN) throw new SysError("write", e, this.name);
      await this.#w.ready(POLLOUT);
    }
  }

  /** Writes all of `p`. */
  async writeAll(p: Uint8Array): Promise<void> {
    for (let off = 0; off < p.length;) off += await this.write(p.subarray(off));
  }

  /** The content as a stream; it ends at end of file or when the file is closed. */
  get readable(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      // readChunk: a pull waiting on a silent terminal holds no buffer.
      pull: async (ctl) => {
        const chunk = await this.readChunk();
        if (chunk === null) ctl.close();
        else ctl.enqueue(chunk);
      },
    }, { highWaterMark: 0 });
  }

  /**
   * A stream that writes here. Closing the stream does not close the file
   * (unlike Deno.FsFile); call close() for that.
   */
  get writable(): WritableStream<Uint8Array> {
    return new WritableStream<Uint8Array>({ write: (chunk) => this.writeAll(chunk) });
  }

  /** Closes the fd; pending reads end (null), pending writes fail. */
  close(): void {
    this.#w.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Opens a FIFO without blocking and without a pool thread: `read` opens the
 * reading end (reads wait for a writer; end of file once the writer that came
 * closes), `readwrite` opens both ends (the open and writes never wait for a
 * reader; the FIFO's buffer holds output while no client reads).
 */
export function openFifo(path: string, mode: "read" | "readwrite"): NonBlockingFile {
  const flags = (mode === "read" ? O_RDONLY : O_RDWR) | O_NONBLOCK | O_CLOEXEC;
  const fd = check(libc().open(cstr(path), flags, 0), "open", path);
  return new NonBlockingFile(fd, { name: path, pollBeforeRead: mode === "read" });
}
