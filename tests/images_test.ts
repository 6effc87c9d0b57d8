import assert from "node:assert/strict";
import { ok, startDaemon } from "./_harness.ts";
import { Client } from "../src/cmd/cli/client.ts";
import { Images } from "../src/gen/containerd/services/images/v1/images_pb.ts";
import { Namespaces } from "../src/gen/containerd/services/namespaces/v1/namespace_pb.ts";
import { isKind } from "../src/core/errdefs.ts";

const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const INDEX = "application/vnd.oci.image.index.v1+json";
const D1 = "sha256:" + "1f".repeat(32);
const D2 = "sha256:" + "2e".repeat(32);

function image(
  name: string,
  digest = D1,
  mediaType = MANIFEST,
  labels: Record<string, string> = {},
) {
  return { image: { name, labels, target: { mediaType, digest, size: 528n } } };
}

Deno.test("images through the API: create, get, list, update, delete, errors", async () => {
  await using d = await startDaemon();
  const c = new Client({ address: d.sock, namespace: "apps" });
  try {
    const created = await c.call(
      Images,
      "create",
      image("docker.io/library/a:1", D1, MANIFEST, { tier: "gold" }),
    );
    assert.equal(created.image?.name, "docker.io/library/a:1");
    assert.equal(created.image?.target?.size, 528n);
    assert.ok(created.image?.createdAt && created.image.updatedAt);
    await c.call(Images, "create", image("docker.io/library/b:2", D2, INDEX, { "x.y": "z" }));

    const got = await c.call(Images, "get", { name: "docker.io/library/a:1" });
    assert.deepEqual(got.image?.labels, { tier: "gold" });
    assert.equal(got.image?.target?.digest, D1);
    assert.equal(got.image?.target?.mediaType, MANIFEST);

    const names = async (...filters: string[]) =>
      (await c.call(Images, "list", { filters })).images.map((i) => i.name);
    assert.deepEqual(await names(), ["docker.io/library/a:1", "docker.io/library/b:2"]);
    assert.deepEqual(await names("name==docker.io/library/b:2"), ["docker.io/library/b:2"]);
    assert.deepEqual(await names("name~=/a:"), ["docker.io/library/a:1"]);
    assert.deepEqual(await names(`target.digest==${D2}`), ["docker.io/library/b:2"]);
    assert.deepEqual(await names(`target.mediatype==${INDEX}`), ["docker.io/library/b:2"]);
    assert.deepEqual(await names("labels.tier==gold"), ["docker.io/library/a:1"]);
    assert.deepEqual(await names('labels."x.y"==z'), ["docker.io/library/b:2"]);
    assert.deepEqual(await names("labels.tier==gold", 'labels."x.y"'), [
      "docker.io/library/a:1",
      "docker.io/library/b:2",
    ]);
    await assert.rejects(
      c.call(Images, "list", { filters: ["name~=("] }),
      (e) => isKind(e, "invalid_argument"),
    );

    const upd = await c.call(Images, "update", {
      image: { name: "docker.io/library/a:1", labels: { owner: "ops" } },
      updateMask: { paths: ["labels.owner", "labels.tier"] },
    });
    assert.deepEqual(upd.image?.labels, { owner: "ops" });
    assert.equal(upd.image?.target?.digest, D1, "a labels mask leaves the target alone");
    assert.ok(upd.image!.updatedAt!.seconds >= created.image!.updatedAt!.seconds);
    const retarget = await c.call(Images, "update", {
      image: { name: "docker.io/library/a:1", target: { mediaType: INDEX, digest: D2, size: 7n } },
      updateMask: { paths: ["target"] },
    });
    assert.equal(retarget.image?.target?.digest, D2);
    assert.deepEqual(retarget.image?.labels, { owner: "ops" });
    await assert.rejects(
      c.call(Images, "update", {
        image: { name: "docker.io/library/a:1" },
        updateMask: { paths: ["name"] },
      }),
      (e) => isKind(e, "invalid_argument") && /cannot update "name" field/.test(String(e)),
    );
    await assert.rejects(
      c.call(Images, "update", {
        image: { name: "nope", labels: {} },
        updateMask: { paths: ["labels"] },
      }),
      (e) => isKind(e, "not_found") && /image "nope": not found/.test(String(e)),
    );

    await assert.rejects(
      c.call(Images, "create", image("docker.io/library/a:1")),
      (e) =>
        isKind(e, "already_exists") &&
        /image "docker.io\/library\/a:1": already exists/.test(String(e)),
    );
    await assert.rejects(
      c.call(Images, "create", image("bad", "sha256:1234")),
      (e) =>
        isKind(e, "invalid_argument") && /target\.digest "sha256:1234" is invalid/.test(String(e)),
    );
    await assert.rejects(
      c.call(Images, "create", image("bad", D1, "")),
      (e) => isKind(e, "invalid_argument") && /target\.media_type must be set/.test(String(e)),
    );
    await assert.rejects(
      c.call(Images, "create", image("")),
      (e) => isKind(e, "invalid_argument") && /image name must not be empty/.test(String(e)),
    );
    await assert.rejects(c.call(Images, "get", { name: "bad" }), (e) => isKind(e, "not_found"));

    await c.call(Images, "delete", { name: "docker.io/library/b:2", sync: true });
    assert.deepEqual(await names(), ["docker.io/library/a:1"]);
    await assert.rejects(
      c.call(Images, "delete", { name: "docker.io/library/b:2" }),
      (e) => isKind(e, "not_found") && /image "docker.io\/library\/b:2": not found/.test(String(e)),
    );
    // Images are namespaced.
    c.namespace = "other";
    assert.deepEqual(await names(), []);
    c.namespace = undefined;
    await assert.rejects(
      c.call(Images, "list", { filters: [] }),
      (e) => isKind(e, "failed_precondition"),
    );
  } finally {
    c.close();
  }
});

Deno.test("ctr images ls, tag, label and rm see the images berth stores", async () => {
  await using d = await startDaemon();
  const c = new Client({ address: d.sock, namespace: "default" });
  try {
    await c.call(
      Images,
      "create",
      image("localhost:5000/busybox:latest", D1, MANIFEST, { a: "b" }),
    );
  } finally {
    c.close();
  }
  // SIZE and PLATFORMS need the content store; the other columns come from the image service.
  const ls = ok(await d.ctr(["images", "ls"])).stdout.split("\n");
  assert.match(ls[0]!, /^REF\s+TYPE\s+DIGEST\s+SIZE\s+PLATFORMS\s+LABELS\s*$/);
  assert.match(
    ls[1]!,
    new RegExp(
      `^localhost:5000/busybox:latest\\s+${
        MANIFEST.replaceAll(".", "\\.").replaceAll("+", "\\+")
      }\\s+${D1}\\s+.*\\sa=b\\s*$`,
    ),
  );
  ok(await d.ctr(["images", "tag", "localhost:5000/busybox:latest", "localhost:5000/busybox:v1"]));
  assert.equal(
    ok(await d.ctr(["images", "ls", "-q"])).stdout,
    "localhost:5000/busybox:latest\nlocalhost:5000/busybox:v1\n",
  );
  ok(await d.ctr(["images", "label", "localhost:5000/busybox:v1", "role=test"]));
  assert.equal(
    ok(await d.ctr(["images", "ls", "-q", "labels.role==test"])).stdout,
    "localhost:5000/busybox:v1\n",
  );
  ok(await d.ctr(["images", "rm", "localhost:5000/busybox:latest"]));
  assert.equal(ok(await d.ctr(["images", "ls", "-q"])).stdout, "localhost:5000/busybox:v1\n");
  // As with containerd, ctr only warns about a missing image.
  const missing = ok(await d.ctr(["images", "rm", "localhost:5000/busybox:latest"]));
  assert.match(missing.stderr, /localhost:5000\/busybox:latest: image not found/);
});

Deno.test("images survive a restart and keep their namespace from removal", async () => {
  await using d = await startDaemon();
  const first = new Client({ address: d.sock, namespace: "held" });
  let before;
  try {
    await first.call(Images, "create", image("keep:1", D1, MANIFEST, { k: "v" }));
    before = await first.call(Images, "get", { name: "keep:1" });
  } finally {
    first.close();
  }
  await d.restart();
  const c = new Client({ address: d.sock, namespace: "held" });
  try {
    const after = await c.call(Images, "get", { name: "keep:1" });
    assert.deepEqual(after.image, before.image);
    assert.equal(ok(await d.ctr(["-n", "held", "images", "ls", "-q"])).stdout, "keep:1\n");
    c.namespace = undefined;
    await assert.rejects(
      c.call(Namespaces, "delete", { name: "held" }),
      (e) =>
        isKind(e, "failed_precondition") &&
        /namespace "held" must be empty, but it still holds 1 images/.test(String(e)),
    );
    const rm = await d.ctr(["namespaces", "rm", "held"]);
    assert.notEqual(rm.code, 0);
    assert.match(rm.stderr, /still holds 1 images: failed precondition/);
    c.namespace = "held";
    await c.call(Images, "delete", { name: "keep:1" });
    ok(await d.ctr(["namespaces", "rm", "held"]));
  } finally {
    c.close();
  }
});
