/**
 * Concurrency helpers for pulls: {@link InFlight} makes two requests for the
 * same key (a blob digest) share one piece of work, and {@link Limiter} bounds
 * how many pieces of work run at once (layer downloads).
 */

/**
 * Runs at most one task per key at a time; callers asking for a key that is
 * already running get the same promise. The key is forgotten once the task
 * settles, so a failed download can be tried again.
 *
 * ```ts
 * const inflight = new InFlight<string, string>();
 * const [a, b] = await Promise.all([
 *   inflight.run(digest, () => download(digest)),
 *   inflight.run(digest, () => download(digest)), // joins the first
 * ]);
 * ```
 */
export class InFlight<K, V> {
  #running = new Map<K, Promise<V>>();

  /** Starts `task` for `key`, or joins the one already running. */
  run(key: K, task: () => Promise<V>): Promise<V> {
    const existing = this.#running.get(key);
    if (existing) return existing;
    const p = (async () => {
      try {
        return await task();
      } finally {
        this.#running.delete(key);
      }
    })();
    this.#running.set(key, p);
    return p;
  }

  /** True while a task for `key` runs. */
  has(key: K): boolean {
    return this.#running.has(key);
  }

  /** How many tasks run now. */
  get size(): number {
    return this.#running.size;
  }
}

/**
 * A counting semaphore: {@link Limiter.run} waits for a free slot, in FIFO
 * order. An aborted wait leaves the queue without taking a slot.
 */
export class Limiter {
  #limit: number;
  #active = 0;
  #waiting: Array<() => void> = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`Invalid concurrency limit ${limit}: must be a positive integer`);
    }
    this.#limit = limit;
  }

  /** Slots in use. */
  get active(): number {
    return this.#active;
  }

  /** Callers waiting for a slot. */
  get pending(): number {
    return this.#waiting.length;
  }

  /** Takes a slot; the returned function gives it back (idempotent). */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.#active < this.#limit) {
      this.#active++;
    } else {
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = this.#waiting.indexOf(wake);
          if (i >= 0) this.#waiting.splice(i, 1);
          reject(signal!.reason);
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        this.#waiting.push(wake);
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      // Hand the slot straight to the next waiter so nobody can jump the queue.
      if (next) next();
      else this.#active--;
    };
  }

  /** Runs `task` in a slot. */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await task();
    } finally {
      release();
    }
  }
}
