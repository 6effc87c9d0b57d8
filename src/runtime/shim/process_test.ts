import assert from "node:assert/strict";
import { isKind } from "../../core/errdefs.ts";
import { ShimProcess } from "./process.ts";

const stdio = { stdin: "", stdout: "", stderr: "", terminal: false };

Deno.test("shim process: the lifecycle and its refusals name the state", async () => {
  const p = new ShimProcess("c1", "", stdio);
  assert.equal(p.state, "created");
  assert.throws(
    () => p.check("pause"),
    (e) => isKind(e, "failed_precondition") && /created/.test((e as Error).message),
  );
  p.check("start");
  p.to("running");
  assert.throws(() => p.check("start"), /cannot start a running process "c1"/);
  assert.throws(() => p.check("delete"), /cannot delete a running process/);
  p.check("pause");
  p.to("paused");
  assert.throws(() => p.check("pause"), /cannot pause a paused process/);
  p.to("running");
  p.setExited({ status: 3, at: new Date(0) });
  assert.equal(p.state, "stopped");
  assert.equal((await p.exited).status, 3);
  assert.throws(() => p.check("exec"), /cannot exec a stopped process/);
  p.check("delete");
  p.to("deleted");
  assert.throws(() => p.check("delete"), /cannot delete a deleted process/);
});

Deno.test("shim process: an exit racing an operation wins; the first exit counts", () => {
  const p = new ShimProcess("c1", "e1", stdio);
  assert.equal(p.id, "e1");
  p.to("running");
  p.setExited({ status: 1, at: new Date(0) });
  p.to("running"); // a Start that returned after the exit was seen
  assert.equal(p.state, "stopped");
  p.setExited({ status: 2, at: new Date(1) });
  assert.equal(p.exit?.status, 1);
});
