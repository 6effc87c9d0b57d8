import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { TtrpcServer } from "../../ttrpc/server.ts";
import { type Envelope, Events } from "../../gen/containerd/services/ttrpc/events/v1/events_pb.ts";
import { TaskExitSchema } from "../../gen/containerd/events/task_pb.ts";
import { Logger } from "../../util/log.ts";
import { EventPublisher } from "./publisher.ts";

function sink(path: string, got: Envelope[]): TtrpcServer {
  const s = new TtrpcServer();
  s.register(Events, {
    forward: (req) => {
      got.push(req.envelope!);
      return Promise.resolve({});
    },
  });
  s.listen(path);
  return s;
}

Deno.test("publisher: events wait for an absent daemon and arrive in order", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-pub-" });
  const path = `${dir}/events.sock`;
  const pub = new EventPublisher({ address: path, namespace: "ns1", log: new Logger("error") });
  const got: Envelope[] = [];
  let server: TtrpcServer | undefined;
  try {
    for (const status of [1, 2, 3]) {
      pub.publish("/tasks/exit", TaskExitSchema, { containerId: "c", id: "c", exitStatus: status });
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(pub.pending, 3, "nothing is lost while nobody listens");
    server = sink(path, got);
    await pub.flush(5000);
    assert.equal(pub.pending, 0);
    assert.deepEqual(got.map((e) => [e.namespace, e.topic, e.event?.typeUrl]), [
      ["ns1", "/tasks/exit", "containerd.events.TaskExit"],
      ["ns1", "/tasks/exit", "containerd.events.TaskExit"],
      ["ns1", "/tasks/exit", "containerd.events.TaskExit"],
    ]);
    assert.deepEqual(
      got.map((e) => fromBinary(TaskExitSchema, e.event!.value).exitStatus),
      [1, 2, 3],
    );
    assert.ok(got.every((e) => e.timestamp && e.timestamp.seconds > 0n));
  } finally {
    pub.close();
    server?.close();
    await Deno.remove(dir, { recursive: true });
  }
});
