/**
 * The CLI: `berth [--address SOCK] [--namespace NS] <verb> ...`.
 * Each verb lives in its own file and is loaded only when called, so a call
 * pays only for what it uses; the daemon client (protobuf, ttrpc) loads with
 * the verb, and `--help` loads nothing. graph_test.ts keeps it that way.
 */
import { formatError } from "../../util/errors.ts";
import type { Command, Globals } from "./command.ts";
import { HelpRequested, UsageError } from "./command.ts";
import type { Client } from "./client.ts";

/**
 * The daemon's default socket: config.ts's DEFAULT_ADDRESS, repeated here so
 * the CLI does not load the config parser (graph_test.ts checks they agree).
 */
export const DEFAULT_ADDRESS = "/run/berth/berth.sock";

/** Verb name → loader. Aliases map to the same loader. */
const VERBS: Record<string, () => Promise<Command>> = {
  version: async () => (await import("./version.ts")).versionCommand,
  info: async () => (await import("./info.ts")).infoCommand,
  namespaces: async () => (await import("./namespaces.ts")).namespacesCommand,
  content: async () => (await import("./content.ts")).contentCommand,
  leases: async () => (await import("./leases.ts")).leasesCommand,
  events: async () => (await import("./events.ts")).eventsCommand,
  snapshots: async () => (await import("./snapshots.ts")).snapshotsCommand,
  pull: async () => (await import("./pull.ts")).pullCommand,
  images: async () => (await import("./images.ts")).imagesCommand,
  rmi: async () => (await import("./images.ts")).rmiCommand,
  import: async () => (await import("./import.ts")).importCommand,
  export: async () => (await import("./export.ts")).exportCommand,
  mount: async () => (await import("./mount.ts")).mountCommand,
  unmount: async () => (await import("./mount.ts")).unmountCommand,
  run: async () => (await import("./run.ts")).runCommand,
  exec: async () => (await import("./exec.ts")).execCommand,
  logs: async () => (await import("./logs.ts")).logsCommand,
  ps: async () => (await import("./lifecycle.ts")).psCommand,
  stop: async () => (await import("./lifecycle.ts")).stopCommand,
  kill: async () => (await import("./lifecycle.ts")).killCommand,
  start: async () => (await import("./lifecycle.ts")).startCommand,
  restart: async () => (await import("./lifecycle.ts")).restartCommand,
  rm: async () => (await import("./lifecycle.ts")).rmCommand,
  pause: async () => (await import("./lifecycle.ts")).pauseCommand,
  unpause: async () => (await import("./lifecycle.ts")).unpauseCommand,
  wait: async () => (await import("./lifecycle.ts")).waitCommand,
  inspect: async () => (await import("./lifecycle.ts")).inspectCommand,
  top: async () => (await import("./lifecycle.ts")).topCommand,
  stats: async () => (await import("./lifecycle.ts")).statsCommand,
};
const ALIASES: Record<string, string> = {
  ns: "namespaces",
  namespace: "namespaces",
  lease: "leases",
  snapshot: "snapshots",
  image: "images",
};

/** One line per verb for the top-level help; kept here so --help loads nothing. */
const SUMMARIES: Array<[string, string]> = [
  ["version", "Print the client and daemon versions"],
  ["info", "Show the daemon's identity and plugins"],
  ["namespaces", "Manage namespaces (ls, create, rm, label)"],
  ["content", "Manage content blobs (ls, get, ingest, rm, label)"],
  ["leases", "Manage leases (ls, create, rm)"],
  ["events", "Stream the daemon's events"],
  ["snapshots", "Manage snapshots (ls, info, rm, mounts, usage, prepare, view, commit)"],
  ["pull", "Pull an image from a registry, with progress"],
  ["images", "Manage images (ls, rm, tag, inspect)"],
  ["rmi", "Remove images"],
  ["import", "Import images from an OCI layout or docker save tar"],
  ["export", "Export images to an OCI layout (or Docker) tar"],
  ["mount", "Mount an image's root filesystem on a directory"],
  ["unmount", "Unmount a directory mounted by berth mount"],
  ["run", "Run a command in a new container"],
  ["exec", "Run a command in a running container"],
  ["logs", "Show a container's output"],
  ["ps", "List containers"],
  ["stop", "Stop containers (stop signal, then SIGKILL)"],
  ["kill", "Send a signal to containers"],
  ["start", "Start stopped containers"],
  ["restart", "Restart containers"],
  ["rm", "Remove containers"],
  ["pause", "Pause containers"],
  ["unpause", "Unpause containers"],
  ["wait", "Wait for containers and print their exit codes"],
  ["inspect", "Show containers and their tasks as JSON"],
  ["top", "Show the processes of a container"],
  ["stats", "Show containers' resource usage"],
];

export const MAIN_HELP = `Usage: berth [global options] <command> [args]

berth is a container runtime: one program that is the daemon, the CLI and the shim.

Commands:
  daemon        Run the daemon (see berth daemon --help)
${SUMMARIES.map(([n, s]) => `  ${n.padEnd(14)}${s}`).join("\n")}

Global options:
  -a, --address SOCK     daemon socket [$BERTH_ADDRESS or ${DEFAULT_ADDRESS}]
  -n, --namespace NS     namespace [$BERTH_NAMESPACE or default]
  -h, --help             show help (also after any command)
  -v, --version          print the client version

Run 'berth <command> --help' for a command's options.
`;

function takeGlobals(args: string[]): { address: string; namespace: string; rest: string[] } {
  let address = Deno.env.get("BERTH_ADDRESS") || DEFAULT_ADDRESS;
  let namespace = Deno.env.get("BERTH_NAMESPACE") || "default";
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.indexOf("=");
    const name = eq > 0 ? a.slice(0, eq) : a;
    const value = () => {
      if (eq > 0) return a.slice(eq + 1);
      const v = args[++i];
      if (v === undefined) throw new UsageError(`option ${name} needs a value`);
      return v;
    };
    if (name === "-a" || name === "--address") address = value();
    else if (name === "-n" || name === "--namespace") namespace = value();
    else break;
  }
  return { address, namespace, rest: args.slice(i) };
}

export async function cliMain(args: string[]): Promise<number> {
  const out = (l: string) => console.log(l);
  const err = (l: string) => console.error(l);
  let client: Client | undefined;
  try {
    const { address, namespace, rest } = takeGlobals(args);
    const [verb, ...verbArgs] = rest;
    if (verb === undefined || verb === "-h" || verb === "--help" || verb === "help") {
      out(MAIN_HELP);
      return verb === undefined ? 1 : 0;
    }
    if (verb === "-v" || verb === "--version") verbArgs.unshift("--client");
    const name = verb === "-v" || verb === "--version" ? "version" : ALIASES[verb] ?? verb;
    const load = VERBS[name];
    if (!load) throw new UsageError(`unknown command "${verb}"; run 'berth --help' for the list`);
    // The verb and the client load in parallel.
    const [cmd, { Client }] = await Promise.all([load(), import("./client.ts")]);
    const g: Globals = {
      address,
      namespace,
      client: () => (client ??= new Client({ address, namespace })),
      out,
      err,
    };
    return await cmd.run(g, verbArgs);
  } catch (e) {
    if (e instanceof HelpRequested) {
      out(e.text);
      return 0;
    }
    err(formatError(e));
    return e instanceof UsageError ? 2 : 1;
  } finally {
    client?.close();
  }
}
