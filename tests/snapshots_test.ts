/**
 * The snapshots service end to end: a real daemon, Debian's `ctr` and the
 * berth CLI, with the mount commands they print actually run.
 */
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { ok, run, startDaemon, type TestDaemon, waitFor } from "./_harness.ts";
import { mountsUnder } from "../src/mount/mountinfo.ts";

/** Runs a `mount -t T SRC TARGET -o OPTS` line as printed by `snapshots mounts`. */
async function runMountLine(line: string, target: string): Promise<void> {
  const m = /^mount -t (\S+) (\S+) (\S+) -o (\S+)$/.exec(line.trim());
  assert.ok(m, `a mount command: ${line}`);
  assert.equal(m[3], target);
  // mount(8) knows "bind" as an option, not as a type.
  const args = m[1] === "bind"
    ? ["--rbind", "-o", m[4]!.split(",").filter((o) => o !== "rbind").join(","), m[2]!, target]
    : ["-t", m[1]!, m[2]!, target, "-o", m[4]!];
  ok(await run("mount", args), `mount ${args.join(" ")}`);
  if (m[1] === "bind" && m[4]!.split(",").includes("ro")) {
    ok(await run("mount", ["-o", "remount,bind,ro", target]), "remount ro");
  }
}

async function unmountAll(target: string) {
  while ((await mountsUnder(target)).length > 0) ok(await run("umount", [target]), "umount");
}

async function noMountsLeft(d: TestDaemon) {
  assert.deepEqual((await mountsUnder(d.dir)).map((m) => m.mountPoint), []);
}

async function ctrSnapshotterCycle(sn: "overlayfs" | "native") {
  await using d = await startDaemon();
  const target = `${d.dir}/mnt`;
  await Deno.mkdir(target);
  const ctr = (...args: string[]) => d.ctr(["snapshots", "--snapshotter", sn, ...args]);
  try {
    ok(await ctr("prepare", "k1"), "prepare k1");
    let out = ok(await ctr("mounts", target, "k1")).stdout.trim();
    assert.match(out, /^mount -t bind \S+ \S+ -o rw,rbind$/);
    await runMountLine(out, target);
    await Deno.writeTextFile(`${target}/hello`, "from k1");
    await unmountAll(target);
    ok(await ctr("commit", "c1", "k1"), "commit");

    ok(await ctr("prepare", "k2", "c1"), "prepare k2 on c1");
    out = ok(await ctr("mounts", target, "k2")).stdout.trim();
    assert.match(
      out,
      sn === "overlayfs" ? /^mount -t overlay overlay \S+ -o .*lowerdir=/ : /-o rw,rbind$/,
    );
    await runMountLine(out, target);
    assert.equal(await Deno.readTextFile(`${target}/hello`), "from k1");
    await Deno.writeFile(`${target}/blob`, new Uint8Array(300_000).fill(1));
    await unmountAll(target);

    const ls = ok(await ctr("ls")).stdout;
    assert.match(ls, /^KEY\s+PARENT\s+KIND\s*$/m);
    assert.match(ls, /^c1\s+Committed\s*$/m);
    assert.match(ls, /^k2\s+c1\s+Active\s*$/m);

    const info = JSON.parse(ok(await ctr("info", "c1")).stdout);
    assert.equal(info.Name, "c1");
    assert.equal(info.Kind, "Committed");
    assert.ok(info.Labels["containerd.io/gc.root"], "ctr's gc.root label is kept");
    assert.ok(!Number.isNaN(Date.parse(info.Created)));
    assert.equal(JSON.parse(ok(await ctr("info", "k2")).stdout).Parent, "c1");

    const usage = ok(await ctr("usage", "-b")).stdout;
    const k2 = /^k2\s+(\d+)\s+(\d+)\s*$/m.exec(usage);
    assert.ok(k2, usage);
    assert.ok(Number(k2[1]) >= 300_000, `k2 holds the 300 kB blob: ${usage}`);

    // A view shows the committed tree read-only.
    const view = ok(await ctr("view", "--target", target, "v1", "c1")).stdout.trim();
    await runMountLine(view, target);
    assert.equal(await Deno.readTextFile(`${target}/hello`), "from k1");
    await assert.rejects(Deno.writeTextFile(`${target}/x`, "no"), /Read-only file system/);
    await unmountAll(target);

    const busy = await ctr("rm", "c1");
    assert.notEqual(busy.code, 0);
    assert.match(
      busy.stderr,
      /cannot remove snapshot "c1": it is the parent of "k2", "v1": failed precondition/,
    );
    const missing = await ctr("info", "nope");
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /snapshot "nope": not found/);
    ok(await ctr("rm", "k2", "v1"), "rm children");
    ok(await ctr("rm", "c1"), "rm parent");
    assert.equal(
      ok(await ctr("ls")).stdout.trim().split("\n").length,
      1,
      "only the header is left",
    );
    assert.deepEqual(await Array.fromAsync(Deno.readDir(`${d.root}/snapshots/${sn}`)), []);
  } finally {
    await unmountAll(target);
    await noMountsLeft(d);
  }
}

Deno.test("ctr snapshots on overlayfs: prepare, mounts, commit, ls, info, usage, view, rm", () =>
  ctrSnapshotterCycle("overlayfs"));

Deno.test("ctr snapshots on native: prepare, mounts, commit, ls, info, usage, view, rm", () =>
  ctrSnapshotterCycle("native"));

/** The KEY PARENT KIND rows of a `snapshots ls` table, whitespace normalized. */
function rows(ls: string): string[] {
  return ls.trim().split("\n").slice(1).map((l) => l.trim().split(/\s+/).join(" ")).sort();
}

Deno.test("berth snapshots verbs agree with ctr; --json, filters, labels and errors", async () => {
  await using d = await startDaemon();
  const b = (...args: string[]) => d.berth(["snapshots", ...args]);
  ok(await b("prepare", "k1"));
  ok(await b("commit", "c1", "k1"));
  const target = `${d.dir}/mnt`;
  const prep = ok(await b("prepare", "-t", target, "k2", "c1")).stdout.trim();
  assert.match(prep, new RegExp(`^mount -t overlay overlay ${target} -o .*upperdir=`));
  const mounts = JSON.parse(ok(await b("mounts", "--json", target, "k2")).stdout);
  assert.equal(mounts.length, 1);
  assert.equal(mounts[0].type, "overlay");
  assert.ok(mounts[0].options.some((o: string) => o.startsWith("lowerdir=")));

  const berthLs = ok(await b("ls")).stdout;
  assert.match(berthLs, /^KEY\s+PARENT\s+KIND$/m);
  assert.deepEqual(rows(berthLs), ["c1 Committed", "k2 c1 Active"]);
  assert.deepEqual(rows(ok(await d.ctr(["snapshots", "ls"])).stdout), rows(berthLs));
  assert.deepEqual(ok(await b("ls", "-q", "kind==committed")).stdout.trim(), "c1");
  assert.deepEqual(ok(await b("ls", "-q", "parent==c1")).stdout.trim(), "k2");
  const js = JSON.parse(ok(await b("ls", "--json")).stdout);
  assert.deepEqual(js.map((i: { name: string; kind: string }) => [i.name, i.kind]), [
    ["c1", "committed"],
    ["k2", "active"],
  ]);
  const info = JSON.parse(ok(await b("info", "k2")).stdout);
  assert.equal(info.parent, "c1");
  assert.equal(info.kind, "active");
  const usage = JSON.parse(ok(await b("usage", "--json")).stdout);
  assert.deepEqual(usage.map((u: { key: string }) => u.key), ["c1", "k2"]);
  assert.ok(usage.every((u: { inodes: number }) => u.inodes >= 1));

  assert.match(ok(await b("label", "k2", "team=a")).stdout, /team=a/);
  assert.equal(JSON.parse(ok(await d.ctr(["snapshots", "info", "k2"])).stdout).Labels.team, "a");
  ok(await b("label", "k2", "team="));
  assert.equal(JSON.parse(ok(await b("info", "k2")).stdout).labels.team, undefined);

  // native is separate: its own keys, chosen before or after the subcommand.
  ok(await b("--snapshotter", "native", "prepare", "n1"));
  ok(await b("commit", "nc1", "n1", "--snapshotter=native"));
  ok(await b("--snapshotter", "native", "view", "nv1", "nc1"));
  assert.deepEqual(rows(ok(await b("--snapshotter", "native", "ls")).stdout), [
    "nc1 Committed",
    "nv1 nc1 View",
  ]);
  assert.deepEqual(
    rows(ok(await d.ctr(["snapshots", "--snapshotter", "native", "ls"])).stdout),
    ["nc1 Committed", "nv1 nc1 View"],
  );
  assert.deepEqual(rows(ok(await b("ls")).stdout), ["c1 Committed", "k2 c1 Active"]);

  const busy = await b("rm", "c1");
  assert.equal(busy.code, 1);
  assert.match(
    busy.stderr,
    /cannot remove snapshot "c1": it is the parent of "k2": failed precondition/,
  );
  const unknown = await b("--snapshotter", "btrfs", "ls");
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /snapshotter "btrfs" is not loaded \(loaded: overlayfs, native\)/);
  const dup = await b("prepare", "k2");
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /snapshot "k2": already exists/);
  const notCommitted = await b("prepare", "k3", "k2");
  assert.equal(notCommitted.code, 1);
  assert.match(notCommitted.stderr, /parent "k2" is active, not committed: failed precondition/);
  assert.equal((await b("info")).code, 2);
  assert.equal((await b("commit", "only-one")).code, 2);
  assert.match(ok(await b("--help")).stdout, /Usage: berth snapshots/);
  assert.deepEqual(ok(await b("rm", "k2", "c1")).stdout.trim().split("\n"), ["k2", "c1"]);
  assert.equal(ok(await b("ls", "-q")).stdout.trim(), "");
  await noMountsLeft(d);
});

Deno.test("snapshot events, leases, plugins, namespaces and a restart", async () => {
  await using d = await startDaemon();
  const { Client } = await import("../src/cmd/cli/client.ts");
  const { Events } = await import("../src/gen/containerd/services/events/v1/events_pb.ts");
  const { Snapshots } = await import("../src/gen/containerd/services/snapshots/v1/snapshots_pb.ts");
  const { Leases } = await import("../src/gen/containerd/services/leases/v1/leases_pb.ts");
  const ev = await import("../src/gen/containerd/events/snapshot_pb.ts");
  const c = new Client({ address: d.sock, namespace: "team" });
  const ac = new AbortController();
  const seen: string[] = [];
  const reading = (async () => {
    for await (
      const e of c.stream(Events, "subscribe", { filters: ['topic~="^/snapshot/"'] }, ac.signal)
    ) {
      const v = e.event!.value;
      if (e.topic === "/snapshot/prepare") {
        const m = fromBinary(ev.SnapshotPrepareSchema, v);
        seen.push(`${e.namespace} prepare ${m.key} ${m.parent} ${m.snapshotter}`);
      } else if (e.topic === "/snapshot/commit") {
        const m = fromBinary(ev.SnapshotCommitSchema, v);
        seen.push(`${e.namespace} commit ${m.key} ${m.name} ${m.snapshotter}`);
      } else if (e.topic === "/snapshot/remove") {
        const m = fromBinary(ev.SnapshotRemoveSchema, v);
        seen.push(`${e.namespace} remove ${m.key} ${m.snapshotter}`);
      }
    }
  })();
  try {
    await new Promise((r) => setTimeout(r, 200)); // the subscription is in place
    await c.call(Leases, "create", { id: "l1" });
    const leased = new Client({ address: d.sock, namespace: "team", lease: "l1" });
    try {
      await leased.call(Snapshots, "prepare", { snapshotter: "overlayfs", key: "k1" });
      await leased.call(Snapshots, "commit", { snapshotter: "overlayfs", name: "c1", key: "k1" });
    } finally {
      leased.close();
    }
    const res = await c.call(Leases, "listResources", { id: "l1" });
    assert.deepEqual(res.resources.map((r) => [r.type, r.id]), [["snapshots/overlayfs", "c1"]]);
    await c.call(Snapshots, "prepare", { snapshotter: "native", key: "n1" });
    await c.call(Snapshots, "remove", { snapshotter: "native", key: "n1" });
    await waitFor("four snapshot events", () => seen.length >= 4);
    assert.deepEqual(seen, [
      "team prepare k1  overlayfs",
      "team commit k1 c1 overlayfs",
      "team prepare n1  native",
      "team remove n1 native",
    ]);

    // A namespace holding snapshots cannot be removed.
    const rmNs = await d.ctr(["namespaces", "rm", "team"]);
    assert.notEqual(rmNs.code, 0);
    assert.match(rmNs.stderr, /snapshots/);

    const plugins = ok(await d.ctr(["plugins", "ls"])).stdout;
    assert.match(plugins, /^io\.containerd\.snapshotter\.v1\s+overlayfs\s+.*\bok\s*$/m);
    assert.match(plugins, /^io\.containerd\.snapshotter\.v1\s+native\s+.*\bok\s*$/m);
    assert.match(plugins, /^io\.containerd\.grpc\.v1\s+snapshots\s+.*\bok\s*$/m);
  } finally {
    ac.abort();
    await reading.catch(() => {});
    c.close();
  }

  // Metadata and storage survive a restart; the stack still mounts.
  ok(await d.ctr(["-n", "team", "snapshots", "prepare", "k2", "c1"]));
  await d.restart();
  assert.deepEqual(rows(ok(await d.ctr(["-n", "team", "snapshots", "ls"])).stdout), [
    "c1 Committed",
    "k2 c1 Active",
  ]);
  const target = `${d.dir}/mnt`;
  await Deno.mkdir(target);
  try {
    const line = ok(await d.ctr(["-n", "team", "snapshots", "mounts", target, "k2"])).stdout;
    await runMountLine(line, target);
    await Deno.writeTextFile(`${target}/after-restart`, "yes");
  } finally {
    await unmountAll(target);
  }
  await noMountsLeft(d);
});

Deno.test("the configured default snapshotter serves calls that name none", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-test-" });
  await Deno.writeTextFile(`${dir}/config.toml`, 'snapshotter = "native"\n');
  await using d = await startDaemon({ dir, extraArgs: ["--config", `${dir}/config.toml`] });
  ok(await d.berth(["snapshots", "prepare", "k1"]));
  assert.deepEqual(rows(ok(await d.ctr(["snapshots", "--snapshotter", "native", "ls"])).stdout), [
    "k1 Active",
  ]);
  assert.deepEqual(rows(ok(await d.ctr(["snapshots", "ls"])).stdout), [], "not on overlayfs");
  assert.match(
    ok(await d.berth(["snapshots", "mounts", "/x", "k1"])).stdout,
    /snapshots\/native\//,
  );
});

Deno.test("an unknown default snapshotter in the config stops the daemon with a clear error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-test-" });
  try {
    await Deno.writeTextFile(`${dir}/config.toml`, 'snapshotter = "zfs"\n');
    await assert.rejects(
      startDaemon({ dir, extraArgs: ["--config", `${dir}/config.toml`] }),
      /snapshotter "zfs" is not one of overlayfs, native/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
