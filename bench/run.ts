/**
 * Container execution benchmark: berth against containerd 1.6.20 on the same
 * machine, the same image and the same client (`deno task bench:run`, as root).
 *
 * Both daemons get the same one-layer busybox image (tests/_images.ts builds
 * it; `ctr images import` loads it into each). Measured, the daemons taking
 * turns within each step (the warm runs in turns of five):
 *
 * - warm `run --rm IMAGE true` latency, median of BENCH_RUN_WARM (20) after
 *   one unmeasured run: Debian's `ctr run --rm` against each daemon, and the
 *   berth CLI's `berth run --rm` against berth;
 * - the time to start BENCH_RUN_CONTAINERS (20) `sleep 600` containers with
 *   `ctr run -d`, one after the other, the mean of BENCH_RUN_ROUNDS (4)
 *   rounds (which daemon goes first alternates);
 * - memory with those containers running (first round): the daemon's VmRSS
 *   and Pss, and the shims' summed VmRSS and Pss (every shim process serving
 *   that daemon);
 * - the time to kill and remove them (mean of the rounds), before the
 *   other daemon starts its own.
 *
 * berth runs from a bundle with the packaged V8 flags, as scripts/setup.sh
 * installs it; containerd from ../shared/refenv/containerd under a private
 * REFENV_DIR. Results are printed and written to bench/results/run.txt.
 */
import { startBerthDaemon, TUNED_V8_FLAGS } from "./_berth.ts";
import { busyboxImageArchive } from "../tests/_images.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const REFENV = Deno.env.get("BENCH_REFENV") ?? `${REPO}/../shared/refenv`;
const WARM = Number(Deno.env.get("BENCH_RUN_WARM") ?? 20);
const COUNT = Number(Deno.env.get("BENCH_RUN_CONTAINERS") ?? 20);
/** Even, so that each daemon goes first in as many rounds as the other. */
const ROUNDS = Number(Deno.env.get("BENCH_RUN_ROUNDS") ?? 4);
/**
 * One namespace per daemon: ctr puts a container in the cgroup
 * /NAMESPACE/ID, and with both daemons' containers alive at once, the same
 * names would share cgroups (each runc delete then waits on the other
 * daemon's processes).
 */
const NS = { berth: "bench-b", containerd: "bench-c" };
const IMAGE = "localhost/tasks-bb:latest";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function run(cmd: string, args: string[], env?: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(cmd, { args, ...(env ? { env } : {}), stdin: "null" })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed:\n${text}${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return text;
}

async function timedMs(cmd: string, args: string[]): Promise<number> {
  const t = performance.now();
  await run(cmd, args);
  return performance.now() - t;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

interface Mem {
  rssKb: number;
  pssKb: number;
}

async function memOf(pids: number[]): Promise<Mem> {
  let rssKb = 0, pssKb = 0;
  for (const pid of pids) {
    try {
      rssKb += Number(
        /VmRSS:\s+(\d+)/.exec(await Deno.readTextFile(`/proc/${pid}/status`))?.[1] ?? 0,
      );
      pssKb += Number(
        /^Pss:\s+(\d+)/m.exec(await Deno.readTextFile(`/proc/${pid}/smaps_rollup`))?.[1] ?? 0,
      );
    } catch { /* gone */ }
  }
  return { rssKb, pssKb };
}

/** Pids whose command line contains every one of `needles`. */
async function pidsWith(...needles: string[]): Promise<number[]> {
  const out: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = (await Deno.readTextFile(`/proc/${e.name}/cmdline`)).replaceAll("\0", " ");
      if (needles.every((n) => cmd.includes(n))) out.push(Number(e.name));
    } catch { /* gone */ }
  }
  return out;
}

interface Target {
  name: string;
  daemonPid: number;
  ctr: string[];
  shimPids(): Promise<number[]>;
  cliRun?: string[];
  stop(): Promise<void>;
}

async function startBerth(): Promise<Target> {
  const d = await startBerthDaemon({ prefix: "berth-bench-run-", v8Flags: TUNED_V8_FLAGS });
  return {
    name: "berth",
    daemonPid: d.pid,
    ctr: ["-a", d.sock, "-n", NS.berth],
    shimPids: () => pidsWith(" shim ", `${d.dir}/state`, " serve"),
    cliRun: d.cli("-n", NS.berth, "run", "--rm", IMAGE, "true"),
    stop: d.stop,
  };
}

async function startContainerd(env: Record<string, string>): Promise<Target> {
  const script = `${REFENV}/containerd`;
  await run(script, ["start"], env);
  const pid = Number((await run(script, ["pid"], env)).trim());
  const sock = `${env.REFENV_DIR}/containerd/containerd.sock`;
  return {
    name: "containerd",
    daemonPid: pid,
    ctr: ["-a", sock, "-n", NS.containerd],
    shimPids: () => pidsWith("containerd-shim-runc-v2", sock),
    async stop() {
      await run(script, ["stop"], env).catch((e) => console.error(String(e)));
    },
  };
}

interface Result {
  name: string;
  ctrRunMs: number;
  cliRunMs?: number;
  /** Mean of the rounds. */
  start20Ms: number;
  start20Rounds: number[];
  daemon: Mem;
  shims: Mem;
  shimCount: number;
  teardownMs: number;
  teardownRounds: number[];
}

/** Warm runs per turn: each daemon runs this many back to back, then the other. */
const TURN = 5;

/**
 * Measures both daemons step by step. Within a step they take turns: the
 * warm runs go in turns of {@link TURN} runs, so whatever else the machine
 * does falls on both alike, while each daemon still serves runs back to back
 * as it would in use; the 20 starts and the teardown are one turn each.
 */
async function measure(targets: Target[], archive: string): Promise<Result[]> {
  const ctrRun = (t: Target, id: string) =>
    timedMs("ctr", [...t.ctr, "run", "--rm", IMAGE, id, "true"]);
  for (const t of targets) {
    await run("ctr", [...t.ctr, "images", "import", archive]);
    await ctrRun(t, "warmup");
  }
  const ctrTimes = targets.map(() => [] as number[]);
  for (let done = 0; done < WARM; done += TURN) {
    for (const [k, t] of targets.entries()) {
      for (let i = done; i < Math.min(done + TURN, WARM); i++) {
        ctrTimes[k]!.push(await ctrRun(t, `w${i}`));
      }
    }
  }
  const cliRunMs = new Map<Target, number>();
  for (const t of targets) {
    if (!t.cliRun) continue;
    try {
      await timedMs(Deno.execPath(), t.cliRun);
      const xs: number[] = [];
      for (let i = 0; i < WARM; i++) xs.push(await timedMs(Deno.execPath(), t.cliRun));
      cliRunMs.set(t, median(xs));
    } catch (e) {
      console.error(`bench: berth run not measured: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  // Starts and teardowns in ROUNDS rounds, the daemon going first alternating
  // (going first was worth a few percent); each figure is the mean round. A daemon tears its containers down
  // before the other starts its own, so neither starts among the other's
  // (20 more processes and shims made the second daemon of a round slower).
  // Memory is read in the first round, with the daemon's 20 running.
  const start = targets.map(() => [] as number[]);
  const teardown = targets.map(() => [] as number[]);
  const mem: Array<{ daemon: Mem; shims: Mem; shimCount: number }> = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? [...targets.keys()].reverse() : [...targets.keys()];
    for (const k of order) {
      const t = targets[k]!;
      await run("sync", []);
      const t0 = performance.now();
      for (let i = 0; i < COUNT; i++) {
        await run("ctr", [...t.ctr, "run", "-d", IMAGE, `s${i}`, "sleep", "600"]);
      }
      start[k]!.push(performance.now() - t0);
      if (round === 0) {
        await sleep(2000);
        const shimPids = await t.shimPids();
        mem[k] = {
          daemon: await memOf([t.daemonPid]),
          shims: await memOf(shimPids),
          shimCount: shimPids.length,
        };
      }
      const t1 = performance.now();
      for (let i = 0; i < COUNT; i++) {
        await run("ctr", [...t.ctr, "tasks", "kill", "-s", "SIGKILL", `s${i}`]);
      }
      for (let i = 0; i < COUNT; i++) {
        for (let n = 0; n < 100; n++) {
          try {
            await run("ctr", [...t.ctr, "tasks", "delete", `s${i}`]);
            break;
          } catch {
            await sleep(50);
          }
        }
        await run("ctr", [...t.ctr, "containers", "rm", `s${i}`]);
      }
      teardown[k]!.push(performance.now() - t1);
    }
  }
  return targets.map((t, k) => ({
    name: t.name,
    ctrRunMs: median(ctrTimes[k]!),
    ...(cliRunMs.has(t) ? { cliRunMs: cliRunMs.get(t)! } : {}),
    start20Ms: mean(start[k]!),
    start20Rounds: start[k]!,
    ...mem[k]!,
    teardownMs: mean(teardown[k]!),
    teardownRounds: teardown[k]!,
  }));
}

if (import.meta.main) {
  const dir = await Deno.makeTempDir({ prefix: "berth-bench-run-" });
  const env = { ...Deno.env.toObject(), REFENV_DIR: `${dir}/refenv` };
  const archive = await busyboxImageArchive(`${dir}/image`);
  const berth = await startBerth();
  const ctrd = await startContainerd(env);
  let results: Result[];
  try {
    results = await measure([berth, ctrd], archive);
  } finally {
    await berth.stop();
    await ctrd.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const [b, c] = results as [Result, Result];
  const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;
  const r = (x: number, y: number) => `${(x / y).toFixed(2)}x`;
  const lines = [
    `# berth run benchmark, ${new Date().toISOString()}, ${Deno.build.target}, load ${
      (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ")
    }`,
    `metric                                   berth        containerd   ratio`,
    `ctr run --rm true (median of ${WARM})          ${b.ctrRunMs.toFixed(0).padStart(6)} ms    ${
      c.ctrRunMs.toFixed(0).padStart(6)
    } ms    ${r(b.ctrRunMs, c.ctrRunMs)}`,
    ...(b.cliRunMs
      ? [
        `berth run --rm true vs ctr (median)       ${b.cliRunMs.toFixed(0).padStart(6)} ms    ${
          c.ctrRunMs.toFixed(0).padStart(6)
        } ms    ${r(b.cliRunMs, c.ctrRunMs)}`,
      ]
      : []),
    `start ${COUNT} containers, mean of ${ROUNDS}       ${
      b.start20Ms.toFixed(0).padStart(6)
    } ms    ${c.start20Ms.toFixed(0).padStart(6)} ms    ${r(b.start20Ms, c.start20Ms)}`,
    `daemon RSS / PSS with ${COUNT} running        ${mb(b.daemon.rssKb)} / ${
      mb(b.daemon.pssKb)
    }   ${mb(c.daemon.rssKb)} / ${mb(c.daemon.pssKb)}   ${r(b.daemon.pssKb, c.daemon.pssKb)} (PSS)`,
    `shims (${b.shimCount} vs ${c.shimCount}) RSS / PSS summed        ${mb(b.shims.rssKb)} / ${
      mb(b.shims.pssKb)
    }   ${mb(c.shims.rssKb)} / ${mb(c.shims.pssKb)}   ${r(b.shims.pssKb, c.shims.pssKb)} (PSS)`,
    `daemon + shims PSS                       ${mb(b.daemon.pssKb + b.shims.pssKb)}      ${
      mb(c.daemon.pssKb + c.shims.pssKb)
    }      ${r(b.daemon.pssKb + b.shims.pssKb, c.daemon.pssKb + c.shims.pssKb)}`,
    `teardown of ${COUNT}, mean of ${ROUNDS}              ${
      b.teardownMs.toFixed(0).padStart(6)
    } ms    ${c.teardownMs.toFixed(0).padStart(6)} ms    ${r(b.teardownMs, c.teardownMs)}`,
    `# rounds, ms (berth | containerd): starts ${b.start20Rounds.map((x) => x.toFixed(0))} | ${
      c.start20Rounds.map((x) => x.toFixed(0))
    }; teardowns ${b.teardownRounds.map((x) => x.toFixed(0))} | ${
      c.teardownRounds.map((x) => x.toFixed(0))
    }`,
  ];
  console.log(lines.join("\n"));
  await Deno.mkdir(`${REPO}/bench/results`, { recursive: true });
  await Deno.writeTextFile(`${REPO}/bench/results/run.txt`, lines.join("\n") + "\n");
}
