import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { ImageCreateSchema } from "../gen/containerd/services/images/v1/events_pb.ts";
import { NamespaceCreateSchema } from "../gen/containerd/events/namespace_pb.ts";
import { decodeEvent, Exchange, formatTimestamp, packAny } from "./exchange.ts";

Deno.test("decodeEvent decodes the known types under bare and prefixed type URLs", () => {
  const any = packAny(ImageCreateSchema, { name: "busybox", labels: { a: "b" } });
  assert.equal(any.typeUrl, "containerd.services.images.v1.ImageCreate");
  const d = decodeEvent(any)!;
  assert.equal(d.schema.typeName, "containerd.services.images.v1.ImageCreate");
  assert.equal((d.message as unknown as { name: string }).name, "busybox");
  const prefixed = create(AnySchema, {
    typeUrl: "type.googleapis.com/containerd.events.NamespaceCreate",
    value: packAny(NamespaceCreateSchema, { name: "n" }).value,
  });
  assert.equal(decodeEvent(prefixed)?.schema.typeName, "containerd.events.NamespaceCreate");
  assert.equal(decodeEvent(create(AnySchema, { typeUrl: "x.Unknown" })), undefined);
  assert.equal(
    decodeEvent(
      create(AnySchema, {
        typeUrl: "containerd.events.NamespaceCreate",
        value: new Uint8Array([0xff]),
      }),
    ),
    undefined,
  );
});

Deno.test("formatTimestamp prints RFC 3339 with trimmed nanoseconds", () => {
  assert.equal(formatTimestamp({ seconds: 0n, nanos: 0 }), "1970-01-01T00:00:00Z");
  assert.equal(formatTimestamp({ seconds: 60n, nanos: 123_400_000 }), "1970-01-01T00:01:00.1234Z");
  assert.equal(formatTimestamp({ seconds: 1n, nanos: 5 }), "1970-01-01T00:00:01.000000005Z");
});

async function collect(bus: Exchange, filters: string[], publish: () => void): Promise<string[]> {
  const ac = new AbortController();
  const got: string[] = [];
  const done = (async () => {
    for await (const e of bus.subscribe(filters, ac.signal)) got.push(`${e.namespace} ${e.topic}`);
  })();
  await Promise.resolve();
  publish();
  await new Promise((r) => setTimeout(r, 10));
  ac.abort();
  await done;
  return got;
}

Deno.test("subscribers filter on namespace, topic and decoded event fields", async () => {
  const bus = new Exchange();
  const publish = () => {
    bus.publish("n1", "/namespaces/create", NamespaceCreateSchema, { name: "n1" });
    bus.publish("n2", "/images/create", ImageCreateSchema, {
      name: "busybox",
      labels: { "a.b": "c" },
    });
    bus.publishAny("n2", "/custom", create(AnySchema, { typeUrl: "x.Unknown" }));
  };
  assert.deepEqual(await collect(bus, [], publish), [
    "n1 /namespaces/create",
    "n2 /images/create",
    "n2 /custom",
  ]);
  assert.deepEqual(await collect(bus, ["topic~=^/images/"], publish), ["n2 /images/create"]);
  assert.deepEqual(await collect(bus, ["namespace==n1"], publish), ["n1 /namespaces/create"]);
  assert.deepEqual(await collect(bus, ["event.name==busybox"], publish), ["n2 /images/create"]);
  assert.deepEqual(await collect(bus, ["event.labels.a.b==c"], publish), ["n2 /images/create"]);
  assert.deepEqual(await collect(bus, ["event.name"], publish), [
    "n1 /namespaces/create",
    "n2 /images/create",
  ]);
  assert.deepEqual(await collect(bus, ["event.name==nobody"], publish), []);
  assert.deepEqual(
    await collect(bus, ["event.name==n1", "topic==/custom"], publish),
    ["n1 /namespaces/create", "n2 /custom"],
  );
  assert.equal(bus.subscriberCount, 0);
});

Deno.test("task events decode and filter on proto field names, nested messages too", async () => {
  const { TaskCreateSchema } = await import("../gen/containerd/events/task_pb.ts");
  const bus = new Exchange();
  const publish = () => {
    bus.publish("n", "/tasks/create", TaskCreateSchema, {
      containerId: "c1",
      pid: 42,
      io: { stdout: "/fifo/out" },
    });
    bus.publish("n", "/tasks/create", TaskCreateSchema, { containerId: "c2" });
  };
  assert.deepEqual(await collect(bus, ["event.container_id==c1"], publish), ["n /tasks/create"]);
  assert.deepEqual(await collect(bus, ["event.pid==42"], publish), ["n /tasks/create"]);
  assert.deepEqual(await collect(bus, ["event.io.stdout==/fifo/out"], publish), [
    "n /tasks/create",
  ]);
  assert.deepEqual(await collect(bus, ["event.pid"], publish), ["n /tasks/create"]);
  assert.deepEqual(await collect(bus, ["event.rootfs"], publish), []);
});
