/**
 * Side-by-side benchmark of berth's daemon and containerd 1.6.20 on the same
 * machine (`deno task bench`, as root). The daemons run side by side and take
 * turns at each step, so that changing load on a shared machine falls on all
 * of them alike. For each daemon:
 *
 * - idle memory: VmRSS, Pss (smaps_rollup) a few seconds after start;
 * - `ctr version` wall time (Debian's Go client), median;
 * - unary latency: one `Version` call at a time, median;
 * - unary throughput: `Version` calls over one grpc-js channel, with many in
 *   flight, from this process (the same client code for both daemons), best
 *   of a few rounds, and the daemon's CPU time per 1000 calls;
 * - memory again after the load (VmRSS, Pss, and the peak VmHWM).
 *
 * berth runs twice: with Deno's default V8 flags and with the flags the
 * systemd unit and setup script use ({@link TUNED_V8_FLAGS}). containerd is
 * started with ../shared/refenv/containerd under a private REFENV_DIR, so the
 * bench neither disturbs nor reuses anyone else's, and stopped afterwards.
 * Results are printed and written to bench/results/foundation.txt.
 *
 * Environment: BENCH_SECONDS (5, per round), BENCH_ROUNDS (3, the best counts),
 * BENCH_CONCURRENCY (64), BENCH_CTR_RUNS (30),
 * BENCH_REFENV (path of the refenv scripts, default ../shared/refenv),
 * BENCH_V8_VARIANTS (berth's V8 flag sets to compare, `;`-separated, `default`
 * for none; default `default;TUNED_V8_FLAGS`), BENCH_CONTAINERD (0 skips it; then
 * nothing is written to bench/results).
 */

import { startBerthDaemon, TUNED_V8_FLAGS } from "./_berth.ts";

/** The V8 flags the packaged daemon runs with (see README, "Memory"). */
export { TUNED_V8_FLAGS };

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 5);
const CONCURRENCY = Number(Deno.env.get("BENCH_CONCURRENCY") ?? 64);
const CTR_RUNS = Number(Deno.env.get("BENCH_CTR_RUNS") ?? 30);
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);
const REFENV = Deno.env.get("BENCH_REFENV") ?? `${REPO}/../shared/refenv`;
const SETTLE_MS = 3000;

interface Memory {
  rssKb: number;
  pssKb: number;
  hwmKb: number;
}

interface Result {
  name: string;
  idle: Memory;
  callsPerSec: number;
  /** The daemon's CPU time (user + system) per 1000 calls, over all rounds. */
  cpuMsPer1k: number;
  latencyMs: number;
  ctrMs: number;
  loaded: Memory;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function memoryOf(pid: number): Promise<Memory> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const rollup = await Deno.readTextFile(`/proc/${pid}/smaps_rollup`);
  const field = (text: string, name: string) => {
    const m = text.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"));
    if (!m) throw new Error(`No ${name} in /proc/${pid}`);
    return Number(m[1]);
  };
  return {
    rssKb: field(status, "VmRSS"),
    hwmKb: field(status, "VmHWM"),
    pssKb: field(rollup, "Pss"),
  };
}

/** User + system CPU time of a process so far, in ms (/proc/PID/stat, in clock ticks). */
async function cpuMsOf(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command name, which is in parentheses and may hold spaces.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(f[11]) + Number(f[12]); // utime, stime: fields 14 and 15
  return ticks * 10; // USER_HZ is 100 on Linux
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function run(cmd: string, args: string[], env?: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    ...(env ? { env } : {}),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return text;
}

/** Runs bench/client.ts in its own process and returns what it printed. */
async function client<T>(args: string[]): Promise<T> {
  const out = await run(Deno.execPath(), ["run", "-A", `${REPO}/bench/client.ts`, ...args]);
  return JSON.parse(out.trim().split("\n").at(-1)!) as T;
}

/** A daemon under test. */
interface Target {
  name: string;
  sock: string;
  pid: number;
  stop(): Promise<void>;
}

async function startBerth(name: string, v8Flags: string | undefined): Promise<Target> {
  // From main.ts: this bench measures the daemon, which loads the same
  // modules whether bundled or not.
  const d = await startBerthDaemon({ prefix: "berth-bench-", entry: "source", v8Flags });
  return { name, sock: d.sock, pid: d.pid, stop: d.stop };
}

async function startContainerd(): Promise<Target> {
  const refenvDir = await Deno.makeTempDir({ prefix: "berth-bench-refenv-" });
  const env = { REFENV_DIR: refenvDir, REFENV_CONTAINERD_LOG_LEVEL: "warn" };
  const script = `${REFENV}/containerd`;
  const stop = async () => {
    await run(script, ["stop"], env).catch((e) => console.error(String(e)));
    await Deno.remove(refenvDir, { recursive: true }).catch(() => {});
  };
  try {
    await run(script, ["start"], env);
    const pid = Number((await run(script, ["pid"], env)).trim());
    const version = (await run(script, ["ctr", "version"], env)).match(
      /Server:\s+Version:\s+(\S+)/,
    )?.[1];
    console.error(`bench: containerd ${version ?? "?"} (pid ${pid})`);
    return { name: "containerd", sock: `${refenvDir}/containerd/containerd.sock`, pid, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * Measures all targets, which run side by side, taking turns step by step so
 * that changing load on the machine falls on all of them alike.
 */
async function measureAll(targets: Target[]): Promise<Result[]> {
  await sleep(SETTLE_MS);
  const idle = await Promise.all(targets.map((t) => memoryOf(t.pid)));

  console.error("bench: ctr version");
  const ctrTimes = targets.map(() => [] as number[]);
  for (let i = 0; i < CTR_RUNS; i++) {
    for (const [j, t] of targets.entries()) {
      const start = performance.now();
      await run("ctr", ["-a", t.sock, "version"]);
      ctrTimes[j]!.push(performance.now() - start);
    }
  }

  console.error("bench: latency");
  const lat = targets.map(() => [] as number[]);
  for (let i = 0; i < 5; i++) {
    for (const [j, t] of targets.entries()) {
      lat[j]!.push((await client<{ medianMs: number }>([t.sock, "latency", "100"])).medianMs);
    }
  }

  // Best of the rounds: other load on the machine only ever slows a round down.
  const best = targets.map(() => 0);
  const calls = targets.map(() => 0);
  const cpu = targets.map(() => 0);
  for (let round = 1; round <= ROUNDS; round++) {
    console.error(`bench: throughput round ${round}/${ROUNDS}`);
    for (const [j, t] of targets.entries()) {
      const before = await cpuMsOf(t.pid);
      const r = await client<{ calls: number; perSec: number }>([
        t.sock,
        "throughput",
        String(CONCURRENCY),
        String(SECONDS),
      ]);
      cpu[j]! += (await cpuMsOf(t.pid)) - before;
      best[j] = Math.max(best[j]!, r.perSec);
      calls[j]! += r.calls + 200; // the client's 200 warm-up calls ran in the CPU window too
    }
  }

  await sleep(SETTLE_MS);
  const loaded = await Promise.all(targets.map((t) => memoryOf(t.pid)));
  return targets.map((t, j) => ({
    name: t.name,
    idle: idle[j]!,
    ctrMs: median(ctrTimes[j]!),
    latencyMs: median(lat[j]!),
    callsPerSec: best[j]!,
    cpuMsPer1k: cpu[j]! / calls[j]! * 1000,
    loaded: loaded[j]!,
  }));
}

function mb(kb: number): string {
  return `${(kb / 1024).toFixed(1)} MB`;
}

function report(results: Result[], reference: Result): string {
  const rows: Array<[string, (r: Result) => number, (v: number) => string, string]> = [
    ["idle VmRSS", (r) => r.idle.rssKb, mb, "lower is better"],
    ["idle Pss", (r) => r.idle.pssKb, mb, "lower is better"],
    ["Version calls/s (1 channel)", (r) => r.callsPerSec, (v) => v.toFixed(0), "higher is better"],
    ["daemon CPU per 1000 calls", (r) => r.cpuMsPer1k, (v) => `${v.toFixed(0)} ms`, "lower"],
    ["Version latency, 1 in flight", (r) => r.latencyMs, (v) => `${v.toFixed(3)} ms`, "lower"],
    ["ctr version wall (median)", (r) => r.ctrMs, (v) => `${v.toFixed(1)} ms`, "lower"],
    ["VmRSS after load", (r) => r.loaded.rssKb, mb, "lower"],
    ["Pss after load", (r) => r.loaded.pssKb, mb, "lower"],
    ["peak VmHWM", (r) => r.loaded.hwmKb, mb, "lower"],
  ];
  const cols = [
    ...results.map((r) => r.name),
    ...results.filter((r) => r !== reference).map((
      r,
    ) => `${r.name} / ${reference.name}`),
  ];
  const lines: string[] = [];
  const w0 = 30;
  const w = Math.max(14, ...cols.map((c) => c.length + 2));
  lines.push("metric".padEnd(w0) + cols.map((c) => c.padStart(w)).join(""));
  for (const [label, get, fmt] of rows) {
    const ref = get(reference);
    const cells = [
      ...results.map((r) => fmt(get(r))),
      ...results.filter((r) => r !== reference).map((r) => `${(get(r) / ref).toFixed(2)}x`),
    ];
    lines.push(label.padEnd(w0) + cells.map((c) => c.padStart(w)).join(""));
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  if (Deno.uid() !== 0) throw new Error("The benchmark runs containerd and needs root");
  const host = (await Deno.readTextFile("/proc/cpuinfo")).match(/^processor/gm)?.length ?? 0;
  const header = [
    `# berth foundation benchmark, ${new Date().toISOString()}`,
    `# ${Deno.build.target}, ${host} CPUs, Deno ${Deno.version.deno}, kernel ${
      (await Deno.readTextFile("/proc/sys/kernel/osrelease")).trim()
    }`,
    `# the daemons run side by side and take turns at each step, so that other load on the` +
    ` machine falls on all alike`,
    `# throughput: grpc-js client (bench/client.ts) in its own Deno process, one channel, ${CONCURRENCY} calls` +
    ` in flight, best of ${ROUNDS} rounds of ${SECONDS} s; latency: median of 5 x 100 sequential` +
    ` calls; ctr: median of ${CTR_RUNS} runs; memory ${SETTLE_MS / 1000} s after start and after` +
    ` the load`,
    `# Pss splits pages shared with other processes (the berth daemons share Deno's binary with` +
    ` each other and with any other Deno process): compare VmRSS`,
    `# berth tuned = --v8-flags=${TUNED_V8_FLAGS}`,
  ];
  console.error(header.join("\n"));
  const variants = (Deno.env.get("BENCH_V8_VARIANTS") ?? `default;${TUNED_V8_FLAGS}`)
    .split(";").map((v) => v.trim()).filter(Boolean);
  const withContainerd = Deno.env.get("BENCH_CONTAINERD") !== "0";
  const targets: Target[] = [];
  let results: Result[];
  try {
    for (const v of variants) {
      const flags = v === "default" ? undefined : v;
      const name = flags === undefined
        ? "berth"
        : flags === TUNED_V8_FLAGS
        ? "berth tuned"
        : `berth ${v}`;
      console.error(`bench: starting ${name}`);
      targets.push(await startBerth(name, flags));
    }
    if (withContainerd) targets.push(await startContainerd());
    results = await measureAll(targets);
  } finally {
    for (const t of targets.reverse()) await t.stop();
  }
  const reference = withContainerd ? results.at(-1)! : results[0]!;
  const text = `${header.join("\n")}\n\n${report(results, reference)}\n`;
  console.log(text);
  if (!withContainerd) return;
  await Deno.mkdir(`${REPO}/bench/results`, { recursive: true });
  await Deno.writeTextFile(`${REPO}/bench/results/foundation.txt`, text);
  console.error(`bench: wrote bench/results/foundation.txt`);
}

if (import.meta.main) await main();
