/**
 * The daemon's event bus. Publishers hand over a typed protobuf message; it is
 * packed into an Any whose type URL is the bare message name, as containerd's
 * typeurl does for unregistered protobuf types, so ctr can decode it.
 */
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Envelope, EnvelopeSchema } from "../gen/containerd/services/events/v1/events_pb.ts";
import { adaptObject, type Filter, parseFilters } from "../core/filters.ts";
import { invalidArgument } from "../core/errdefs.ts";

/** Packs a message into an Any with containerd's type URL convention. */
export function packAny<D extends DescMessage>(schema: D, msg: MessageInitShape<D>): Any {
  return create(AnySchema, {
    typeUrl: schema.typeName,
    value: toBinary(schema, create(schema, msg)),
  });
}

const TOPIC = /^\/[A-Za-z0-9_.\-]+(\/[A-Za-z0-9_.\-]+)*$/;

/** Checks a topic the way containerd does: a path of identifiers. */
export function validateTopic(topic: string): string {
  if (!TOPIC.test(topic)) throw invalidArgument(`topic "${topic}" must be a path like /a/b`);
  return topic;
}

interface Subscriber {
  filter: Filter;
  push(e: Envelope): void;
}

export class Exchange {
  #subs = new Set<Subscriber>();

  /** Publishes `msg` under `topic` in namespace `ns`. */
  publish<D extends DescMessage>(
    ns: string,
    topic: string,
    schema: D,
    msg: MessageInitShape<D>,
  ): void {
    this.forward(create(EnvelopeSchema, {
      timestamp: timestampFromDate(new Date()),
      namespace: ns,
      topic,
      event: packAny(schema, msg),
    }));
  }

  /** Publishes an already packed event. */
  publishAny(ns: string, topic: string, event: Any | undefined): void {
    validateTopic(topic);
    if (!event) throw invalidArgument(`event for topic "${topic}" is missing`);
    this.forward(create(EnvelopeSchema, {
      timestamp: timestampFromDate(new Date()),
      namespace: ns,
      topic,
      event,
    }));
  }

  /** Delivers an envelope as it is to every matching subscriber. */
  forward(env: Envelope): void {
    const fields = {
      namespace: env.namespace,
      topic: env.topic,
      timestamp: env.timestamp ? timestampDate(env.timestamp).toISOString() : undefined,
    };
    const adapt = adaptObject(fields);
    for (const s of this.#subs) {
      if (s.filter.match(adapt)) s.push(env);
    }
  }

  /**
   * Streams the envelopes matching `filters` until `signal` aborts. Events
   * published while the consumer is slow are queued, never dropped.
   */
  async *subscribe(filters: readonly string[], signal: AbortSignal): AsyncGenerator<Envelope> {
    const filter = parseFilters(filters);
    const queue: Envelope[] = [];
    let wake: (() => void) | undefined;
    const sub: Subscriber = {
      filter,
      push(e) {
        queue.push(e);
        wake?.();
      },
    };
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort);
    this.#subs.add(sub);
    try {
      while (!signal.aborted) {
        const e = queue.shift();
        if (e) {
          yield e;
          continue;
        }
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    } finally {
      this.#subs.delete(sub);
      signal.removeEventListener("abort", onAbort);
    }
  }

  get subscriberCount(): number {
    return this.#subs.size;
  }
}
