/** A private, real containerd 1.6 (Debian's) for side-by-side tests. */
import { run } from "./_harness.ts";

export interface Containerd extends AsyncDisposable {
  sock: string;
  dir: string;
  ctr(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** A private containerd 1.6 (Debian's) on a temp root; killed and removed on dispose. */
export async function startContainerd(namespace: string): Promise<Containerd> {
  const dir = await Deno.makeTempDir({ prefix: "berth-spec-cd-" });
  const sock = `${dir}/containerd.sock`;
  await Deno.writeTextFile(
    `${dir}/config.toml`,
    `version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
]
[grpc]
  address = "${sock}"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "${dir}/opt"
`,
  );
  const log = await Deno.open(`${dir}/containerd.log`, { write: true, create: true });
  const child = new Deno.Command("/usr/bin/containerd", {
    args: ["--config", `${dir}/config.toml`],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logDone = child.stderr.pipeTo(log.writable);
  const ctr = (args: string[]) => run("ctr", ["--address", sock, "-n", namespace, ...args]);
  let up = false;
  for (let i = 0; i < 200 && !up; i++) {
    up = (await ctr(["version"])).code === 0;
    if (!up) await new Promise((r) => setTimeout(r, 50));
  }
  const dispose = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
    await logDone.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  };
  if (!up) {
    const text = await Deno.readTextFile(`${dir}/containerd.log`).catch(() => "");
    await dispose();
    throw new Error(`containerd did not start:\n${text}`);
  }
  return { sock, dir, ctr, [Symbol.asyncDispose]: dispose };
}
