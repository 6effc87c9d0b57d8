/**
 * Security defaults (issue 4): a default `berth run` container cannot mount,
 * cannot read masked kernel files and has containerd's default capabilities;
 * `--privileged` lifts all of it. Real containerd running the same image with
 * `ctr run` (and `ctr run --privileged`) gives the same answers.
 */
import assert from "node:assert/strict";
import { ok, startDaemon } from "./_harness.ts";
import { busyboxImageArchive } from "./_images.ts";
import { startContainerd } from "./_containerd.ts";

const IMAGE = "localhost/tasks-bb:latest";
/** containerd's default capability set as a CapEff mask (14 capabilities). */
const DEFAULT_CAP_EFF = "00000000a80425fb";

// /proc/kcore is masked by the default spec; this kernel has no /proc/kcore,
// so /proc/timer_list (masked the same way) stands beside it.
const PROBE = [
  "busybox mkdir -p /mnt/t",
  "if busybox mount -t tmpfs none /mnt/t 2>/dev/null; then echo mount=allowed; else echo mount=denied; fi",
  "if busybox head -c 1 /proc/kcore >/dev/null 2>&1; then echo kcore=readable; else echo kcore=unreadable; fi",
  'if [ -n "$(busybox head -c 64 /proc/timer_list 2>/dev/null)" ]; then echo timer_list=readable; else echo timer_list=masked; fi',
  "if echo x > /proc/sys/kernel/domainname 2>/dev/null; then echo procsys=writable; else echo procsys=readonly; fi",
  "busybox grep CapEff /proc/self/status",
].join("; ");

function answers(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split("\n")) {
    const m = /^(\w+)[=:]\s*(\S+)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

Deno.test("security: berth run's defaults and --privileged answer like containerd's ctr run", async () => {
  await using d = await startDaemon();
  await using cd = await startContainerd("sec");
  const archive = await busyboxImageArchive(`${d.dir}/image`);
  ok(await d.berth(["import", archive]), "berth import");
  ok(await cd.ctr(["images", "import", archive]), "ctr images import");

  const berthDefault = answers(
    ok(await d.berth(["run", "--rm", IMAGE, "sh", "-c", PROBE]), "berth run").stdout,
  );
  const berthPriv = answers(
    ok(
      await d.berth(["run", "--rm", "--privileged", IMAGE, "sh", "-c", PROBE]),
      "berth run --privileged",
    ).stdout,
  );
  const cdDefault = answers(
    ok(await cd.ctr(["run", "--rm", IMAGE, "s1", "sh", "-c", PROBE]), "ctr run").stdout,
  );
  const cdPriv = answers(
    ok(
      await cd.ctr(["run", "--rm", "--privileged", IMAGE, "s2", "sh", "-c", PROBE]),
      "ctr run --privileged",
    )
      .stdout,
  );

  assert.deepEqual(berthDefault, {
    mount: "denied",
    kcore: "unreadable",
    timer_list: "masked",
    procsys: "readonly",
    CapEff: DEFAULT_CAP_EFF,
  });
  assert.equal(berthPriv.mount, "allowed");
  assert.equal(berthPriv.timer_list, "readable");
  assert.equal(berthPriv.procsys, "writable");
  assert.notEqual(berthPriv.CapEff, DEFAULT_CAP_EFF);
  // The same image under real containerd gives the same answers.
  assert.deepEqual(berthDefault, cdDefault);
  assert.deepEqual(berthPriv, cdPriv);
});
