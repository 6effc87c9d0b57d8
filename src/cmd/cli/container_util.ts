/**
 * What the container verbs (run, ps, exec, logs, stop, ...) share: where a
 * container's IO lives, finding (or pulling) its image, building its spec,
 * reading its CRI log, waiting for its task and removing it.
 *
 * IO paths: the CLI and the daemon agree on them without an API because
 * both know the daemon's socket: a container's log and FIFOs live in
 * `<dirname(socket)>/io/<namespace>/<id>/` (with the default socket,
 * /run/berth/io/...). The log is one CRI-format file (`container.log`) the
 * shim appends both streams to; its path is also kept in the container's
 * `berth.io/log-path` label so a later `berth logs` finds it even if the
 * socket moved.
 */
import { Containers } from "../../gen/containerd/services/containers/v1/containers_pb.ts";
import type { Container } from "../../gen/containerd/services/containers/v1/containers_pb.ts";
import { Images } from "../../gen/containerd/services/images/v1/images_pb.ts";
import { Snapshots } from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Tasks } from "../../gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Status } from "../../gen/containerd/types/task/task_pb.ts";
import type { Process } from "../../gen/containerd/types/task/task_pb.ts";
import { isKind, notFound } from "../../core/errdefs.ts";
import { CriParser, type CriRecord, recordBytes } from "../../runtime/crilog.ts";
import type { ImageConfig } from "../../oci/image.ts";
import type { Globals } from "./command.ts";
import { UsageError } from "./command.ts";
import { dirname } from "../../util/path.ts";

/** The image a container was made from, as the user named it. */
export const LABEL_IMAGE = "berth.io/image";
/** Marks containers made by berth run. */
export const LABEL_CREATED_BY = "berth.io/created-by";
/** Where the container's CRI log is. */
export const LABEL_LOG_PATH = "berth.io/log-path";
/** The image's StopSignal, as containerd labels it. */
export const LABEL_STOP_SIGNAL = "io.containerd.image.config.stop-signal";
/** The type of a runtime spec packed in an Any (JSON value), as ctr packs it. */
export const SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/** The type of an exec's process spec packed in an Any (JSON value), as ctr packs it. */
export const PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/** The snapshotter used when --snapshotter is not given (as ctr). */
export const DEFAULT_SNAPSHOTTER = "overlayfs";
/** The runtime used when --runtime is not given. */
export const DEFAULT_RUNTIME = "io.containerd.runc.v2";

const enc = new TextEncoder();

/** The directory of container `id`'s log and FIFOs (see the module comment). */
export function ioDir(g: Globals, id: string): string {
  return `${dirname(g.address)}/io/${g.namespace}/${id}`;
}

/** The CRI log of a container: its label, or the place berth would have put it. */
export function logPathOf(g: Globals, c: Container): string {
  return c.labels[LABEL_LOG_PATH] || `${ioDir(g, c.id)}/container.log`;
}

/** A new container id: 12 random hex digits (as Docker's short ids). */
export function newId(): string {
  const b = crypto.getRandomValues(new Uint8Array(6));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** Parses a duration in whole or fractional seconds for -t/--time. */
export function parseSeconds(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) {
    throw new UsageError(`${what} must be a number of seconds, got "${text}"`);
  }
  return n;
}

/** The container record, or a not-found error naming it. */
export async function getContainer(g: Globals, id: string): Promise<Container> {
  const { container } = await g.client().call(Containers, "get", { id });
  if (!container) throw notFound(`container "${id}"`);
  return container;
}

/** The task's init process, or undefined when the container has no task. */
export async function getTask(g: Globals, id: string): Promise<Process | undefined> {
  try {
    return (await g.client().call(Tasks, "get", { containerId: id, execId: "" })).process;
  } catch (e) {
    if (isKind(e, "not_found")) return undefined;
    throw e;
  }
}

/** Status names as ps and inspect print them. */
export function statusName(s: Status | undefined): string {
  switch (s) {
    case Status.CREATED:
      return "created";
    case Status.RUNNING:
      return "running";
    case Status.STOPPED:
      return "stopped";
    case Status.PAUSED:
      return "paused";
    case Status.PAUSING:
      return "pausing";
    default:
      return "unknown";
  }
}

/** The image's runtime spec from the container record (packed as JSON, like ctr). */
export function specOf(c: Container): Record<string, unknown> | undefined {
  if (!c.spec?.value?.length) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(c.spec.value));
  } catch {
    return undefined;
  }
}

/** An image found locally (or just pulled): its normalized name, config and top chainID. */
export interface LocalImage {
  name: string;
  config: ImageConfig;
  chainId: string;
}

/**
 * Finds image `ref` (normalized as pull does: `busybox` is
 * `docker.io/library/busybox:latest`), pulling it with progress on stderr
 * when it is not there.
 */
export async function ensureImage(
  g: Globals,
  ref: string,
  opts: { snapshotter: string; quiet?: boolean },
): Promise<LocalImage> {
  const { parseReference, formatReference } = await import("../../oci/reference.ts");
  const name = formatReference(parseReference(ref));
  const c = g.client();
  let image;
  try {
    image = (await c.call(Images, "get", { name })).image;
  } catch (e) {
    if (!isKind(e, "not_found")) throw e;
    await pullWithProgress(g, name, opts);
    image = (await c.call(Images, "get", { name })).image;
  }
  if (!image) throw notFound(`image "${name}"`);
  const { details, readBlob } = await import("./image_util.ts");
  const { parseImageConfig } = await import("../../oci/image.ts");
  const { chainIds } = await import("./digest.ts");
  const d = await details(c, image);
  if (!d.config) throw new Error(`Image "${name}" has no manifest for this platform`);
  const config = parseImageConfig(await readBlob(c, d.config.digest), `config of "${name}"`);
  return { name, config, chainId: (await chainIds(config.rootfs.diff_ids)).at(-1) ?? "" };
}

async function pullWithProgress(
  g: Globals,
  name: string,
  opts: { snapshotter: string; quiet?: boolean },
): Promise<void> {
  const { Transfer } = await import("../../gen/berth/images/v1/transfer_pb.ts");
  const { ProgressView } = await import("./pull.ts");
  type Blob = import("./pull.ts").Blob;
  if (!opts.quiet) g.err(`Unable to find image "${name}" locally; pulling it`);
  const view = opts.quiet ? undefined : new ProgressView(Deno.stderr.isTerminal(), Deno.stderr);
  const blobs = new Map<string, Blob>();
  let done = false;
  for await (
    const msg of g.client().stream(Transfer, "pull", {
      reference: name,
      snapshotter: opts.snapshotter,
      platforms: [],
      allPlatforms: false,
      plainHttp: false,
      user: "",
      skipUnpack: false,
    })
  ) {
    for (const b of msg.blobs) {
      blobs.set(b.digest, {
        digest: b.digest,
        offset: Number(b.offset),
        total: Number(b.total),
        state: b.state,
      });
    }
    if (msg.image) done = true;
    else view?.update(msg.phase, [...blobs.values()]);
  }
  if (!done) throw new Error(`Pull of "${name}" ended without a result`);
  view?.update("done", [...blobs.values()]);
}

/** Makes a FIFO at `path` (mode 0600), replacing a stale one. */
export async function mkfifo(path: string): Promise<void> {
  const { check, cstr, libc } = await import("../../sys/libc.ts");
  await Deno.remove(path).catch(() => {});
  const S_IFIFO = 0o010000;
  check(libc().mknod(cstr(path), S_IFIFO | 0o600, 0n), "mknod", path);
}

/** Options of {@link followLog}. */
export interface FollowOptions {
  /** Called for each record, in order. */
  onRecord(r: CriRecord): void | Promise<void>;
  /** Keep reading until this settles, then until the file stops growing. */
  until?: Promise<unknown>;
  /** Stop early (Ctrl-C of logs -f). */
  signal?: AbortSignal;
  /** Start here instead of at 0. */
  offset?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Reads a CRI log from the start, then (with `until`) follows it as it grows
 * until `until` settles (the task's exit: the shim reports it once the
 * output is copied), then to the end. A missing file is waited for while
 * following (the shim creates it), and is empty otherwise.
 */
export async function followLog(path: string, opts: FollowOptions): Promise<number> {
  const parser = new CriParser();
  let offset = opts.offset ?? 0;
  let ended = opts.until === undefined;
  opts.until?.then(() => (ended = true), () => (ended = true));
  let file: Deno.FsFile | undefined;
  const buf = new Uint8Array(64 * 1024);
  let idle = 0;
  try {
    for (;;) {
      if (opts.signal?.aborted) break;
      if (!file) {
        try {
          file = await Deno.open(path, { read: true });
          await file.seek(offset, Deno.SeekMode.Start);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
          if (ended) break;
          await sleep(20);
          continue;
        }
      }
      // Whether the exit was known before this read began: only such a read's
      // end of file is the end (one that raced the exit may have missed the last output).
      const final = ended;
      const n = await file.read(buf);
      if (n !== null && n > 0) {
        offset += n;
        idle = 0;
        for (const r of parser.push(buf.subarray(0, n))) await opts.onRecord(r);
        continue;
      }
      // At the end of what is written so far.
      if (opts.until === undefined) break;
      // The shim reports an exit once it has copied the process's output
      // (or given up waiting for it): after the exit, the end is the end.
      if (final) break;
      if (ended) continue;
      // Quick while output flows, slower once the program has been quiet a
      // while; at once when the exit comes.
      await Promise.race([sleep(++idle < 25 ? 20 : 100), opts.until!.catch(() => {})]);
    }
    for (const r of parser.end()) await opts.onRecord(r);
  } finally {
    file?.close();
  }
  return offset;
}

/** Writes the output of a record to stdout or stderr (stderr records to stderr). */
export function writeRecord(r: CriRecord, opts: { timestamps?: boolean } = {}): void {
  const out = r.stream === "stderr" ? Deno.stderr : Deno.stdout;
  const body = recordBytes(r);
  const bytes = opts.timestamps && r.time ? concat(enc.encode(`${r.time} `), body) : body;
  let off = 0;
  while (off < bytes.length) off += out.writeSync(bytes.subarray(off));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Waits for the exit of process `execId` ("" for the init process) of
 * task `id` and returns its exit status.
 */
export async function waitExit(g: Globals, id: string, execId = ""): Promise<number> {
  const r = await g.client().call(Tasks, "wait", { containerId: id, execId });
  return r.exitStatus;
}

/** Packs a runtime spec as ctr does: JSON in an Any of the runtime-spec type. */
export function packSpec(spec: unknown) {
  return { typeUrl: SPEC_TYPE_URL, value: enc.encode(JSON.stringify(spec)) };
}

/**
 * Removes container `id` with its task, snapshot and IO directory. With
 * `force`, a running task is killed first (SIGKILL); without, a live task
 * is a failed-precondition error.
 */
export async function removeContainer(
  g: Globals,
  id: string,
  opts: { force?: boolean } = {},
): Promise<void> {
  const c = g.client();
  const container = await getContainer(g, id);
  const task = await getTask(g, id);
  if (task) {
    const live = task.status === Status.RUNNING || task.status === Status.PAUSED ||
      task.status === Status.PAUSING || task.status === Status.CREATED;
    if (live) {
      if (!opts.force) {
        const { failedPrecondition } = await import("../../core/errdefs.ts");
        throw failedPrecondition(
          `Cannot remove container "${id}": its task is ${
            statusName(task.status)
          } (stop it first, or use -f)`,
        );
      }
      if (task.status === Status.PAUSED || task.status === Status.PAUSING) {
        await c.call(Tasks, "resume", { containerId: id }).catch(() => {});
      }
      await c.call(Tasks, "kill", { containerId: id, execId: "", signal: 9, all: true })
        .catch((e) => {
          if (!isKind(e, "not_found")) throw e;
        });
      await waitExit(g, id).catch(() => {});
    }
    await c.call(Tasks, "delete", { containerId: id }).catch((e) => {
      if (!isKind(e, "not_found")) throw e;
    });
  }
  await c.call(Containers, "delete", { id });
  if (container.snapshotKey) {
    await c.call(Snapshots, "remove", {
      snapshotter: container.snapshotter,
      key: container.snapshotKey,
    }).catch((e) => {
      if (!isKind(e, "not_found")) throw e;
    });
  }
  const log = logPathOf(g, container);
  await Deno.remove(dirname(log), { recursive: true }).catch(() => {});
}

/** Runs `fn` for each id, printing the id on success and the error otherwise; exit 1 if any failed. */
export async function eachId(
  g: Globals,
  ids: string[],
  fn: (id: string) => Promise<void>,
  opts: { print?: boolean } = {},
): Promise<number> {
  let code = 0;
  for (const id of ids) {
    try {
      await fn(id);
      if (opts.print ?? true) g.out(id);
    } catch (e) {
      const { formatError } = await import("../../util/errors.ts");
      g.err(formatError(e));
      code = 1;
    }
  }
  return code;
}

/**
 * Copies this process's stdin into the FIFO at `fifo` (which the shim holds
 * open), and when stdin ends, waits until the shim has read what is still
 * in the pipe before calling `close` (CloseIO): the shim keeps its FIFO open
 * read-write, so only CloseIO gives the process its EOF, and closing earlier
 * would drop the last bytes.
 */
export async function forwardStdin(fifo: string, close: () => Promise<unknown>): Promise<void> {
  const { check, cstr, libc } = await import("../../sys/libc.ts");
  const O_RDONLY = 0, O_NONBLOCK = 0o4000, FIONREAD = 0x541b;
  // A reader of our own that never reads: FIONREAD on it tells how much the
  // pipe still holds (the pipe is shared by every open of the FIFO).
  const probe = check(libc().open(cstr(fifo), O_RDONLY | O_NONBLOCK, 0), "open", fifo);
  const out = await Deno.open(fifo, { write: true });
  try {
    // Plain writes: a WritableStream over a FIFO (FsFile.writable) was seen to
    // hold chunks back until close, which a terminal session cannot wait for.
    try {
      for await (const chunk of Deno.stdin.readable) {
        for (let off = 0; off < chunk.length;) off += await out.write(chunk.subarray(off));
      }
    } catch { /* the FIFO's reader went away: the task ended */ }
    const n = new Int32Array(1);
    const end = Date.now() + 2000;
    while (Date.now() < end) {
      if (libc().ioctl(probe, BigInt(FIONREAD), new Uint8Array(n.buffer)) !== 0 || n[0] === 0) {
        break;
      }
      await sleep(10);
    }
  } finally {
    libc().close(probe);
    out.close();
  }
  await close();
}
