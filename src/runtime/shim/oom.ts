/**
 * OOM notifications for a container on cgroup v1 (this platform's memory
 * controller): an eventfd registered in the memory cgroup's
 * `cgroup.event_control` for `memory.oom_control` fires on every OOM kill in
 * the cgroup, as containerd's v1 OOM watcher uses it. The kernel also fires
 * it when the cgroup is removed; that one is told apart by the cgroup being
 * gone.
 *
 * Waiting is the process's one poll (src/sys/fdpoll.ts): a poll per
 * container would hold one of Deno's 32 pool threads each, and 30 containers
 * would starve every file operation of the shim.
 */
import { check, cstr, libc } from "../../sys/libc.ts";
import { POLLIN, Waitable } from "../../sys/fdpoll.ts";

const O_RDONLY_CLOEXEC = 0o2000000;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
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
  #event: Waitable;

  private constructor(cgroup: string, oomFd: number, eventFd: number) {
    this.cgroup = cgroup;
    this.#oomFd = oomFd;
    this.#event = new Waitable(eventFd, `OOM eventfd of ${cgroup}`);
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
    while (!this.#event.closed) {
      try {
        await this.#event.ready(POLLIN);
      } catch (err) {
        if (err instanceof Deno.errors.BadResource) break;
        throw err;
      }
      if (this.#event.closed) break;
      const count = new Uint8Array(8);
      if (Number(libc().read(this.#event.fd, count, 8n)) !== 8) continue; // spurious wake-up
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
    if (this.#event.closed) return;
    this.#event.close();
    libc().close(this.#oomFd);
    this.#oomFd = -1;
  }
}
