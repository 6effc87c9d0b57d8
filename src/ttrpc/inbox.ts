/**
 * An unbounded queue of messages received on one ttrpc stream, read as an
 * async iterator. ttrpc has no flow control of its own: the sender is slowed
 * only by the socket, and the reader keeps what arrives until it is taken.
 */
export class Inbox<T> implements AsyncIterable<T> {
  #items: T[] = [];
  #waiters: { resolve(r: IteratorResult<T>): void; reject(e: unknown): void }[] = [];
  #closed = false;
  #error: unknown;
  #failed = false;

  /** True once no more messages can arrive (closed or failed). */
  get ended(): boolean {
    return this.#closed || this.#failed;
  }

  /** Adds a message (dropped once the inbox is closed or failed). */
  push(item: T): void {
    if (this.ended) return;
    const w = this.#waiters.shift();
    if (w) w.resolve({ value: item, done: false });
    else this.#items.push(item);
  }

  /** No more messages: readers finish after taking the queued ones. */
  close(): void {
    if (this.ended) return;
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w.resolve({ value: undefined, done: true });
  }

  /** Fails the stream: readers get `err` after taking the queued messages. */
  fail(err: unknown): void {
    if (this.ended) return;
    this.#failed = true;
    this.#error = err;
    for (const w of this.#waiters.splice(0)) w.reject(err);
  }

  /** The next message, or done at the end. */
  next(): Promise<IteratorResult<T>> {
    if (this.#items.length > 0) {
      return Promise.resolve({ value: this.#items.shift()!, done: false });
    }
    if (this.#failed) return Promise.reject(this.#error);
    if (this.#closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return { next: () => this.next() };
  }
}
