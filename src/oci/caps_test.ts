import assert from "node:assert/strict";
import {
  capabilitiesFromBitmap,
  capabilitiesToBitmap,
  CAPABILITY_NAMES,
  capabilityNumber,
  currentCapabilities,
  DEFAULT_CAPABILITIES,
  knownCapabilities,
  normalizeCapability,
  parseStatusCapabilities,
} from "./caps.ts";

Deno.test("capability numbers are the kernel's", () => {
  assert.equal(capabilityNumber("CAP_CHOWN"), 0);
  assert.equal(capabilityNumber("CAP_NET_RAW"), 13);
  assert.equal(capabilityNumber("CAP_SYS_ADMIN"), 21);
  assert.equal(capabilityNumber("CAP_SYS_RESOURCE"), 24);
  assert.equal(capabilityNumber("CAP_AUDIT_READ"), 37);
  assert.equal(capabilityNumber("CAP_CHECKPOINT_RESTORE"), 40);
  assert.equal(capabilityNumber("sys_admin"), 21);
  assert.equal(capabilityNumber("CAP_NOPE"), undefined);
  assert.equal(CAPABILITY_NAMES.length, 41);
});

Deno.test("normalizeCapability accepts short and lowercase names, rejects unknown ones", () => {
  assert.equal(normalizeCapability("net_admin"), "CAP_NET_ADMIN");
  assert.equal(normalizeCapability("CAP_KILL"), "CAP_KILL");
  assert.throws(() => normalizeCapability("CAP_FLY"), /Unknown capability: "CAP_FLY"/);
});

Deno.test("the default set is containerd's 14 capabilities as a bitmap", () => {
  assert.equal(DEFAULT_CAPABILITIES.length, 14);
  // The CapEff a default containerd container shows in /proc/self/status.
  assert.equal(capabilitiesToBitmap(DEFAULT_CAPABILITIES), "00000000a80425fb");
  assert.deepEqual(
    new Set(capabilitiesFromBitmap("00000000a80425fb")),
    new Set(DEFAULT_CAPABILITIES),
  );
});

Deno.test("bitmaps map to names; unknown high bits are dropped", () => {
  // This VM's bounding set: everything up to 40 but CAP_SYS_RESOURCE.
  const names = capabilitiesFromBitmap("000001fffeffffff");
  assert.equal(names.length, 40);
  assert.ok(!names.includes("CAP_SYS_RESOURCE"));
  assert.deepEqual(capabilitiesFromBitmap("8000000000000001"), ["CAP_CHOWN"]);
  assert.deepEqual(capabilitiesFromBitmap("0"), []);
});

Deno.test("parseStatusCapabilities reads the Cap lines of /proc/PID/status", () => {
  const status = "Name:\tsh\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000021\n" +
    "CapEff:\t0000000000000021\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
  const c = parseStatusCapabilities(status);
  assert.deepEqual(c["CapEff"], ["CAP_CHOWN", "CAP_KILL"]);
  assert.deepEqual(c["CapInh"], []);
  assert.equal(c["CapBnd"]!.length, 41);
});

Deno.test("currentCapabilities is this process's CapEff", () => {
  const status = Deno.readTextFileSync("/proc/self/status");
  const line = status.split("\n").find((l) => l.startsWith("CapEff:"))!;
  assert.deepEqual(currentCapabilities(), capabilitiesFromBitmap(line.split(/\s+/)[1]!));
});

Deno.test("knownCapabilities follows cap_last_cap", () => {
  assert.deepEqual(knownCapabilities(37).at(-1), "CAP_AUDIT_READ");
  assert.equal(knownCapabilities(37).length, 38);
  assert.equal(knownCapabilities(63).length, 41);
  const last = Number(Deno.readTextFileSync("/proc/sys/kernel/cap_last_cap").trim());
  assert.equal(knownCapabilities().length, Math.min(last + 1, 41));
});
