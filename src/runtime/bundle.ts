/**
 * A task's bundle on the daemon side: `<state>/tasks/<namespace>/<id>`, the
 * working directory its shim is started in (shim v2 binary protocol).
 *
 * Contents:
 * - `config.json`: the container's OCI spec, as stored in its record;
 * - `rootfs/`: where the shim mounts the task's root filesystem;
 * - `log`: a FIFO the shim writes its log to (containerd's shims open it for
 *   writing and fail without it; the daemon reads it into its own log);
 * - `address`: the shim's ttrpc address (written by the shim's `start`, and
 *   again by the daemon);
 * - `shim-binary-path`: how to run the shim again for `delete` after a
 *   restart: an absolute path, or `berth` for berth's own shim.
 *
 * The directory lives under the daemon's state dir, so it is lost at reboot
 * by design, with the processes it describes.
 */
import { check, cstr, libc } from "../sys/libc.ts";
import { unmountAll } from "../mount/mod.ts";
import { validateIdentifier } from "../core/identifiers.ts";
import type { Logger } from "../util/log.ts";

/** Where bundles live under the daemon's state dir. */
export function tasksDir(state: string): string {
  return `${state}/tasks`;
}

/** S_IFIFO from <sys/stat.h>. */
const S_IFIFO = 0o010000;

/** A task's bundle directory. */
export class Bundle {
  readonly namespace: string;
  readonly id: string;
  readonly path: string;

  constructor(state: string, namespace: string, id: string) {
    this.namespace = validateIdentifier("namespace", namespace);
    this.id = validateIdentifier("task id", id);
    this.path = `${tasksDir(state)}/${namespace}/${id}`;
  }

  get rootfs(): string {
    return `${this.path}/rootfs`;
  }

  get logFifo(): string {
    return `${this.path}/log`;
  }

  /**
   * Creates the directory with the spec and the log FIFO. Fails if a bundle
   * of that id already exists (a task of it is known or being cleaned up).
   */
  static create(
    state: string,
    namespace: string,
    id: string,
    spec: Uint8Array,
  ): Bundle {
    const b = new Bundle(state, namespace, id);
    // Synchronous: a few small operations under the state dir (tmpfs as
    // installed) cost microseconds each, less than a trip through Deno's
    // blocking pool, and every container start waits for them.
    Deno.mkdirSync(`${tasksDir(state)}/${namespace}`, { recursive: true, mode: 0o711 });
    // Not recursive: an existing directory means another task owns this id.
    Deno.mkdirSync(b.path, { mode: 0o711 });
    Deno.mkdirSync(b.rootfs, { mode: 0o711 });
    Deno.writeFileSync(`${b.path}/config.json`, spec, { mode: 0o644 });
    check(libc().mknod(cstr(b.logFifo), S_IFIFO | 0o600, 0n), "mknod", b.logFifo);
    return b;
  }

  /** Every bundle found under `<state>/tasks/<namespace>/<id>`. */
  static async list(state: string): Promise<Bundle[]> {
    const out: Bundle[] = [];
    for await (const ns of readDirOrEmpty(tasksDir(state))) {
      if (!ns.isDirectory) continue;
      for await (const t of readDirOrEmpty(`${tasksDir(state)}/${ns.name}`)) {
        if (!t.isDirectory || t.name.startsWith(".")) continue;
        try {
          out.push(new Bundle(state, ns.name, t.name));
        } catch {
          // Not a name berth would have made: leave it alone.
        }
      }
    }
    return out;
  }

  /** The shim's ttrpc address, or undefined when the shim never wrote it. */
  async address(): Promise<string | undefined> {
    return (await readOrUndefined(`${this.path}/address`))?.trim() || undefined;
  }

  writeAddress(address: string): void {
    Deno.writeTextFileSync(`${this.path}/address`, address); // see create()
  }

  /** How to run this bundle's shim (see the module doc). */
  async shimBinaryPath(): Promise<string | undefined> {
    return (await readOrUndefined(`${this.path}/shim-binary-path`))?.trim() || undefined;
  }

  writeShimBinaryPath(path: string): void {
    Deno.writeTextFileSync(`${this.path}/shim-binary-path`, path, { mode: 0o600 }); // see create()
  }

  /** Unmounts the rootfs if the shim left it mounted, then removes the directory. */
  async delete(log?: Logger): Promise<void> {
    try {
      await unmountAll(this.rootfs, { detach: false, ...(log ? { log } : {}) });
    } catch (err) {
      log?.warn("cannot unmount bundle rootfs", { path: this.rootfs, error: err });
      await unmountAll(this.rootfs, { detach: true }).catch(() => {});
    }
    await Deno.remove(this.path, { recursive: true }).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
    // Drop the namespace directory once its last bundle is gone.
    await Deno.remove(this.path.slice(0, this.path.lastIndexOf("/"))).catch(() => {});
  }
}

async function* readDirOrEmpty(path: string): AsyncGenerator<Deno.DirEntry> {
  try {
    yield* Deno.readDir(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

async function readOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}
