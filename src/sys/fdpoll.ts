/**
 * Readiness of raw fds for the whole process through ONE poll(2) call.
 *
 * Deno runs a nonblocking FFI call on its blocking thread pool, and that pool
 * has 32 threads for everything (file reads and writes, child process spawns,
 * DNS, ...). A poll per fd left in flight for the life of a container (pty
 * masters, OOM eventfds, stdin FIFOs) would pin one thread each: a shim with
 * a few dozen containers then queues every file operation behind them and
 * slows down without bound. Here every waiter shares one poll over all the
 * fds being waited on plus an eventfd that interrupts it when the set
 * changes, so the process holds at most one pool thread for all its fds.
 *
 * An fd is only closed once no poll in flight names it ({@link Waitable.close}),
 * since a closed fd number can be reused by the next open.
 */
import { check, libc } from "./libc.ts";

const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;

interface Waiter {
  fd: number;
  events: number;
  resolve(revents: number): void;
  reject(err: Error): void;
}

/** The process-wide poller: waiters on any number of fds share one poll(2). */
export class FdPoller {
  #waiters = new Set<Waiter>();
  /** fd -> closers to run once no poll names the fd any more. */
  #closers = new Map<number, Array<() => void>>();
  #wake: number;
  #looping = false;
  /** The fds named by the poll in flight (empty when none is). */
  #inFlight = new Set<number>();

  constructor() {
    this.#wake = check(libc().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd");
  }

  /** How many waits are pending (for tests and diagnostics). */
  get pending(): number {
    return this.#waiters.size;
  }

  /**
   * Resolves with the fd's revents once it has any of `events`, or an error
   * or hang-up condition. Rejects with the signal's reason when aborted.
   */
  wait(fd: number, events: number, signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<number>((resolve, reject) => {
      const onAbort = () => {
        if (this.#waiters.delete(w)) {
          this.#kick();
          reject(signal!.reason);
        }
      };
      const w: Waiter = {
        fd,
        events,
        resolve: (r) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(r);
        },
        reject: (e) => {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(w);
      this.#kick();
      this.#loop();
    });
  }

  /**
   * Fails every wait on `fd` with `err` and runs `closer` (which closes the
   * fd) as soon as no poll in flight names it: at once when none does.
   */
  release(fd: number, err: Error, closer: () => void): void {
    for (const w of this.#waiters) {
      if (w.fd === fd) {
        this.#waiters.delete(w);
        w.reject(err);
      }
    }
    if (!this.#inFlight.has(fd)) {
      closer();
      return;
    }
    const list = this.#closers.get(fd) ?? [];
    list.push(closer);
    this.#closers.set(fd, list);
    this.#kick();
  }

  /** Interrupts the poll in flight, if any, so that it sees the new set. */
  #kick(): void {
    if (this.#inFlight.size === 0) return;
    const one = new BigUint64Array([1n]);
    libc().write(this.#wake, new Uint8Array(one.buffer), 8n);
  }

  async #loop(): Promise<void> {
    if (this.#looping) return;
    this.#looping = true;
    try {
      while (this.#waiters.size > 0) {
        const byFd = new Map<number, number>();
        for (const w of this.#waiters) byFd.set(w.fd, (byFd.get(w.fd) ?? 0) | w.events);
        const fds = [...byFd.keys()];
        const buf = new Uint8Array(8 * (fds.length + 1));
        const v = new DataView(buf.buffer);
        v.setInt32(0, this.#wake, true);
        v.setInt16(4, POLLIN, true);
        fds.forEach((fd, i) => {
          v.setInt32(8 * (i + 1), fd, true);
          v.setInt16(8 * (i + 1) + 4, byFd.get(fd)!, true);
        });
        this.#inFlight = new Set(fds);
        this.#inFlight.add(this.#wake);
        let n: number;
        try {
          n = await libc().poll(buf, BigInt(fds.length + 1), -1);
        } finally {
          this.#inFlight = new Set();
          for (const [, closers] of this.#closers) for (const c of closers) c();
          this.#closers.clear();
        }
        // -1 is EINTR in practice (a pool thread's errno is not ours to read): poll again.
        if (n <= 0) continue;
        if (v.getInt16(6, true) !== 0) {
          libc().read(this.#wake, new Uint8Array(8), 8n);
        }
        fds.forEach((fd, i) => {
          const revents = v.getInt16(8 * (i + 1) + 6, true);
          if (revents === 0) return;
          for (const w of this.#waiters) {
            if (w.fd !== fd) continue;
            if ((revents & (w.events | POLLERR | POLLHUP | POLLNVAL)) === 0) continue;
            this.#waiters.delete(w);
            w.resolve(revents);
          }
        });
      }
    } finally {
      this.#looping = false;
    }
  }
}

let shared: FdPoller | undefined;

/** The process's poller (made on first use). */
export function fdPoller(): FdPoller {
  shared ??= new FdPoller();
  return shared;
}

/**
 * A raw fd owned by this process, waited on through the shared poller and
 * closed only once no poll names it.
 */
export class Waitable {
  readonly fd: number;
  #closed = false;
  #what: string;

  constructor(fd: number, what: string) {
    this.fd = fd;
    this.#what = what;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Waits until the fd has `events` (or an error or hang-up); throws
   * BadResource once closed, the signal's reason when aborted.
   */
  async ready(events: number, signal?: AbortSignal): Promise<number> {
    if (this.#closed) throw new Deno.errors.BadResource(`${this.#what} is closed`);
    return await fdPoller().wait(this.fd, events, signal);
  }

  /** Closes the fd (once no poll names it); pending waits fail with BadResource. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const fd = this.fd;
    fdPoller().release(
      fd,
      new Deno.errors.BadResource(`${this.#what} is closed`),
      () => libc().close(fd),
    );
  }
}
