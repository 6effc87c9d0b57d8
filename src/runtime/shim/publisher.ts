/**
 * Task events from the shim to the daemon: containerd 1.6's shim forwards
 * each event with `containerd.services.events.ttrpc.v1.Events/Forward` on the
 * daemon's ttrpc address (TTRPC_ADDRESS).
 *
 * Events are queued and sent in order. When the daemon is down (restarting,
 * crashed) they stay queued and are retried with backoff, so an exit that
 * happens while no daemon listens still reaches the next one.
 */
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { TtrpcClient } from "../../ttrpc/client.ts";
import { Events } from "../../gen/containerd/services/ttrpc/events/v1/events_pb.ts";
import type { Logger } from "../../util/log.ts";

interface Queued {
  topic: string;
  typeUrl: string;
  value: Uint8Array;
  at: Date;
}

/** Options of an {@link EventPublisher}. */
export interface PublisherOptions {
  /** The daemon's ttrpc address (path or `unix://` URL); empty: events are dropped. */
  address: string;
  namespace: string;
  log: Logger;
  /** At most this many events wait for the daemon; the oldest go first (default 10000). */
  maxQueued?: number;
}

/** Forwards task events to the daemon, in order, surviving daemon restarts. */
export class EventPublisher {
  #opts: PublisherOptions;
  #queue: Queued[] = [];
  #client: TtrpcClient | undefined;
  #running = false;
  #closed = false;
  #idle: (() => void)[] = [];
  #wake: (() => void) | undefined;

  constructor(opts: PublisherOptions) {
    this.#opts = opts;
  }

  /** Number of events not yet delivered. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Queues `msg` under `topic` (e.g. `/tasks/exit`). */
  publish<D extends DescMessage>(topic: string, schema: D, msg: MessageInitShape<D>): void {
    if (!this.#opts.address || this.#closed) return;
    const value = toBinary(schema, create(schema, msg));
    // containerd's typeurl names an unregistered protobuf type by its bare name.
    this.#queue.push({ topic, typeUrl: schema.typeName, value, at: new Date() });
    const max = this.#opts.maxQueued ?? 10000;
    if (this.#queue.length > max) {
      const dropped = this.#queue.splice(0, this.#queue.length - max);
      this.#opts.log.warn("event queue full, dropped oldest", { dropped: dropped.length });
    }
    this.#wake?.();
    if (!this.#running) this.#run();
  }

  /** Resolves once the queue is empty, or after `timeoutMs`. */
  async flush(timeoutMs: number): Promise<void> {
    if (this.#queue.length === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((r) => this.#idle.push(r)),
      new Promise<void>((r) => timer = setTimeout(r, timeoutMs)),
    ]);
    clearTimeout(timer);
  }

  /** Stops sending; queued events are dropped. */
  close(): void {
    this.#closed = true;
    this.#wake?.();
    this.#client?.close();
  }

  async #run(): Promise<void> {
    this.#running = true;
    let backoff = 50;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const ev = this.#queue[0]!;
        try {
          this.#client ??= await TtrpcClient.connect(this.#opts.address, {
            namespace: this.#opts.namespace,
          });
          await this.#client.call(Events, "forward", {
            envelope: {
              timestamp: timestampFromDate(ev.at),
              namespace: this.#opts.namespace,
              topic: ev.topic,
              event: { typeUrl: ev.typeUrl, value: ev.value },
            },
          }, { timeout: 5000 });
          this.#queue.shift();
          backoff = 50;
        } catch (err) {
          this.#client?.close();
          this.#client = undefined;
          this.#opts.log.debug("forwarding event failed, will retry", {
            topic: ev.topic,
            error: err,
            retryMs: backoff,
          });
          await new Promise<void>((r) => {
            const t = setTimeout(r, backoff);
            this.#wake = () => {
              if (this.#closed) {
                clearTimeout(t);
                r();
              }
            };
          });
          this.#wake = undefined;
          backoff = Math.min(backoff * 2, 2000);
        }
      }
    } finally {
      this.#running = false;
      if (this.#queue.length === 0) { for (const r of this.#idle.splice(0)) r(); }
    }
  }
}
