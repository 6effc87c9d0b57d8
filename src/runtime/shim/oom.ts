/**
 * OOM notifications for a container on cgroup v1 (this platform's memory
 * controller): an eventfd registered in the memory cgroup's
 * `cgroup.event_control` for `memory.oom_control` fires on every OOM kill in
 * the cgroup, as containerd's v1 OOM watcher uses it. The kernel also fires
 * it when the cgroup is removed; that one is told apart by the cgroup being
 * gone.
 *
 * Waiting is poll(2) on a pool thread with a short timeout, so close() never
 * leaves an fd in use by a pending call.
 */
import { check, cstr, libc } from "../../sys/libc.ts";

const O_RDONLY_CLOEXEC = 0o2000000;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
const POLLIN = 0x1;
const V1_MEMORY_ROOT = "/sys/fs/cgroup/memory";

/** The v1 memory cgroup directory of process `pid`, if it has one. */
export async function memoryCgroupOf(pid: number): Promise<string | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(`/proc/${pid}/cgroup`);
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    const [, controllers, path] = line.split(":");
    if (path !== undefined && controllers?.split(",").includes("memory")) {
      return `${V1_MEMORY_ROOT}${path === "/" ? "" : path}`;
    }
  }
  return undefined;
}

/** Watches one memory cgroup for OOM kills. */
export class OomWatcher {
  readonly cgroup: string;
  #oomFd: number;
  #eventFd: number;
  #closed = false;
  #polling = false;

  private constructor(cgroup: string, oomFd: number, eventFd: number) {
    this.cgroup = cgroup;
    this.#oomFd = oomFd;
    this.#eventFd = eventFd;
  }

  /** Registers for OOM events of the v1 memory cgroup at `cgroup`. */
  static async open(cgroup: string): Promise<OomWatcher> {
    const oomFd = check(
      libc().open(cstr(`${cgroup}/memory.oom_control`), O_RDONLY_CLOEXEC, 0),
      "open",
      `${cgroup}/memory.oom_control`,
    );
    let eventFd = -1;
    try {
      eventFd = check(libc().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd");
      // The kernel resolves both numbers in the writing process's fd table: ours.
      await Deno.writeTextFile(`${cgroup}/cgroup.event_control`, `${eventFd} ${oomFd}`);
    } catch (err) {
      libc().close(oomFd);
      if (eventFd >= 0) libc().close(eventFd);
      throw err;
    }
    return new OomWatcher(cgroup, oomFd, eventFd);
  }

  /** Resolves true on the next OOM kill, false once closed or the cgroup is gone. */
  async next(): Promise<boolean> {
    const fds = new Uint8Array(8);
    const v = new DataView(fds.buffer);
    while (!this.#closed) {
      v.setInt32(0, this.#eventFd, true);
      v.setInt16(4, POLLIN, true);
      v.setInt16(6, 0, true);
      this.#polling = true;
      let n: number;
      try {
        n = await libc().poll(fds, 1n, 500);
      } finally {
        this.#polling = false;
      }
      if (this.#closed) break;
      if (n <= 0 || (v.getInt16(6, true) & POLLIN) === 0) continue;
      const count = new Uint8Array(8);
      libc().read(this.#eventFd, count, 8n);
      try {
        await Deno.stat(this.cgroup);
      } catch {
        return this.#finish(); // removed with its container, not an OOM
      }
      return true;
    }
    return this.#finish();
  }

  #finish(): false {
    this.close();
    return false;
  }

  /** Stops watching; a pending next() resolves false. */
  close(): void {
    if (this.#closed && this.#oomFd < 0) return;
    this.#closed = true;
    // A poll in flight still uses the eventfd: next() closes it after the poll returns.
    if (this.#polling) return;
    if (this.#eventFd >= 0) libc().close(this.#eventFd);
    if (this.#oomFd >= 0) libc().close(this.#oomFd);
    this.#eventFd = -1;
    this.#oomFd = -1;
  }
}
