/**
 * `deno task bundle` (scripts/bundle.sh) builds the whole program into one
 * directory: main.js and the chunks it loads. Proof that it stands alone: the
 * directory, copied somewhere empty (no source tree, no node_modules, no
 * .proto files) and run with an empty Deno cache that may not fetch anything,
 * serves the daemon, answers its own CLI and Debian's ctr.
 */
import assert from "node:assert/strict";
import { ok, REPO, run, waitFor } from "./_harness.ts";

/** Runs scripts/bundle.sh, the `bundle` task's script, with output in `out`. */
async function bundle(out: string): Promise<void> {
  const task: string = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`)).tasks.bundle;
  assert.equal(task, "bash scripts/bundle.sh");
  ok(await run("bash", [`${REPO}/scripts/bundle.sh`, out]), task);
}

Deno.test("the bundle runs daemon and CLI alone from an empty directory", async () => {
  await using tmp = await tempDir();
  const empty = `${tmp.path}/empty`;
  const data = `${tmp.path}/data`;
  const cache = `${tmp.path}/deno-dir`;
  await bundle(`${tmp.path}/build`);
  await Deno.mkdir(empty);
  await Deno.mkdir(cache);
  const built = [...Deno.readDirSync(`${tmp.path}/build`)].map((e) => e.name).sort();
  assert.ok(built.includes("main.js"), `no main.js in the build: ${built.join(" ")}`);
  for (const f of built) await Deno.copyFile(`${tmp.path}/build/${f}`, `${empty}/${f}`);

  const sock = `${data}/state/berth.sock`;
  // A fresh DENO_DIR and --cached-only: anything the bundle would fetch or
  // resolve from npm at run time fails instead of being quietly downloaded.
  const env = {
    DENO_DIR: cache,
    DENO_NO_UPDATE_CHECK: "1",
    NO_COLOR: "1",
    // What scripts/setup.sh's launcher sets.
    DENO_UNSTABLE_LAZY_DYNAMIC_IMPORTS: "1",
  };
  const deno = (args: string[]) =>
    run(Deno.execPath(), ["run", "-A", "--cached-only", "main.js", ...args], { cwd: empty, env });
  const daemon = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--cached-only",
      "main.js",
      "daemon",
      "--root",
      `${data}/root`,
      "--state",
      `${data}/state`,
      "--address",
      sock,
    ],
    cwd: empty,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = daemon.output();
  let exited = false;
  output.then(() => (exited = true));
  const logs = async () => {
    const o = await output;
    return new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
  };
  try {
    await waitFor("the bundled daemon's socket", async () => {
      if (exited) throw new Error(`the bundled daemon exited:\n${await logs()}`);
      try {
        (await Deno.connect({ transport: "unix", path: sock })).close();
        return true;
      } catch {
        return false;
      }
    }, 30_000);

    const v = ok(await deno(["-a", sock, "version"]), "main.js version");
    assert.match(v.stdout, /Client:\s+Version:\s+\S+/);
    assert.match(v.stdout, /Server:\s+Version:\s+\S+/);
    const c = ok(await run("ctr", ["-a", sock, "version"]), "ctr version");
    assert.match(c.stdout, /Server:\s+Version:\s+\S+\s+Revision:\s+\S+\s+UUID: [0-9a-f-]{36}/);
    // A lazily loaded verb and the SQLite store, through the bundle.
    ok(await deno(["-a", sock, "namespaces", "create", "bundled", "from=bundle"]), "ns create");
    const ls = ok(await run("ctr", ["-a", sock, "namespaces", "ls"]), "ctr namespaces ls");
    assert.match(ls.stdout, /^bundled\s+from=bundle\s*$/m);
    // Nothing appeared beside the bundle.
    assert.deepEqual([...Deno.readDirSync(empty)].map((e) => e.name).sort(), built);
  } finally {
    if (!exited) daemon.kill("SIGTERM");
  }
  const st = await output;
  assert.equal(st.code, 0, `the bundled daemon's exit code:\n${await logs()}`);
});

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "berth-bundle-" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}
