import assert from "node:assert/strict";
import { parseDuration, rfc3339 } from "./leases.ts";
import { UsageError } from "./command.ts";

Deno.test("parseDuration reads Go durations as ctr's --expires does", () => {
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("30m"), 1_800_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("1.5h"), 5_400_000);
  assert.equal(parseDuration("90s"), 90_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("-2m"), -120_000);
  for (const bad of ["", "1", "h", "1d", "1h 2m", "abc"]) {
    assert.throws(
      () => parseDuration(bad),
      (e) => e instanceof UsageError && /invalid duration/.test(String(e)),
    );
  }
});

Deno.test("rfc3339 prints UTC at second precision", () => {
  assert.equal(rfc3339(new Date(Date.UTC(2030, 0, 2, 3, 4, 5, 678))), "2030-01-02T03:04:05Z");
});
