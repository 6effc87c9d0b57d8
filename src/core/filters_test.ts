import assert from "node:assert/strict";
import { adaptObject, parseFilters } from "./filters.ts";
import { isKind } from "./errdefs.ts";

const obj = adaptObject({ name: "xray", labels: { a: "b", "with.dot": "1" }, size: 10 });

Deno.test("filters: empty matches everything", () => {
  assert.ok(parseFilters([]).match(obj));
  assert.ok(parseFilters([""]).match(obj));
});

Deno.test("filters: equality, inequality, regexp, presence", () => {
  assert.ok(parseFilters(['labels."a"==b']).match(obj));
  assert.ok(parseFilters(["labels.a==b"]).match(obj));
  assert.ok(!parseFilters(["labels.a!=b"]).match(obj));
  assert.ok(parseFilters(["name~=^x"]).match(obj));
  assert.ok(!parseFilters(["name~=^y"]).match(obj));
  assert.ok(parseFilters(['labels."with.dot"']).match(obj));
  assert.ok(!parseFilters(["labels.missing"]).match(obj));
  assert.ok(parseFilters(["size==10"]).match(obj));
});

Deno.test("filters: commas AND, list entries OR", () => {
  assert.ok(!parseFilters(["name==xray,labels.a==c"]).match(obj));
  assert.ok(parseFilters(["name==nope", "labels.a==b"]).match(obj));
  assert.ok(parseFilters(['name=="xray"', "labels.a==c"]).match(obj));
});

Deno.test("filters: syntax errors are invalid arguments naming the filter", () => {
  const invalid = (e: unknown) => isKind(e, "invalid_argument") && /filter "/.test(String(e));
  assert.throws(() => parseFilters(["name=="]), invalid);
  assert.throws(() => parseFilters(['labels."a==b']), invalid);
  assert.throws(() => parseFilters(["name~=("]), invalid);
});
