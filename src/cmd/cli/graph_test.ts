/**
 * The CLI's module graphs stay small: every `berth <verb>` is a short-lived
 * process, and each module it loads costs start-up time. Measured in source
 * mode on the 2-core VM (CPU ms over an empty script): @bufbuild/protobuf with
 * the generated code ~90, node's compat layer (first node: module, even
 * node:path) ~30, grpc-js far more. So:
 *
 * - mod.ts (what `berth --help` loads) reaches no npm package and no node:
 *   module at all;
 * - no verb reaches grpc-js, node's heavy modules, or the daemon's own modules
 *   (stores, sqlite, unpacker, services), statically or through the dynamic
 *   imports it makes while it runs.
 */
import assert from "node:assert/strict";
import { DEFAULT_ADDRESS as CONFIG_DEFAULT_ADDRESS } from "../../config/config.ts";
import { DEFAULT_ADDRESS } from "./mod.ts";

const HERE = new URL(".", import.meta.url);
const SRC = new URL("../../", import.meta.url).href;

interface Info {
  roots: string[];
  modules: { specifier: string; dependencies?: Dep[] }[];
  redirects?: Record<string, string>;
}
interface Dep {
  code?: { specifier: string };
  isDynamic?: boolean;
}

async function info(file: URL): Promise<Info> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", file.pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/**
 * Every module reachable from the root (dynamic imports only when `dynamic`),
 * each with the modules that import it.
 */
function reachable(g: Info, dynamic: boolean): Map<string, Set<string>> {
  const mods = new Map(g.modules.map((m) => [m.specifier, m]));
  const resolve = (s: string) => g.redirects?.[s] ?? s;
  const seen = new Map<string, Set<string>>();
  const stack: [string, string][] = [[resolve(g.roots[0]!), ""]];
  while (stack.length > 0) {
    const [s, from] = stack.pop()!;
    const importers = seen.get(s);
    if (importers) {
      importers.add(short(from));
      continue;
    }
    seen.set(s, new Set(from ? [short(from)] : []));
    for (const d of mods.get(s)?.dependencies ?? []) {
      if (d.code && (dynamic || !d.isDynamic)) stack.push([resolve(d.code.specifier), s]);
    }
  }
  return seen;
}

const short = (s: string) => s.startsWith(SRC) ? `src/${s.slice(SRC.length)}` : s;

/** Modules no CLI verb may load. */
const FORBIDDEN_NODE = [
  "node:http2",
  "node:sqlite",
  "node:zlib",
  "node:net",
  "node:crypto",
  "node:util",
  "node:path",
];
const FORBIDDEN_SRC = [
  // src/api/errors.ts (the status <-> kind table, no imports) is allowed.
  "src/api/grpc.ts",
  "src/api/service",
  "src/api/plugins.ts",
  "src/api/ttrpc_server.ts",
  "src/metadata/",
  "src/images/",
  "src/archive/",
  "src/snapshots/",
  "src/remotes/",
  "src/content/store.ts",
  "src/content/writer.ts",
  "src/gc/",
  "src/config/",
  "src/cmd/daemon.ts",
  "src/cmd/shim.ts",
  "src/runtime/manager.ts",
  "src/runtime/shim_client.ts",
];

/**
 * Known offenders outside the CLI's files, allowed until their owners change
 * them (then delete the entry). None now: src/oci's path helpers come from
 * src/util/path.ts.
 */
const KNOWN: Record<string, string[]> = {};

function forbidden(mods: Map<string, Set<string>>): string[] {
  const out: string[] = [];
  for (const [spec, importers] of mods) {
    const s = short(spec);
    const bad = s.includes("@grpc/grpc-js") || FORBIDDEN_NODE.includes(s) ||
      FORBIDDEN_SRC.some((f) => s.startsWith(f));
    if (!bad) continue;
    const unexplained = [...importers].filter((i) => !KNOWN[s]?.includes(i));
    if (unexplained.length > 0) out.push(`${s} (from ${unexplained.sort().join(", ")})`);
  }
  return out.sort();
}

Deno.test("berth --help loads no npm package, no node: module and no daemon code", async () => {
  const g = reachable(await info(new URL("mod.ts", HERE)), false);
  const bad = [...g.keys()].map(short).filter((s) =>
    s.startsWith("npm:") || s.startsWith("node:") || !s.startsWith("src/") ||
    !(s.startsWith("src/cmd/cli/") || s === "src/util/errors.ts")
  );
  assert.deepEqual(bad, [], "mod.ts's static graph");
});

Deno.test("no CLI verb reaches grpc-js, heavy node modules or the daemon's modules", async () => {
  const mod = await Deno.readTextFile(new URL("mod.ts", HERE));
  const verbs = [...new Set([...mod.matchAll(/import\("\.\/(\w+)\.ts"\)/g)].map((m) => m[1]!))];
  assert.ok(verbs.includes("run") && verbs.includes("client") && verbs.length > 10, verbs.join());
  const problems: Record<string, string[]> = {};
  for (const v of verbs) {
    const bad = forbidden(reachable(await info(new URL(`${v}.ts`, HERE)), true));
    if (bad.length > 0) problems[v] = bad;
  }
  assert.deepEqual(problems, {});
});

Deno.test("the CLI's default address is the daemon's", () => {
  assert.equal(DEFAULT_ADDRESS, CONFIG_DEFAULT_ADDRESS);
});
