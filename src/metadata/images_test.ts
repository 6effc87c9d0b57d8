import assert from "node:assert/strict";
import { isKind } from "../core/errdefs.ts";
import { MetaDb } from "./db.ts";
import { NamespaceStore } from "./namespaces.ts";
import { digestProblem, ImageStore } from "./images.ts";

const D1 = "sha256:" + "1".repeat(64);
const D2 = "sha256:" + "2".repeat(64);
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const INDEX = "application/vnd.oci.image.index.v1+json";

async function withStore(fn: (s: ImageStore, ns: NamespaceStore) => void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "berth-images-" });
  const db = new MetaDb(`${dir}/meta.db`);
  try {
    const ns = new NamespaceStore(db);
    fn(new ImageStore(db, ns), ns);
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("image create makes the namespace, stores the target and drops empty labels", () =>
  withStore((s, ns) => {
    const img = s.create("n1", {
      name: "docker.io/library/busybox:latest",
      labels: { a: "1", gone: "" },
      target: { mediaType: MANIFEST, digest: D1, size: 42, annotations: { k: "v", e: "" } },
    });
    assert.deepEqual(ns.list().map((n) => n.name), ["n1"]);
    assert.deepEqual(img.labels, { a: "1" });
    assert.deepEqual(img.target, {
      mediaType: MANIFEST,
      digest: D1,
      size: 42,
      annotations: { k: "v" },
    });
    const got = s.get("n1", "docker.io/library/busybox:latest");
    assert.deepEqual(got, img);
    assert.throws(() => s.get("other", img.name), (e) => isKind(e, "not_found"));
    assert.throws(
      () =>
        s.create("n1", { name: img.name, target: { mediaType: MANIFEST, digest: D1, size: 1 } }),
      (e) =>
        isKind(e, "already_exists") && /image "docker.io\/library\/busybox:latest"/.test(String(e)),
    );
  }));

Deno.test("image create validates the name and every stored target field", () =>
  withStore((s) => {
    const bad = (input: Parameters<ImageStore["create"]>[1], re: RegExp) =>
      assert.throws(() => s.create("n", input), (e) =>
        isKind(e, "invalid_argument") && re.test(String(e)));
    bad(
      { name: "", target: { mediaType: MANIFEST, digest: D1, size: 1 } },
      /image name must not be empty/,
    );
    bad(
      { name: "x", target: { mediaType: MANIFEST, digest: "sha256:abc", size: 1 } },
      /target\.digest "sha256:abc"/,
    );
    bad(
      { name: "x", target: { mediaType: MANIFEST, digest: "md5:" + "0".repeat(32), size: 1 } },
      /unsupported digest algorithm "md5"/,
    );
    bad({
      name: "x",
      target: { mediaType: MANIFEST, digest: "sha256:" + "A".repeat(64), size: 1 },
    }, /lowercase hex/);
    bad(
      { name: "x", target: { mediaType: "", digest: D1, size: 1 } },
      /target\.media_type must be set/,
    );
    bad(
      { name: "x", target: { mediaType: MANIFEST, digest: D1, size: 0 } },
      /target\.size must be greater than zero/,
    );
    bad(
      { name: "x", labels: { "": "v" }, target: { mediaType: MANIFEST, digest: D1, size: 1 } },
      /label key/,
    );
    assert.deepEqual(s.list("n"), []);
  }));

Deno.test("digestProblem accepts the algorithms containerd links in", () => {
  assert.equal(digestProblem(D1), undefined);
  assert.equal(digestProblem("sha512:" + "f".repeat(128)), undefined);
  assert.equal(digestProblem("sha384:" + "f".repeat(96)), undefined);
  assert.match(digestProblem("sha256")!, /algorithm:hex/);
  assert.match(digestProblem(":abc")!, /algorithm:hex/);
});

Deno.test("image list filters on name, target and labels like containerd", () =>
  withStore((s) => {
    s.create("n", {
      name: "a:1",
      labels: { tier: "gold" },
      target: { mediaType: MANIFEST, digest: D1, size: 1 },
    });
    s.create("n", {
      name: "b:1",
      labels: { "x.y": "z" },
      target: { mediaType: INDEX, digest: D2, size: 1 },
    });
    s.create("m", { name: "c:1", target: { mediaType: INDEX, digest: D2, size: 1 } });
    const names = (f: string[]) => s.list("n", f).map((i) => i.name);
    assert.deepEqual(names([]), ["a:1", "b:1"]);
    assert.deepEqual(names(["name==b:1"]), ["b:1"]);
    assert.deepEqual(names(["name~=^a"]), ["a:1"]);
    assert.deepEqual(names([`target.digest==${D2}`]), ["b:1"]);
    assert.deepEqual(names([`target.mediatype==${INDEX}`]), ["b:1"]);
    assert.deepEqual(names(["labels.tier==gold"]), ["a:1"]);
    assert.deepEqual(names(['labels."x.y"==z']), ["b:1"]);
    assert.deepEqual(names(["labels.tier"]), ["a:1"]);
    assert.deepEqual(names(["labels.tier==gold", "name==b:1"]), ["a:1", "b:1"]);
    assert.deepEqual(names(["name==a:1,labels.tier==silver"]), []);
    assert.throws(() => s.list("n", ["name=="]), (e) => isKind(e, "invalid_argument"));
  }));

Deno.test("image update follows containerd's field paths", () =>
  withStore((s) => {
    const created = s.create("n", {
      name: "a",
      labels: { keep: "1", drop: "2" },
      target: { mediaType: MANIFEST, digest: D1, size: 1, annotations: { an: "1" } },
    });
    let u = s.update("n", { name: "a", labels: { add: "3" }, target: {} }, [
      "labels.add",
      "labels.drop",
    ]);
    assert.deepEqual(u.labels, { keep: "1", add: "3" });
    assert.equal(u.target.digest, D1);
    assert.equal(u.createdAt.getTime(), created.createdAt.getTime());
    u = s.update("n", { name: "a", target: { mediaType: INDEX, digest: D2, size: 9 } }, ["target"]);
    assert.deepEqual(u.target, { mediaType: INDEX, digest: D2, size: 9, annotations: {} });
    assert.deepEqual(u.labels, { keep: "1", add: "3" });
    u = s.update("n", { name: "a", target: { annotations: { b: "2" } } }, ["annotations.b"]);
    assert.deepEqual(u.target.annotations, { b: "2" });
    u = s.update("n", { name: "a", labels: { only: "x" }, target: {} }, ["labels"]);
    assert.deepEqual(u.labels, { only: "x" });
    // No mask: everything is replaced, and must be valid again.
    assert.throws(
      () => s.update("n", { name: "a", labels: {}, target: {} }),
      (e) => isKind(e, "invalid_argument") && /target\.digest ""/.test(String(e)),
    );
    u = s.update("n", { name: "a", target: { mediaType: MANIFEST, digest: D1, size: 5 } });
    assert.deepEqual(u.labels, {});
    assert.deepEqual(s.get("n", "a"), u);
    assert.throws(
      () => s.update("n", { name: "a", target: {} }, ["name"]),
      (e) =>
        isKind(e, "invalid_argument") && /cannot update "name" field on image "a"/.test(String(e)),
    );
    assert.throws(() => s.update("n", { name: "zz", target: {} }, ["labels"]), (e) =>
      isKind(e, "not_found"));
    assert.throws(() =>
      s.update("n", { name: "", target: {} }, ["labels"]), (e) =>
      isKind(e, "invalid_argument"));
  }));

Deno.test("image delete removes only the named image and reports a missing one", () =>
  withStore((s) => {
    s.create("n", { name: "a", target: { mediaType: MANIFEST, digest: D1, size: 1 } });
    s.create("n", { name: "b", target: { mediaType: MANIFEST, digest: D1, size: 1 } });
    s.delete("n", "a");
    assert.deepEqual(s.list("n").map((i) => i.name), ["b"]);
    assert.throws(
      () => s.delete("n", "a"),
      (e) => isKind(e, "not_found") && /image "a": not found/.test(String(e)),
    );
  }));
