/**
 * Orphans: as a child subreaper, the shim inherits every process that a
 * container sharing the host pid namespace leaves behind (a daemon that
 * double-forks, a child whose parent died). Their exits would stay zombies
 * forever, since the shim never calls `waitpid(-1)` (that would steal the
 * exits Deno.Command waits for). This sweep finds the shim's zombie children
 * in /proc and collects exactly those that no one else waits for.
 */
import { tryWait } from "../../sys/proc.ts";

/** A zombie child of this process, as /proc shows it. */
export interface ZombieChild {
  pid: number;
  /** The process's command name (`comm`), kept by zombies. */
  comm: string;
}

/** The zombie children of this process, from /proc/<pid>/stat. */
export function zombieChildren(): ZombieChild[] {
  const me = Deno.pid;
  const out: ZombieChild[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
    } catch {
      continue; // gone meanwhile
    }
    // comm may hold spaces and parentheses: the state follows the last ")".
    const close = stat.lastIndexOf(")");
    const [state, ppid] = stat.slice(close + 2).split(" ");
    if (state === "Z" && Number(ppid) === me) {
      out.push({ pid: Number(e.name), comm: stat.slice(stat.indexOf("(") + 1, close) });
    }
  }
  return out;
}

/**
 * Collects the exits of zombie children for which `owned` is false (pids the
 * caller or Deno waits for itself). Returns the pids collected.
 */
export function reapOrphans(owned: (z: ZombieChild) => boolean): number[] {
  const reaped: number[] = [];
  for (const z of zombieChildren()) {
    if (owned(z)) continue;
    try {
      if (tryWait(z.pid)) reaped.push(z.pid);
    } catch {
      // Collected by its owner between the scan and now.
    }
  }
  return reaped;
}
