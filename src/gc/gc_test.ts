import assert from "node:assert/strict";
import { Collector, type GcNode, type GcParticipant, labelRefs } from "./gc.ts";

/** An in-memory store of labelled objects, enough to exercise the algorithm. */
function store(kind: string, objs: Record<string, Record<string, string>>, roots: string[] = []) {
  const removed: string[] = [];
  const p: GcParticipant = {
    kind,
    roots: () => roots.map((id) => ({ kind, namespace: "ns", id })),
    refs: (n: GcNode) => labelRefs(n.namespace, objs[n.id] ?? {}),
    all: () =>
      Object.keys(objs).filter((id) => !removed.includes(id)).map((id) => ({
        kind,
        namespace: "ns",
        id,
      })),
    remove: (nodes) => {
      removed.push(...nodes.map((n) => n.id));
    },
  };
  return { p, removed };
}

Deno.test("gc: label refs follow content and snapshot references", () => {
  assert.deepEqual(
    labelRefs("ns", {
      "containerd.io/gc.ref.content.m.0": "sha256:a",
      "containerd.io/gc.ref.content": "sha256:b",
      "containerd.io/gc.ref.snapshot.overlayfs": "k1",
      "containerd.io/gc.ref.snapshot.native/x": "k2",
      "other": "x",
    }),
    [
      { kind: "content", namespace: "ns", id: "sha256:a" },
      { kind: "content", namespace: "ns", id: "sha256:b" },
      { kind: "snapshots/overlayfs", namespace: "ns", id: "k1" },
      { kind: "snapshots/native", namespace: "ns", id: "k2" },
    ],
  );
});

Deno.test("gc: keeps what roots reach, removes the rest", async () => {
  const content = store("content", {
    "sha256:index": { "containerd.io/gc.ref.content.m.0": "sha256:manifest" },
    "sha256:manifest": {
      "containerd.io/gc.ref.content.config": "sha256:config",
      "containerd.io/gc.ref.content.l.0": "sha256:layer",
    },
    "sha256:config": { "containerd.io/gc.ref.snapshot.overlayfs": "chain1" },
    "sha256:layer": {},
    "sha256:orphan": { "containerd.io/gc.ref.content": "sha256:orphan2" },
    "sha256:orphan2": {},
  });
  const snaps = store("snapshots/overlayfs", { chain1: {}, chain2: {} });
  const gc = new Collector();
  gc.register(content.p);
  gc.register(snaps.p);
  gc.addRoots(() => [{ kind: "content", namespace: "ns", id: "sha256:index" }]);
  const stats = await gc.collect();
  assert.deepEqual(content.removed.sort(), ["sha256:orphan", "sha256:orphan2"]);
  assert.deepEqual(snaps.removed, ["chain2"]);
  assert.deepEqual(stats.removed, { content: 2, "snapshots/overlayfs": 1 });
});

Deno.test("gc: concurrent calls fold into a later run", async () => {
  const content = store("content", { a: {} });
  const gc = new Collector();
  gc.register(content.p);
  const [s1, s2] = await Promise.all([gc.collect(), gc.collect()]);
  assert.deepEqual(s1.removed, { content: 1 });
  assert.deepEqual(s2.removed, {});
});
