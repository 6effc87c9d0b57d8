import { toJson as protoToJson } from "@bufbuild/protobuf";
import { Events } from "../../gen/containerd/services/events/v1/events_pb.ts";
import type { Envelope } from "../../gen/containerd/services/events/v1/events_pb.ts";
import { decodeEvent, formatTimestamp } from "../../events/exchange.ts";
import { type Command, parse } from "./command.ts";

const HELP = `Usage: berth events [--json] [FILTER...]

Streams the daemon's events, one line each, until interrupted (Ctrl-C):

  TIMESTAMP NAMESPACE TOPIC EVENT

EVENT is the event as JSON for the types berth knows (namespaces, images,
content, containers, snapshots, tasks), otherwise its type URL. Filters use containerd's syntax and are
OR-ed; fields are namespace, topic and event.<field>, for example:

  berth events 'topic~=/images/'
  berth events 'namespace==default,event.name==busybox'

Options:
  --json     print one JSON object per event
`;

/** One event as a line of text, like `ctr events` prints it. */
export function formatEvent(env: Envelope): string {
  const decoded = decodeEvent(env.event);
  const body = decoded
    ? JSON.stringify(protoToJson(decoded.schema, decoded.message, { useProtoFieldName: true }))
    : env.event?.typeUrl ?? "";
  return `${formatTimestamp(env.timestamp)} ${env.namespace} ${env.topic} ${body}`;
}

/** One event as a JSON object (one line). */
export function eventJson(env: Envelope): string {
  const decoded = decodeEvent(env.event);
  return JSON.stringify({
    timestamp: formatTimestamp(env.timestamp),
    namespace: env.namespace,
    topic: env.topic,
    type: env.event?.typeUrl ?? "",
    event: decoded
      ? protoToJson(decoded.schema, decoded.message, { useProtoFieldName: true })
      : null,
  });
}

/** `berth events`: runs until SIGINT or SIGTERM, then exits 0. */
export const eventsCommand: Command = {
  name: "events",
  summary: "Stream the daemon's events",
  help: HELP,
  async run(g, args) {
    const { values, positionals } = parse(args, { json: { type: "boolean" } }, HELP);
    const ac = new AbortController();
    const stop = () => ac.abort();
    const signals = ["SIGINT", "SIGTERM"] as const;
    for (const s of signals) Deno.addSignalListener(s, stop);
    try {
      const stream = g.client().stream(Events, "subscribe", { filters: positionals }, ac.signal);
      for await (const env of stream) g.out(values.json ? eventJson(env) : formatEvent(env));
      return 0;
    } finally {
      for (const s of signals) Deno.removeSignalListener(s, stop);
    }
  },
};
