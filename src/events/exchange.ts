/**
 * The daemon's event bus. Publishers hand over a typed protobuf message; it is
 * packed into an Any whose type URL is the bare message name, as containerd's
 * typeurl does for unregistered protobuf types, so ctr can decode it.
 *
 * Subscribers filter on `namespace`, `topic` and `event.<field>`; the last
 * decodes the event for the types listed in {@link KNOWN_EVENTS}, as
 * containerd's envelope adaptor decodes the Any with typeurl.
 */
import {
  create,
  createRegistry,
  type DescFile,
  type DescMessage,
  fromBinary,
  type Message,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { type Any, AnySchema, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Envelope, EnvelopeSchema } from "../gen/containerd/services/events/v1/events_pb.ts";
import { file_containerd_events_namespace } from "../gen/containerd/events/namespace_pb.ts";
import { file_containerd_events_content } from "../gen/containerd/events/content_pb.ts";
import { file_containerd_events_container } from "../gen/containerd/events/container_pb.ts";
import { file_containerd_events_snapshot } from "../gen/containerd/events/snapshot_pb.ts";
import { file_containerd_events_task } from "../gen/containerd/events/task_pb.ts";
import { file_containerd_services_images_v1_events } from "../gen/containerd/services/images/v1/events_pb.ts";
import { type Adaptor, type Filter, parseFilters } from "../core/filters.ts";
import { invalidArgument } from "../core/errdefs.ts";

/**
 * The files of event messages berth can decode (for `event.<field>` filters
 * and for `berth events`): every message in them is known. Add the file here
 * when a part of berth publishes events from a new one.
 */
export const KNOWN_EVENTS: readonly DescFile[] = [
  file_containerd_events_namespace,
  file_containerd_events_content,
  file_containerd_services_images_v1_events,
  file_containerd_events_container,
  file_containerd_events_snapshot,
  file_containerd_events_task,
];

const registry = createRegistry(...KNOWN_EVENTS);

/** A decoded event: its schema and message. */
export interface DecodedEvent {
  schema: DescMessage;
  message: Message;
}

/**
 * Decodes an event Any of a known type; undefined for unknown types or bytes
 * that do not parse. Accepts bare names and `type.googleapis.com/`-style URLs.
 */
export function decodeEvent(any: Any | undefined): DecodedEvent | undefined {
  if (!any) return undefined;
  const name = any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1);
  const schema = registry.getMessage(name);
  if (!schema) return undefined;
  try {
    return { schema, message: fromBinary(schema, any.value) };
  } catch {
    return undefined;
  }
}

/**
 * Field paths into a protobuf message, as containerd's generated `Field`
 * methods have them: proto field names; map fields take the rest of the path
 * joined by dots as the key; nested messages recurse; unset (default) scalars
 * are absent; lists and bytes are never matched.
 */
export function adaptMessage(schema: DescMessage, msg: Message): Adaptor {
  return (path) => lookup(schema, msg as unknown as Record<string, unknown>, path);
}

function lookup(
  schema: DescMessage,
  msg: Record<string, unknown>,
  path: string[],
): string | undefined {
  const [head, ...rest] = path;
  const field = schema.fields.find((f) => f.name === head);
  if (!field) return undefined;
  const v = msg[field.localName];
  switch (field.fieldKind) {
    case "map": {
      const m = v as Record<string, unknown>;
      const key = rest.join(".");
      const x = Object.hasOwn(m, key) ? m[key] : undefined;
      return typeof x === "string" || typeof x === "number" || typeof x === "bigint" ||
          typeof x === "boolean"
        ? String(x)
        : undefined;
    }
    case "message":
      return v && rest.length > 0
        ? lookup(field.message, v as Record<string, unknown>, rest)
        : undefined;
    case "scalar":
    case "enum":
      if (rest.length > 0 || v instanceof Uint8Array) return undefined;
      if (v === "" || v === 0 || v === 0n || v === false || v === undefined) return undefined;
      return String(v);
    default:
      return undefined;
  }
}

/** RFC 3339 with up to nanosecond precision (Go's RFC3339Nano). */
export function formatTimestamp(ts: { seconds: bigint; nanos: number } | undefined): string {
  if (!ts) return "";
  const base = new Date(Number(ts.seconds) * 1000).toISOString().slice(0, 19);
  const frac = ts.nanos ? "." + String(ts.nanos).padStart(9, "0").replace(/0+$/, "") : "";
  return `${base}${frac}Z`;
}

/** The filter adaptor of an envelope; the event is decoded only if a filter asks. */
export function adaptEnvelope(env: Envelope): Adaptor {
  let decoded: DecodedEvent | null | undefined;
  return (path) => {
    const [head, ...rest] = path;
    switch (head) {
      case "namespace":
        return env.namespace || undefined;
      case "topic":
        return env.topic || undefined;
      case "timestamp":
        return env.timestamp ? timestampDate(env.timestamp).toISOString() : undefined;
      case "event":
        if (decoded === undefined) decoded = decodeEvent(env.event) ?? null;
        return decoded ? adaptMessage(decoded.schema, decoded.message)(rest) : undefined;
    }
    return undefined;
  };
}

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
    const adapt = adaptEnvelope(env);
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
