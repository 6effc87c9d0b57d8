/**
 * The shim v2 binary protocol (containerd's runtime/v2/README.md):
 *
 * - `shim … start`, run by the daemon in the bundle dir: finds or starts the
 *   long-lived shim for the container's group, prints its ttrpc address and
 *   exits, leaving the shim running on its own (new session, no stdio).
 * - `shim … delete`, run when the shim is gone: force-deletes the container
 *   with runc, unmounts its rootfs and prints a binary DeleteResponse.
 * - `shim … serve` (berth's own, internal): the long-lived shim itself.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DeleteResponseSchema } from "../../gen/containerd/task/v2/shim_pb.ts";
import { dirname, selfCommand, shimSocketPath, shimStateDir } from "./paths.ts";
import { readBundleOptions, runcFor, unmountRootfs } from "./bundle.ts";

/** The flags containerd passes a shim (Go `flag` style, single dash). */
export interface ShimFlags {
  namespace: string;
  id: string;
  /** The daemon's gRPC socket. */
  address: string;
  publishBinary: string;
  bundle: string;
  debug: boolean;
  /** Internal (`serve`): the socket to listen on. */
  socket: string;
  /**
   * The daemon's ttrpc address for events, for a daemon that calls
   * {@link startShim} in-process; else TTRPC_ADDRESS, else `<address>.ttrpc`.
   */
  ttrpcAddress?: string;
  /**
   * Internal (`serve`): milliseconds a shim serving a group waits, once its
   * last container is gone, before it exits; "" or "0" exits at once.
   */
  linger?: string;
}

/**
 * How long a group's shim stays up with no container (BERTH_SHIM_LINGER_MS,
 * default 30 s): the next container of the namespace then finds it running
 * instead of paying a Deno process start.
 */
export const GROUP_LINGER_MS = Number(Deno.env.get("BERTH_SHIM_LINGER_MS") ?? 30_000);

/** Spec annotations that put containers in one shim (containerd 1.6's runc v2 shim). */
export const GROUP_LABELS = ["io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"];

/** The group named by the bundle's config.json annotations, if any. */
export function groupOf(bundle: string): string | undefined {
  let spec: { annotations?: Record<string, string> };
  try {
    // Synchronous: read at every container start, from the bundle (tmpfs as installed).
    spec = JSON.parse(Deno.readTextFileSync(`${bundle}/config.json`));
  } catch {
    return undefined;
  }
  for (const label of GROUP_LABELS) {
    const g = spec.annotations?.[label];
    if (g) return g;
  }
  return undefined;
}

async function canConnect(path: string): Promise<boolean> {
  try {
    const c = await Deno.connect({ transport: "unix", path });
    c.close();
    return true;
  } catch {
    return false;
  }
}

async function tail(path: string, bytes = 2000): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    return text.slice(-bytes).trim();
  } catch {
    return "";
  }
}

/** The daemon's ttrpc address for events: TTRPC_ADDRESS, else `<address>.ttrpc`. */
export function eventsAddress(flags: ShimFlags): string {
  return flags.ttrpcAddress || Deno.env.get("TTRPC_ADDRESS") ||
    (flags.address ? `${flags.address}.ttrpc` : "");
}

/**
 * `start`: returns the ttrpc address of the shim serving this container's
 * group, starting that shim when none runs yet. The bundle is
 * `flags.bundle`, else the working directory (as containerd runs it).
 *
 * berth's daemon may call this in-process instead of running `berth shim
 * start` (one process start less per container): the shim it spawns is
 * detached either way.
 */
export async function startShim(flags: ShimFlags): Promise<string> {
  const bundle = flags.bundle || Deno.cwd();
  // As containerd's shim reads the spec here: a start outside a bundle is a mistake.
  try {
    Deno.statSync(`${bundle}/config.json`);
  } catch (err) {
    throw new Error(`Cannot start shim for "${flags.id}": ${bundle} is not a bundle`, {
      cause: err,
    });
  }
  const named = groupOf(bundle);
  const group = named ?? flags.id;
  const socket = await shimSocketPath(flags.address, flags.namespace, group);
  const address = `unix://${socket}`;
  // The common case, a group whose shim is up: no lock needed, nothing to
  // spawn (the lock only keeps two starts from spawning two shims).
  if (named && await canConnect(socket)) {
    Deno.writeTextFileSync(`${bundle}/address`, address);
    return address;
  }
  await Deno.mkdir(dirname(socket), { recursive: true, mode: 0o711 });
  // One start at a time per group, so two containers of a new pod share one shim.
  const lock = await Deno.open(`${socket}.lock`, { create: true, write: true });
  try {
    await lock.lock(true);
    if (await canConnect(socket)) {
      await Deno.writeTextFile(`${bundle}/address`, address);
      return address;
    }
    await Deno.remove(socket).catch(() => {});
    const self = selfCommand();
    const args = [
      ...self.args,
      "shim",
      "-namespace",
      flags.namespace,
      "-id",
      flags.id,
      "-address",
      flags.address,
      "-publish-binary",
      flags.publishBinary,
      "-socket",
      socket,
      // Only a group's shim lingers: a per-container shim will not be asked again.
      ...(named && GROUP_LINGER_MS > 0 ? ["-linger", String(GROUP_LINGER_MS)] : []),
      ...(flags.debug ? ["-debug"] : []),
      "serve",
    ];
    const child = new Deno.Command(self.command, {
      args,
      // Not the bundle: a shim serving a group outlives its first bundle.
      cwd: dirname(socket),
      env: {
        TTRPC_ADDRESS: eventsAddress(flags),
        // One malloc arena: the shim's JS runs on one thread, and each extra
        // arena Deno's pool threads would make costs resident memory (~2 MB
        // PSS per shim measured with 20 containers).
        MALLOC_ARENA_MAX: Deno.env.get("BERTH_SHIM_MALLOC_ARENA_MAX") ?? "1",
      },
      stdin: "null",
      stdout: "null",
      stderr: "null",
      // Its own session and process group: the daemon's signals and exit do not reach it.
      detached: true,
    }).spawn();
    child.unref();
    let exited: Deno.CommandStatus | undefined;
    child.status.then((s) => exited = s, () => {});
    const deadline = Date.now() + 20_000;
    while (!(await canConnect(socket))) {
      if (exited) {
        const log = await tail(`${socket}.log`);
        throw new Error(
          `Cannot start shim for "${flags.id}": it exited with code ${exited.code}${
            log ? `: ${log}` : ""
          }`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(`Cannot start shim for "${flags.id}": ${socket} not listening after 20s`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await Deno.writeTextFile(`${bundle}/address`, address);
    await Deno.writeTextFile(`${bundle}/shim.pid`, String(child.pid));
    return address;
  } finally {
    lock.close();
  }
}

/**
 * `delete`: cleans up after a shim that is gone. The container is deleted
 * with `runc delete --force` (killing what still runs) and its rootfs
 * unmounted. Returns the encoded DeleteResponse: exit status 137 (SIGKILL)
 * at now, as containerd's shim reports it.
 */
export async function deleteShim(flags: ShimFlags): Promise<Uint8Array> {
  const bundle = flags.bundle || Deno.cwd();
  const opts = await readBundleOptions(bundle);
  const runc = runcFor(opts, shimStateDir(flags.address), flags.namespace);
  try {
    await runc.delete(flags.id, true);
  } catch (err) {
    // As containerd: a container runc cannot remove is reported, the cleanup goes on.
    console.error(`berth shim: runc delete "${flags.id}": ${(err as Error).message}`);
  }
  await unmountRootfs(bundle);
  // The shim is gone: its socket, lock and log would otherwise stay in the state dir.
  const socket = await shimSocketPath(
    flags.address,
    flags.namespace,
    groupOf(bundle) ?? flags.id,
  );
  if (!(await canConnect(socket))) {
    for (const f of [socket, `${socket}.lock`, `${socket}.log`]) {
      await Deno.remove(f).catch(() => {});
    }
  }
  return toBinary(
    DeleteResponseSchema,
    create(DeleteResponseSchema, { exitStatus: 128 + 9, exitedAt: timestampFromDate(new Date()) }),
  );
}
