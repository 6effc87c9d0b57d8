/**
 * The daemon's side of shim v2: resolving a runtime name to a shim command,
 * the binary protocol (`start` prints the shim's ttrpc address, `delete`
 * cleans up after a dead shim and prints a DeleteResponse), and the ttrpc
 * connections to running shims' `containerd.task.v2.Task` service (one per
 * shim and namespace, shared by the tasks that shim serves).
 *
 * Runtime names resolve as in containerd 1.6: the config's
 * `[runtimes."<name>"]` mapping first; then an absolute path is the shim
 * binary itself; then `io.containerd.X.vY` runs `containerd-shim-X-vY` from
 * PATH.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema } from "@bufbuild/protobuf/wkt";
import {
  type DeleteResponse,
  DeleteResponseSchema,
  Task,
} from "../gen/containerd/task/v2/shim_pb.ts";
import { TtrpcClient } from "../ttrpc/mod.ts";
import type { RuntimeConfig } from "../config/config.ts";
import { BerthError, invalidArgument, notFound } from "../core/errdefs.ts";
import type { Logger } from "../util/log.ts";
import { selfCommand } from "./shim/paths.ts";
import { libc } from "../sys/libc.ts";
import type { Bundle } from "./bundle.ts";
import type { NonBlockingFile } from "../sys/nbfile.ts";

/** The value of `shim-binary-path` meaning berth's own shim (`berth shim`). */
export const BERTH_SHIM = "berth";

/** How to run a shim: a program and the arguments before the shim's own flags. */
export interface ShimCommand {
  /** An absolute path, or {@link BERTH_SHIM}; stored in the bundle for reloads. */
  binary: string;
  command: string;
  args: string[];
}

/** The shim command of a stored `shim-binary-path` value. */
export function shimCommandOf(binary: string): ShimCommand {
  if (binary === BERTH_SHIM) {
    const self = selfCommand();
    return { binary, command: self.command, args: [...self.args, "shim"] };
  }
  return { binary, command: binary, args: [] };
}

/** `io.containerd.runc.v2` → `containerd-shim-runc-v2`; "" for a malformed name. */
export function shimBinaryName(runtime: string): string {
  const parts = runtime.split(".");
  if (parts.length < 2 || parts.some((p) => p === "")) return "";
  return `containerd-shim-${parts[parts.length - 2]}-${parts[parts.length - 1]}`;
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const st = await Deno.stat(path);
    return st.isFile && ((st.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

async function lookPath(name: string): Promise<string | undefined> {
  const dirs =
    (Deno.env.get("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
      .split(":");
  for (const d of dirs) {
    if (d && (await isExecutableFile(`${d}/${name}`))) return `${d}/${name}`;
  }
  return undefined;
}

/**
 * Resolves a runtime name (or a task's explicit runtime path) to the shim
 * that runs it.
 */
export async function resolveRuntime(
  runtime: string,
  runtimes: Readonly<Record<string, RuntimeConfig>>,
  runtimePath = "",
): Promise<ShimCommand> {
  if (runtimePath) {
    if (!runtimePath.startsWith("/")) {
      throw invalidArgument(`runtime path "${runtimePath}" must be absolute`);
    }
    if (!(await isExecutableFile(runtimePath))) {
      throw notFound(`runtime path "${runtimePath}": no executable there`);
    }
    return shimCommandOf(runtimePath);
  }
  if (!runtime) throw invalidArgument("container has no runtime name");
  const mapped = runtimes[runtime];
  if (mapped?.shim === "berth") return shimCommandOf(BERTH_SHIM);
  if (mapped?.binary) {
    if (!(await isExecutableFile(mapped.binary))) {
      throw notFound(
        `runtime "${runtime}": configured shim binary ${mapped.binary} is not an executable file`,
      );
    }
    return shimCommandOf(mapped.binary);
  }
  if (runtime.startsWith("/")) {
    if (!(await isExecutableFile(runtime))) {
      throw notFound(`runtime "${runtime}": invalid custom binary path`);
    }
    return shimCommandOf(runtime);
  }
  const name = shimBinaryName(runtime);
  if (!name) {
    throw invalidArgument(
      `invalid runtime name "${runtime}": want a name like io.containerd.runc.v2 or an absolute path to a shim binary`,
    );
  }
  const path = await lookPath(name);
  if (!path) throw notFound(`runtime "${runtime}": shim binary "${name}" not installed on PATH`);
  return shimCommandOf(path);
}

/** What every binary-protocol call needs besides the action. */
export interface ShimBinaryOptions {
  shim: ShimCommand;
  bundle: Bundle;
  /** The daemon's gRPC socket. */
  address: string;
  /** The daemon's ttrpc socket for events (`<address>.ttrpc`). */
  ttrpcAddress: string;
  debug?: boolean;
  log: Logger;
}

function publishBinary(): string {
  // containerd passes its own executable; berth's is this program.
  return Deno.execPath();
}

function baseArgs(o: ShimBinaryOptions): string[] {
  return [
    ...o.shim.args,
    "-namespace",
    o.bundle.namespace,
    "-address",
    o.address,
    "-publish-binary",
    publishBinary(),
    "-id",
    o.bundle.id,
  ];
}

function env(o: ShimBinaryOptions): Record<string, string> {
  return {
    TTRPC_ADDRESS: o.ttrpcAddress,
    GRPC_ADDRESS: o.address,
    NAMESPACE: o.bundle.namespace,
  };
}

const dec = new TextDecoder();

const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

/**
 * Marks every descriptor of the daemon close-on-exec. Sockets made by the
 * node compatibility layer (grpc-js's listener and connections) are not, and
 * a shim inheriting the daemon's listening socket keeps it answering after a
 * crash, so a restarted daemon finds its address taken. Runs synchronously
 * right before a spawn, so no descriptor opened in between can slip through.
 */
export function closeOnExecAll(): void {
  let fds: number[];
  try {
    fds = [...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name));
  } catch {
    return;
  }
  const c = libc();
  for (const fd of fds) {
    if (!(fd > 2)) continue;
    const flags = c.fcntl(fd, F_GETFD, 0);
    if (flags >= 0 && (flags & FD_CLOEXEC) === 0) c.fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
}

/** A shim's failure, in its own words. */
function shimFailure(what: string, o: ShimBinaryOptions, code: number, out: string): BerthError {
  const words = out.trim().split("\n").slice(-5).join("; ");
  return new BerthError(
    "unknown",
    `${what} for task "${o.bundle.id}" (${o.shim.binary}) failed with exit code ${code}${
      words ? `: ${words}` : ""
    }`,
  );
}

/**
 * `<shim> … start` in the bundle: returns the shim's ttrpc address. The
 * runtime options go to the shim's stdin (a binary Any), as containerd does.
 */
export async function shimStart(o: ShimBinaryOptions, options?: Any): Promise<string> {
  if (o.shim.binary === BERTH_SHIM) return await startBerthShim(o);
  const args = [...baseArgs(o), ...(o.debug ? ["-debug"] : []), "start"];
  o.log.debug("starting shim", { id: o.bundle.id, command: o.shim.command, args: args.join(" ") });
  let child: Deno.ChildProcess;
  try {
    closeOnExecAll();
    child = new Deno.Command(o.shim.command, {
      args,
      cwd: o.bundle.path,
      env: env(o),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    throw new BerthError(
      "unknown",
      `Cannot run shim ${o.shim.command} for task "${o.bundle.id}": ${(err as Error).message}`,
      { cause: err },
    );
  }
  const w = child.stdin.getWriter();
  await w.write(options ? toBinary(AnySchema, options) : new Uint8Array()).catch(() => {});
  await w.close().catch(() => {});
  const out = await child.output();
  const stdout = dec.decode(out.stdout).trim();
  const stderr = dec.decode(out.stderr).trim();
  if (!out.success) throw shimFailure("shim start", o, out.code, `${stdout}\n${stderr}`);
  if (!stdout) throw shimFailure("shim start printed no address", o, out.code, stderr);
  // The address is the last line: a shim may print warnings before it.
  return stdout.split("\n").pop()!.trim();
}

/**
 * berth's own shim is started in-process: its `start` logic runs here and
 * spawns the long-lived `berth shim … serve` (detached, as `berth shim start`
 * would), saving one program start per task. The options reach that shim in
 * Task.Create, where berth's shim reads them.
 */
async function startBerthShim(o: ShimBinaryOptions): Promise<string> {
  const { startShim } = await import("./shim/binary.ts");
  o.log.debug("starting berth shim in-process", { id: o.bundle.id });
  closeOnExecAll();
  try {
    return await startShim({
      namespace: o.bundle.namespace,
      id: o.bundle.id,
      address: o.address,
      publishBinary: publishBinary(),
      bundle: o.bundle.path,
      debug: o.debug ?? false,
      socket: "",
      ttrpcAddress: o.ttrpcAddress,
    });
  } catch (err) {
    throw new BerthError(
      "unknown",
      `shim start for task "${o.bundle.id}" (berth shim) failed: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** `<shim> … -bundle DIR delete`: cleans up after a shim that is gone. */
export async function shimDelete(o: ShimBinaryOptions): Promise<DeleteResponse> {
  const args = [...baseArgs(o), "-bundle", o.bundle.path, ...(o.debug ? ["-debug"] : []), "delete"];
  o.log.debug("running shim delete", { id: o.bundle.id, command: o.shim.command });
  closeOnExecAll();
  const out = await new Deno.Command(o.shim.command, {
    args,
    cwd: o.bundle.path,
    env: env(o),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn().output();
  const stderr = dec.decode(out.stderr).trim();
  if (!out.success) throw shimFailure("shim delete", o, out.code, stderr);
  if (stderr) o.log.warn("shim delete warnings", { id: o.bundle.id, stderr });
  return fromBinary(DeleteResponseSchema, out.stdout);
}

/**
 * Copies the shim's log FIFO into the daemon's log. The FIFO is opened
 * read-write and non-blocking, so opening never blocks, the shim's writer
 * never sees a missing reader while the daemon runs, and waiting for lines
 * takes no thread: a blocking read would pin one of Deno's 32 pool threads
 * per task for its whole life (berth's own shim never writes here), and the
 * 32nd task would stall every file operation of the daemon.
 */
export class ShimLog {
  #file: NonBlockingFile;
  #closed = false;

  private constructor(file: NonBlockingFile) {
    this.#file = file;
  }

  /** Opens the FIFO at `path` and starts copying; undefined when there is none. */
  static async open(path: string, log: Logger): Promise<ShimLog | undefined> {
    const { openFifo } = await import("../sys/nbfile.ts");
    let file: NonBlockingFile;
    try {
      file = openFifo(path, "readwrite");
    } catch {
      return undefined;
    }
    const l = new ShimLog(file);
    l.#copy(log);
    return l;
  }

  async #copy(log: Logger): Promise<void> {
    let pending = "";
    while (!this.#closed) {
      let chunk: Uint8Array | null;
      try {
        // No buffer is held while the shim is silent, which is nearly always.
        chunk = await this.#file.readChunk(4 * 1024);
      } catch {
        break;
      }
      if (chunk === null) break;
      pending += dec.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) if (line.trim() && !this.#closed) log.debug("shim: " + line);
    }
    this.close();
  }

  /** Stops copying; a pending read ends. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
  }
}

/** One connection to a shim in one namespace, and the tasks sharing it. */
interface Shared {
  key: string;
  client: TtrpcClient;
  shares: Set<ShimConnection>;
  /** The connection has ended and its shares were told. */
  ended: boolean;
}

/** What a share asks of its pool. */
interface PoolHooks {
  /** The share is given back. */
  release(conn: ShimConnection): void;
  /** Later shares must not get this connection. */
  retire(shared: Shared): void;
}

/**
 * The daemon's connections to its shims: one per (shim address, namespace),
 * shared by every task that shim serves. berth's shim serves all of a
 * namespace's containers, and a connection per task would cost both sides a
 * socket, a frame reader and its pending read per container for nothing:
 * ttrpc multiplexes calls on one connection. (A shim that serves one
 * container, like containerd-shim-runc-v2, gets one connection as before.)
 *
 * A connection stays open while a task holds a share of it; when the shim
 * goes away, every share sees its `done`.
 */
export class ShimConnectionPool {
  #open = new Map<string, Shared>();
  #connecting = new Map<string, Promise<Shared>>();
  #hooks: PoolHooks = {
    release: (conn) => this.#release(conn),
    retire: (shared) => this.#retire(shared),
  };

  /** A share of the connection to the shim at `address`, for calls in namespace `namespace`. */
  async connect(address: string, namespace: string): Promise<ShimConnection> {
    const key = `${namespace}\n${address}`;
    let shared = this.#open.get(key);
    if (!shared || shared.client.closed) {
      let connecting = this.#connecting.get(key);
      if (!connecting) {
        // Tasks reloaded in parallel (or created at once) wait for one connect.
        connecting = this.#dial(key, address, namespace);
        this.#connecting.set(key, connecting);
        const forget = () => {
          if (this.#connecting.get(key) === connecting) this.#connecting.delete(key);
        };
        connecting.then(forget, forget);
      }
      shared = await connecting;
    }
    const conn = new ShimConnection(shared, address, this.#hooks);
    // A connection that ended while this waited: the share starts ended.
    if (shared.ended) conn.ended();
    else shared.shares.add(conn);
    return conn;
  }

  async #dial(key: string, address: string, namespace: string): Promise<Shared> {
    const client = await TtrpcClient.connect(address, { namespace });
    const shared: Shared = { key, client, shares: new Set(), ended: false };
    this.#open.set(key, shared);
    client.done.then(() => {
      // The shim went away (or the last share closed it): every task sees it.
      shared.ended = true;
      this.#retire(shared);
      for (const s of shared.shares) s.ended();
      shared.shares.clear();
    });
    return shared;
  }

  #retire(shared: Shared): void {
    if (this.#open.get(shared.key) === shared) this.#open.delete(shared.key);
  }

  #release(conn: ShimConnection): void {
    const shared = conn.shared;
    if (!shared.shares.delete(conn)) return;
    if (shared.shares.size === 0) {
      this.#retire(shared);
      shared.client.close();
    }
  }

  /** How many connections new shares can get (for tests and diagnostics). */
  get size(): number {
    return this.#open.size;
  }

  /** Closes every connection (daemon shutdown); every share ends. */
  close(): void {
    for (const shared of [...this.#open.values()]) shared.client.close();
  }
}

/**
 * One task's share of a {@link ShimConnectionPool} connection: calls go on
 * the shared client (whose namespace is the task's); `close()` gives the
 * share back, and the connection closes with its last share.
 */
export class ShimConnection {
  /** The shared client: close the share, never the client. */
  readonly client: TtrpcClient;
  readonly address: string;
  /** @internal */
  readonly shared: Shared;
  #hooks: PoolHooks;
  #closed = false;
  #done: Promise<void>;
  #resolveDone!: () => void;

  /** @internal Made by {@link ShimConnectionPool.connect}. */
  constructor(shared: Shared, address: string, hooks: PoolHooks) {
    this.shared = shared;
    this.client = shared.client;
    this.address = address;
    this.#hooks = hooks;
    this.#done = new Promise((r) => this.#resolveDone = r);
  }

  /**
   * Resolves when this share has ended: the connection ended (the shim went
   * away) or the share was closed. Per share, so a task that is gone leaves
   * nothing waiting on a connection that other tasks keep open.
   */
  get done(): Promise<void> {
    return this.#done;
  }

  /** @internal The shared connection ended. */
  ended(): void {
    this.#closed = true;
    this.#resolveDone();
  }

  /**
   * Task.Shutdown for task `id`. A shim serving no container may exit after
   * it, so later tasks get a new connection rather than this one, which may
   * be closing; the tasks holding it keep it.
   */
  async shutdown(id: string, timeout = 5_000): Promise<void> {
    this.#hooks.retire(this.shared);
    await this.client.call(Task, "shutdown", { id }, { timeout });
  }

  /** Gives this share back; the last one closes the connection. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#hooks.release(this);
    this.#resolveDone();
  }
}
