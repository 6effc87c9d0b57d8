/**
 * Cold pull benchmark: berth against containerd 1.6.20 on the same machine,
 * the same registry and the same images (`deno task bench:pull`, as root).
 *
 * The refenv scripts (../shared/refenv) build `busybox` and `big`
 * (REFENV_BIG_MB, default 200) under a private REFENV_DIR and push them to a
 * registry of their own on a free port; containerd runs from refenv's
 * `containerd start` on that REFENV_DIR. berth runs as a daemon on a temp dir
 * with the packaged V8 flags (bench/mod.ts, TUNED_V8_FLAGS).
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
import { TUNED_V8_FLAGS } from "./mod.ts";
import { Client } from "../src/cmd/cli/client.ts";
import { Transfer } from "../src/gen/berth/images/v1/transfer_pb.ts";
import { Images } from "../src/gen/containerd/services/images/v1/images_pb.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const REFENV = Deno.env.get("BENCH_REFENV") ?? `${REPO}/../shared/refenv`;
const RUNS = Number(Deno.env.get("BENCH_PULL_RUNS") ?? 3);
const BIG_MB = Deno.env.get("REFENV_BIG_MB") ?? "200";
const IMAGES = (Deno.env.get("BENCH_PULL_IMAGES") ?? "busybox,big").split(",");
const NS = "bench";

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

/** A daemon under test: how to delete an image cold and how to pull it. */
interface Target {
  name: string;
  pid: number;
  /** Removes the image and everything it holds; throws if content is left. */
  clean(ref: string): Promise<void>;
  /** Pulls; returns the wall time in ms. */
  pull(ref: string): Promise<number>;
  stop(): Promise<void>;
}

async function startBerth(): Promise<Target & { rpcPull(ref: string): Promise<number> }> {
  const dir = await Deno.makeTempDir({ prefix: "berth-bench-pull-" });
  const sock = `${dir}/state/berth.sock`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--v8-flags=${TUNED_V8_FLAGS}`,
      `${REPO}/main.ts`,
      "daemon",
      "--root",
      `${dir}/root`,
      "--state",
      `${dir}/state`,
      "--address",
      sock,
      "--log-level",
      "warn",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  let alive = true;
  child.status.then(() => (alive = false));
  const berth = (...args: string[]) =>
    run(Deno.execPath(), ["run", "-A", `${REPO}/main.ts`, "-a", sock, "-n", NS, ...args]);
  const stop = async () => {
    if (alive) child.kill("SIGTERM");
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const end = Date.now() + 30_000;
  for (;;) {
    if (!alive) throw new Error("berth exited before it served");
    try {
      (await Deno.connect({ transport: "unix", path: sock })).close();
      break;
    } catch {
      if (Date.now() > end) {
        await stop();
        throw new Error(`Timed out waiting for ${sock}`);
      }
      await sleep(50);
    }
  }
  const client = new Client({ address: sock, namespace: NS });
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
      const t = performance.now();
      await berth("pull", "-q", ref);
      return performance.now() - t;
    },
    async rpcPull(ref) {
      const t = performance.now();
      let done = false;
      for await (const msg of client.stream(Transfer, "pull", { reference: ref })) {
        if (msg.image) done = true;
      }
      if (!done) throw new Error(`berth: pull of ${ref} gave no image`);
      const ms = performance.now() - t;
      await client.call(Images, "get", { name: ref });
      return ms;
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
      const t = performance.now();
      await ctr("images", "pull", "--plain-http", ref);
      return performance.now() - t;
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

async function main(): Promise<void> {
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

    const times: Record<string, Record<string, number[]>> = {};
    const peaks: Record<string, number[]> = { berth: [], containerd: [] };
    const rpc: Record<string, number[]> = {};
    for (const image of IMAGES) {
      const ref = `localhost:${port}/${image}:latest`;
      times[image] = { berth: [], containerd: [] };
      rpc[image] = [];
      // One warm-up pull each, not timed: first-use costs (JIT, page cache of the registry's blobs).
      for (const t of targets) {
        await t.clean(ref);
        await t.pull(ref);
      }
      for (let i = 0; i < RUNS; i++) {
        for (const t of targets) {
          await t.clean(ref);
          await run("sync", []);
          await sleep(500);
          const [ms, peak] = await withPeak(t.pid, () => t.pull(ref));
          times[image]![t.name]!.push(ms);
          if (image === "big") peaks[t.name]!.push(peak);
          console.error(`bench: ${image} ${t.name} run ${i + 1}: ${fmtS(ms)}`);
        }
        // berth's pull without the CLI: the RPC alone.
        await berth.clean(ref);
        await run("sync", []);
        await sleep(500);
        rpc[image]!.push(await berth.rpcPull(ref));
      }
      await berth.clean(ref);
      await containerd.clean(ref);
    }

    const host = (await Deno.readTextFile("/proc/cpuinfo")).match(/^processor/gm)?.length ?? 0;
    lines.push(
      `# berth pull benchmark, ${new Date().toISOString()}`,
      `# ${Deno.build.target}, ${host} CPUs, Deno ${Deno.version.deno}, kernel ${
        (await Deno.readTextFile("/proc/sys/kernel/osrelease")).trim()
      }`,
      `# cold pulls from one local registry (refenv images), median of ${RUNS} runs each,` +
        ` daemons taking turns; before each run: image deleted with GC, content store empty, sync`,
      `# berth: \`berth pull -q\` wall time (CLI start-up included) and the Transfer/Pull RPC alone;` +
        ` containerd 1.6.20: \`ctr images pull --plain-http\`; both unpack into overlayfs`,
      `# images (refenv table):`,
      ...table.trim().split("\n").map((l) => `#   ${l}`),
      "",
      `${"image".padEnd(10)}${"berth pull".padStart(12)}${"berth RPC".padStart(12)}${
        "containerd".padStart(12)
      }${"berth/ctrd".padStart(12)}${"RPC/ctrd".padStart(10)}   runs (berth | containerd)`,
    );
    for (const image of IMAGES) {
      const b = median(times[image]!.berth!);
      const c = median(times[image]!.containerd!);
      const r = median(rpc[image]!);
      lines.push(
        `${image.padEnd(10)}${fmtS(b).padStart(12)}${fmtS(r).padStart(12)}${fmtS(c).padStart(12)}${
          `${(b / c).toFixed(2)}x`.padStart(12)
        }${`${(r / c).toFixed(2)}x`.padStart(10)}   ${
          times[image]!.berth!.map((x) => (x / 1000).toFixed(2)).join(" ")
        } | ${times[image]!.containerd!.map((x) => (x / 1000).toFixed(2)).join(" ")}`,
      );
    }
    if (peaks.berth!.length) {
      lines.push(
        "",
        `peak RSS during the big pull (VmHWM, reset before each pull; max of the runs):` +
          ` berth ${fmtMb(Math.max(...peaks.berth!))}, containerd ${
            fmtMb(Math.max(...peaks.containerd!))
          }`,
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
  // The in-process gRPC client keeps its channel; exit instead of closing it (see bench/client.ts).
  Deno.exit(0);
}

if (import.meta.main) await main();
