/**
 * Cold pull benchmark: berth against containerd 1.6.20 on the same machine,
 * the same registry and the same images (`deno task bench:pull`, as root).
 *
 * The refenv scripts (../shared/refenv) build `busybox` and `big`
 * (REFENV_BIG_MB, default 200) under a private REFENV_DIR and push them to a
 * registry of their own on a free port; containerd runs from refenv's
 * `containerd start` on that REFENV_DIR. berth runs as a daemon on a temp dir,
 * from scripts/bundle.sh's bundle (as scripts/setup.sh installs it), with the
 * packaged V8 flags (bench/mod.ts, TUNED_V8_FLAGS).
 *
 * Each run is cold: before it, the image is deleted with its content and
 * snapshots collected (`berth rmi`, which runs GC; `ctr images rm --sync`),
 * the content store is checked to be empty, and `sync` flushes the previous
 * run's writes and discards (see refenv's README, "Cold pulls"). The two
 * daemons take turns, run by run, so changing load falls on both alike.
 *
 * Timed: the wall time of the user's command, `berth pull -q REF` and
 * `ctr images pull --plain-http REF` (fetch, verify, unpack into overlayfs,
 * record). For berth the time of the Transfer/Pull call alone is also
 * recorded (a client in this process), which leaves out the CLI's start-up.
 * During the big pulls each daemon's peak RSS is taken: VmHWM is reset through
 * /proc/PID/clear_refs before the pull and read after it.
 *
 * Results are printed and written to bench/results/pull.txt.
 * Environment: BENCH_PULL_RUNS (3), REFENV_BIG_MB (200), BENCH_REFENV (path of
 * the refenv scripts), BENCH_PULL_IMAGES (busybox,big).
 */
import { startBerthDaemon, TUNED_V8_FLAGS } from "./_berth.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const REFENV = Deno.env.get("BENCH_REFENV") ?? `${REPO}/../shared/refenv`;
const RUNS = Number(Deno.env.get("BENCH_PULL_RUNS") ?? 3);
const BIG_MB = Deno.env.get("REFENV_BIG_MB") ?? "200";
const IMAGES = (Deno.env.get("BENCH_PULL_IMAGES") ?? "busybox,big").split(",");
const NS = "bench";
/** How berth runs: `bundle` (as installed by scripts/setup.sh) or `source` (main.ts). */
const ENTRY_MODE = Deno.env.get("BENCH_BERTH_ENTRY") ?? "bundle";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
      `${cmd} ${args.join(" ")} exited ${out.code}: ${text}${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return text;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function statusKb(pid: number, field: string): Promise<number> {
  const m = (await Deno.readTextFile(`/proc/${pid}/status`)).match(
    new RegExp(`^${field}:\\s+(\\d+) kB`, "m"),
  );
  return m ? Number(m[1]) : 0;
}

/** User + system CPU time of a process so far, in ms (/proc/PID/stat, in clock ticks). */
async function cpuMsOf(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10; // utime, stime; USER_HZ is 100
}

/** One timed pull: wall time, and CPU time of the client command plus the daemon. */
interface Sample {
  wallMs: number;
  cpuMs: number;
}

/** Runs a command under /usr/bin/time; returns its wall and CPU (user + sys) ms. */
async function timed(cmd: string, args: string[], env?: Record<string, string>): Promise<Sample> {
  const out = await Deno.makeTempFile({ prefix: "berth-bench-time-" });
  try {
    await run("/usr/bin/time", ["-f", "%e %U %S", "-o", out, cmd, ...args], env);
    const [e, u, s] = (await Deno.readTextFile(out)).trim().split("\n").at(-1)!.split(" ").map(
      Number,
    );
    return { wallMs: e! * 1000, cpuMs: (u! + s!) * 1000 };
  } finally {
    await Deno.remove(out).catch(() => {});
  }
}

/** A daemon under test: how to delete an image cold and how to pull it. */
interface Target {
  name: string;
  pid: number;
  /** Removes the image and everything it holds; throws if content is left. */
  clean(ref: string): Promise<void>;
  /** Pulls with the user's command. */
  pull(ref: string): Promise<Sample>;
  stop(): Promise<void>;
}

/** What the RPC-only client (this file with --client) reports. */
interface RpcResult {
  ms: number;
  /** From the first byte requested to the last layer downloaded. */
  fetchMs: number;
  /** From the first layer unpacking to the last unpacked. */
  unpackMs: number;
  /** Time after the last layer was unpacked until the image was recorded. */
  tailMs: number;
}

async function startBerth(): Promise<Target & { rpcPull(ref: string): Promise<RpcResult> }> {
  // As scripts/setup.sh installs it: split into chunks, which is also how the
  // layer-apply worker's module ships (src/images/apply_pool.ts).
  const d = await startBerthDaemon({
    prefix: "berth-bench-pull-",
    entry: ENTRY_MODE === "bundle" ? "bundle" : "source",
    v8Flags: TUNED_V8_FLAGS,
  });
  console.error(`bench: berth from ${ENTRY_MODE === "bundle" ? "a bundle of" : ""} main.ts`);
  const child = { pid: d.pid };
  const sock = d.sock;
  const cli = (...args: string[]) => d.cli("-n", NS, ...args);
  const berth = (...args: string[]) => run(Deno.execPath(), cli(...args));
  const stop = d.stop;
  return {
    name: "berth",
    pid: child.pid,
    async clean(ref) {
      const names = (await berth("images", "-q")).trim().split("\n").filter(Boolean);
      if (names.includes(ref)) await berth("rmi", ref);
      const left = (await berth("content", "ls", "-q")).trim();
      if (left) throw new Error(`berth: content left after rmi:\n${left}`);
    },
    async pull(ref) {
      const before = await cpuMsOf(child.pid);
      const s = await timed(Deno.execPath(), cli("pull", "-q", ref));
      return { wallMs: s.wallMs, cpuMs: s.cpuMs + (await cpuMsOf(child.pid)) - before };
    },
    async rpcPull(ref) {
      const out = await run(Deno.execPath(), [
        "run",
        "-A",
        import.meta.filename!,
        "--client",
        sock,
        ref,
      ]);
      return JSON.parse(out.trim().split("\n").at(-1)!) as RpcResult;
    },
    stop,
  };
}

async function startContainerd(env: Record<string, string>): Promise<Target> {
  const script = `${REFENV}/containerd`;
  const stop = async () => {
    await run(script, ["stop"], env).catch((e) => console.error(String(e)));
  };
  await run(script, ["start"], env);
  const pid = Number((await run(script, ["pid"], env)).trim());
  const version = (await run(script, ["ctr", "version"], env)).match(
    /Server:\s+Version:\s+(\S+)/,
  )?.[1];
  console.error(`bench: containerd ${version ?? "?"} (pid ${pid})`);
  const ctr = (...args: string[]) => run(script, ["ctr", "-n", NS, ...args], env);
  return {
    name: "containerd",
    pid,
    async clean(ref) {
      const names = (await ctr("images", "ls", "-q")).trim().split("\n");
      if (names.includes(ref)) await ctr("images", "rm", "--sync", ref);
      const left = (await ctr("content", "ls", "-q")).trim();
      if (left) throw new Error(`containerd: content left after rm --sync:\n${left}`);
    },
    async pull(ref) {
      const before = await cpuMsOf(pid);
      const s = await timed("ctr", [
        "--address",
        `${env.REFENV_DIR}/containerd/containerd.sock`,
        "-n",
        NS,
        "images",
        "pull",
        "--plain-http",
        ref,
      ]);
      return { wallMs: s.wallMs, cpuMs: s.cpuMs + (await cpuMsOf(pid)) - before };
    },
    stop,
  };
}

/** Runs `fn` with the daemon's VmHWM reset first; returns its result and the peak RSS in kB. */
async function withPeak<T>(pid: number, fn: () => Promise<T>): Promise<[T, number]> {
  await Deno.writeTextFile(`/proc/${pid}/clear_refs`, "5");
  const r = await fn();
  return [r, await statusKb(pid, "VmHWM")];
}

const fmtS = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const fmtMb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;

/**
 * The RPC-only client, run as its own process: one Transfer/Pull call, timed
 * from the request to the final message, with the per-layer states the
 * progress stream reports. Prints one JSON line and exits without closing the
 * channel (see bench/client.ts on GOAWAY in Deno's node:http2).
 */
async function clientMain(sock: string, ref: string): Promise<never> {
  const { Client } = await import("../src/cmd/cli/client.ts");
  const { Transfer } = await import("../src/gen/berth/images/v1/transfer_pb.ts");
  const c = new Client({ address: sock, namespace: NS });
  const first = new Map<string, number>();
  const mark = (state: string, t: number) => {
    if (!first.has(`first:${state}`)) first.set(`first:${state}`, t);
    first.set(`last:${state}`, t);
  };
  const seen = new Map<string, string>();
  const t0 = performance.now();
  let done = false;
  for await (const msg of c.stream(Transfer, "pull", { reference: ref })) {
    const t = performance.now() - t0;
    for (const b of msg.blobs) {
      if (seen.get(b.digest) === b.state) continue;
      seen.set(b.digest, b.state);
      if (!b.mediaType.includes("layer")) continue;
      mark(b.state, t);
    }
    if (msg.image) done = true;
  }
  const ms = performance.now() - t0;
  if (!done) throw new Error(`pull of ${ref} gave no image`);
  const g = (k: string) => first.get(k) ?? 0;
  const fetchEnd = Math.max(g("last:done"), g("last:exists"));
  const out: RpcResult = {
    ms,
    fetchMs: fetchEnd - g("first:downloading"),
    unpackMs: g("last:unpacked") - g("first:unpacking"),
    tailMs: ms - g("last:unpacked"),
  };
  console.log(JSON.stringify(out));
  Deno.exit(0);
}

async function main(): Promise<void> {
  if (Deno.args[0] === "--client") await clientMain(Deno.args[1]!, Deno.args[2]!);
  if (Deno.uid() !== 0) throw new Error("The benchmark runs containerd and needs root");
  const refenvDir = await Deno.makeTempDir({ prefix: "berth-bench-pull-refenv-" });
  const port = freePort();
  const env = {
    REFENV_DIR: refenvDir,
    REFENV_REGISTRY_PORT: String(port),
    REFENV_REGISTRY_AUTH_PORT: String(freePort()),
    REFENV_BIG_MB: BIG_MB,
    REFENV_CONTAINERD_LOG_LEVEL: "warn",
  };
  const targets: Target[] = [];
  const lines: string[] = [];
  try {
    console.error(`bench: building ${IMAGES.join(", ")} with refenv (big = ${BIG_MB} MiB)`);
    const table = await run(`${REFENV}/images`, IMAGES, env);
    const berth = await startBerth();
    targets.push(berth);
    const containerd = await startContainerd(env);
    targets.push(containerd);

    const samples: Record<string, Record<string, Sample[]>> = {};
    const peaks: Record<string, number[]> = { berth: [], containerd: [] };
    const rpc: Record<string, RpcResult[]> = {};
    const cold = async (t: Target, ref: string) => {
      await t.clean(ref);
      await run("sync", []);
      await sleep(500);
    };
    for (const image of IMAGES) {
      const ref = `localhost:${port}/${image}:latest`;
      samples[image] = { berth: [], containerd: [] };
      rpc[image] = [];
      // One pull each, not timed: first-use costs (JIT, the registry's page cache).
      for (const t of targets) {
        await t.clean(ref);
        await t.pull(ref);
      }
      for (let i = 0; i < RUNS; i++) {
        for (const t of targets) {
          await cold(t, ref);
          const [s, peak] = await withPeak(t.pid, () => t.pull(ref));
          samples[image]![t.name]!.push(s);
          if (image === "big") peaks[t.name]!.push(peak);
          console.error(
            `bench: ${image} ${t.name} run ${i + 1}: ${fmtS(s.wallMs)} wall, ${fmtS(s.cpuMs)} CPU`,
          );
        }
        // berth's pull without the CLI: the RPC alone, with its phases.
        await cold(berth, ref);
        const r = await berth.rpcPull(ref);
        rpc[image]!.push(r);
        console.error(
          `bench: ${image} berth RPC run ${i + 1}: ${fmtS(r.ms)} (fetch ${fmtS(r.fetchMs)}, ` +
            `unpack ${fmtS(r.unpackMs)}, after unpack ${fmtS(r.tailMs)})`,
        );
      }
      await berth.clean(ref);
      await containerd.clean(ref);
    }

    const host = (await Deno.readTextFile("/proc/cpuinfo")).match(/^processor/gm)?.length ?? 0;
    const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
    lines.push(
      `# berth pull benchmark, ${new Date().toISOString()}`,
      `# ${Deno.build.target}, ${host} CPUs, Deno ${Deno.version.deno}, kernel ${
        (await Deno.readTextFile("/proc/sys/kernel/osrelease")).trim()
      }, load average at the end ${load}`,
      `# cold pulls from one local registry (refenv images), median of ${RUNS} runs each,` +
        ` daemons taking turns; before each run: image deleted with GC, content store empty, sync`,
      `# berth (${ENTRY_MODE}): \`berth pull -q\`; containerd 1.6.20: \`ctr images pull` +
        ` --plain-http\`; both unpack into overlayfs. CPU = the command's user+sys plus the` +
        ` daemon's. RPC = berth's Transfer/Pull alone (no CLI start-up), with its phases`,
      `# images (refenv table):`,
      ...table.trim().split("\n").filter((l) => !l.includes("not in registry")).map((l) =>
        `#   ${l}`
      ),
      "",
      [
        "image".padEnd(9),
        "berth".padStart(9),
        "ctrd".padStart(9),
        "ratio".padStart(7),
        "berth CPU".padStart(11),
        "ctrd CPU".padStart(10),
        "ratio".padStart(7),
        "RPC".padStart(9),
        "ratio".padStart(7),
        "  RPC fetch / unpack / after",
      ].join(""),
    );
    for (const image of IMAGES) {
      const ss = samples[image]!;
      const bw = median(ss.berth!.map((x) => x.wallMs));
      const cw = median(ss.containerd!.map((x) => x.wallMs));
      const bc = median(ss.berth!.map((x) => x.cpuMs));
      const cc = median(ss.containerd!.map((x) => x.cpuMs));
      const r = rpc[image]!;
      const rm = median(r.map((x) => x.ms));
      lines.push(
        [
          image.padEnd(9),
          fmtS(bw).padStart(9),
          fmtS(cw).padStart(9),
          `${(bw / cw).toFixed(2)}x`.padStart(7),
          fmtS(bc).padStart(11),
          fmtS(cc).padStart(10),
          `${(bc / cc).toFixed(2)}x`.padStart(7),
          fmtS(rm).padStart(9),
          `${(rm / cw).toFixed(2)}x`.padStart(7),
          `  ${fmtS(median(r.map((x) => x.fetchMs)))} / ${
            fmtS(median(r.map((x) => x.unpackMs)))
          } / ${fmtS(median(r.map((x) => x.tailMs)))}`,
        ].join(""),
      );
    }
    lines.push("", "runs, wall s (berth | containerd | berth RPC):");
    for (const image of IMAGES) {
      const f = (xs: number[]) => xs.map((x) => (x / 1000).toFixed(2)).join(" ");
      lines.push(
        `  ${image}: ${f(samples[image]!.berth!.map((x) => x.wallMs))} | ${
          f(samples[image]!.containerd!.map((x) => x.wallMs))
        } | ${f(rpc[image]!.map((x) => x.ms))}`,
      );
    }
    if (peaks.berth!.length) {
      lines.push(
        "",
        `peak RSS of the daemon during the big pull (VmHWM reset before each pull; max of the` +
          ` runs): berth ${fmtMb(Math.max(...peaks.berth!))}, containerd ${
            fmtMb(Math.max(...peaks.containerd!))
          } (ctr, which fetches client-side, not counted)`,
      );
    }
  } finally {
    for (const t of targets.reverse()) await t.stop();
    await run(`${REFENV}/registry`, ["stop"], env).catch((e) => console.error(String(e)));
    await Deno.remove(refenvDir, { recursive: true }).catch(() => {});
  }
  const text = lines.join("\n") + "\n";
  console.log(text);
  await Deno.mkdir(`${REPO}/bench/results`, { recursive: true });
  await Deno.writeTextFile(`${REPO}/bench/results/pull.txt`, text);
  console.error("bench: wrote bench/results/pull.txt");
}

if (import.meta.main) await main();
