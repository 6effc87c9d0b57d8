import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { isKind } from "../../core/errdefs.ts";
import { OptionsSchema } from "../../gen/containerd/runc/options/oci_pb.ts";
import { decodeOptions, sharesPidNamespace } from "./service.ts";
import { groupOf } from "./binary.ts";

Deno.test("shim options: containerd's runc Options select the runtime binary and root", () => {
  assert.deepEqual(decodeOptions(undefined), {});
  const value = toBinary(
    OptionsSchema,
    create(OptionsSchema, { binaryName: "crun", root: "/run/x", systemdCgroup: true }),
  );
  assert.deepEqual(decodeOptions({ typeUrl: "containerd.runc.v1.Options", value } as never), {
    binaryName: "crun",
    root: "/run/x",
    systemdCgroup: true,
  });
  assert.throws(
    () => decodeOptions({ typeUrl: "example.Other", value: new Uint8Array() } as never),
    (e) => isKind(e, "invalid_argument") && /example\.Other/.test((e as Error).message),
  );
});

Deno.test("shim bundle: pid namespace sharing and group annotations from config.json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-shim-unit-" });
  try {
    const write = (spec: unknown) => Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(spec));
    await write({ linux: { namespaces: [{ type: "pid" }, { type: "mount" }] } });
    assert.equal(sharesPidNamespace(dir), false);
    assert.equal(groupOf(dir), undefined);
    await write({
      linux: { namespaces: [{ type: "pid", path: "/proc/1/ns/pid" }] },
      annotations: { "io.kubernetes.cri.sandbox-id": "pod9" },
    });
    assert.equal(sharesPidNamespace(dir), true);
    assert.equal(groupOf(dir), "pod9");
    await write({ linux: { namespaces: [] }, annotations: { "io.containerd.runc.v2.group": "g" } });
    assert.equal(sharesPidNamespace(dir), true);
    assert.equal(groupOf(dir), "g");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
