/**
 * `berth daemon`: serves the containerd API (and berth's own) on a unix socket.
 */
import { parseArgs } from "node:util";
import { GrpcServer } from "../api/grpc.ts";
import {
  type Config,
  type ConfigInput,
  DEFAULT_CONFIG_FILE,
  readConfigFile,
  resolveConfig,
} from "../config/config.ts";
import { Logger } from "../util/log.ts";
import { MetaDb } from "../metadata/db.ts";
import { NamespaceStore } from "../metadata/namespaces.ts";
import { LeaseStore } from "../metadata/leases.ts";
import { ContentStore } from "../metadata/content.ts";
import { LocalContentStore } from "../content/store.ts";
import { ContainerStore } from "../metadata/containers.ts";
import { ImageStore } from "../metadata/images.ts";
import { Exchange } from "../events/exchange.ts";
import { TaskManager } from "../runtime/manager.ts";
import { startTtrpcServer } from "../api/ttrpc_server.ts";
import { servicesOf } from "../api/service.ts";
import type { Snapshotter } from "../snapshots/mod.ts";
import { Puller } from "../images/pull.ts";
import { SnapshotUnpacker } from "../images/unpack.ts";
import { RegistryClient } from "../remotes/mod.ts";
import { buildCollector } from "../gc/participants.ts";
import { type Daemon, type Plugin, ServiceRegistry } from "../api/plugins.ts";
import { allPlugins } from "../api/services/mod.ts";
import { VERSION } from "../version.ts";

export const DAEMON_HELP = `Usage: berth daemon [options]

Runs the berth daemon: the containerd API v1 over gRPC on a unix socket.

Options:
  --root DIR         persistent state (content, snapshots, meta.db) [/var/lib/berth]
  --state DIR        runtime state, lost at reboot (sockets, shim state) [/run/berth]
  --address SOCK     the gRPC socket [/run/berth/berth.sock, or STATE/berth.sock]
  --config FILE      TOML configuration [/etc/berth/config.toml, if present]
  --log-level LEVEL  trace, debug, info, warn or error [info]
  -h, --help         show this help
`;

/** A running daemon; `close()` stops serving and releases everything. */
export class RunningDaemon {
  readonly daemon: Daemon;
  readonly plugins: readonly Plugin[];
  #server: GrpcServer;
  #closers: Array<() => void | Promise<void>>;
  constructor(
    daemon: Daemon,
    server: GrpcServer,
    plugins: readonly Plugin[],
    closers: Array<() => void | Promise<void>>,
  ) {
    this.daemon = daemon;
    this.#server = server;
    this.plugins = plugins;
    this.#closers = closers;
  }
  async close(): Promise<void> {
    // No new connections or calls; the calls in flight get 5 s to end.
    await this.#server.shutdown(5000);
    for (const fn of this.#closers.reverse()) {
      try {
        await fn();
      } catch (e) {
        this.daemon.log.warn("shutdown step failed", { error: e });
      }
    }
  }
}

async function listen(server: GrpcServer, config: Config): Promise<void> {
  const sock = config.address;
  await Deno.mkdir(sock.slice(0, sock.lastIndexOf("/")) || "/", { recursive: true, mode: 0o711 });
  // A stale socket from a crashed daemon: remove it only if nobody answers on it.
  try {
    const conn = await Deno.connect({ transport: "unix", path: sock });
    conn.close();
    throw new Error(`Cannot listen on ${sock}: another daemon is serving there`);
  } catch (e) {
    if (e instanceof Error && e.message.startsWith("Cannot listen")) throw e;
    await Deno.remove(sock).catch(() => {});
  }
  try {
    server.listen(sock);
  } catch (e) {
    throw new Error(`Cannot listen on ${sock}: ${(e as Error).message}`);
  }
  await Deno.chmod(sock, 0o660);
  await Deno.chown(sock, 0, config.gid).catch(() => {});
}

/** Starts a daemon with `config`; used by `berth daemon` and by tests. */
export async function startDaemon(config: Config, log: Logger): Promise<RunningDaemon> {
  await Deno.mkdir(config.root, { recursive: true, mode: 0o711 });
  await Deno.mkdir(config.state, { recursive: true, mode: 0o711 });
  const db = new MetaDb(`${config.root}/meta.db`);
  const closers: Array<() => void | Promise<void>> = [() => db.close()];
  const namespaces = new NamespaceStore(db);
  const leases = new LeaseStore(db, namespaces);
  const local = new LocalContentStore(`${config.root}/content`, log);
  const content = new ContentStore({ db, namespaces, leases, local, log });
  const containers = new ContainerStore(db, namespaces);
  const images = new ImageStore(db, namespaces);
  // Filled by the snapshotter plugins at registration; shared by reference.
  const snapshotters = new Map<string, Snapshotter>();
  const unpacker = new SnapshotUnpacker({ snapshotters, content, leases, log });
  // Its layer-apply workers end on their own when idle; at shutdown, at once.
  closers.push(() => unpacker.close());
  const events = new Exchange();
  const tasks = new TaskManager({ config, log, events, containers, snapshotters });
  const configDir = config.configFile.slice(0, config.configFile.lastIndexOf("/")) || "/";
  const daemon: Daemon = {
    config,
    log,
    db,
    namespaces,
    leases,
    content,
    containers,
    images,
    events,
    tasks,
    snapshotters,
    unpacker,
    puller: new Puller({
      content,
      images,
      leases,
      registry: (opts) => new RegistryClient({ configDir, ...opts }),
      unpacker,
      defaultSnapshotter: config.snapshotter,
      maxConcurrentDownloads: config.maxConcurrentDownloads,
      log,
    }),
    gc: buildCollector({ db, content, containers, snapshotters, log }),
    uuid: db.serverValue("uuid", () => crypto.randomUUID()),
    onClose: (fn) => closers.push(fn),
  };
  const server = new GrpcServer({
    log,
    maxReceiveMessageLength: 16 << 20,
    maxSendMessageLength: 16 << 20,
  });
  const registry = new ServiceRegistry(server);
  const plugins = allPlugins();
  for (const p of plugins) {
    await p.register({ daemon, server: registry });
    log.debug("plugin registered", { type: p.type, id: p.id });
  }
  // Shims forward events here; it must be up before any shim is started or reloaded.
  // It serves every gRPC service too, for berth's CLI.
  const ttrpc = await startTtrpcServer(tasks.ttrpcAddress, events, log, servicesOf(server));
  closers.push(() => ttrpc.close());
  await tasks.reload();
  closers.push(() => tasks.close());
  await listen(server, config);
  log.info("serving", { address: config.address, root: config.root, version: VERSION });
  return new RunningDaemon(daemon, server, plugins, closers);
}

export async function daemonMain(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      root: { type: "string" },
      state: { type: "string" },
      address: { type: "string", short: "a" },
      config: { type: "string", short: "c" },
      "log-level": { type: "string", short: "l" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(DAEMON_HELP);
    return 0;
  }
  const configFile = values.config ?? DEFAULT_CONFIG_FILE;
  const file = await readConfigFile(configFile, values.config !== undefined);
  const flags: ConfigInput = {};
  if (values.root) flags.root = values.root;
  if (values.state) flags.state = values.state;
  if (values.address) flags.address = values.address;
  if (values["log-level"]) flags.logLevel = values["log-level"];
  const config = resolveConfig(file, flags, configFile);
  const log = new Logger(config.logLevel);
  // A promise nobody awaited that failed is a bug in one call, not a reason
  // to stop serving every other client (and Deno would exit on it): log it.
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    const r = e.reason;
    log.error("unhandled rejection", { error: r instanceof Error ? r.stack : String(r) });
  });
  const running = await startDaemon(config, log);
  const { promise: stopped, resolve } = Promise.withResolvers<string>();
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => resolve(sig));
  const sig = await stopped;
  log.info("shutting down", { signal: sig });
  await running.close();
  await Deno.remove(config.address).catch(() => {});
  log.info("stopped");
  return 0;
}
