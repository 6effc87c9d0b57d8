/**
 * The native snapshotter's storage: every snapshot is a complete tree at
 * `<root>/<id>`, a copy of its parent made with `cp -a --reflink=auto` (which
 * keeps hard links within the tree, owners, modes with setuid/setgid, xattrs,
 * times and special files, and shares blocks where the filesystem can).
 * Mounts are bind mounts: writable for active snapshots, read-only for views.
 */
import type { Mount } from "../mount/mod.ts";
import type { Backend } from "./store.ts";
import type { Usage } from "./snapshotter.ts";
import { diskUsage } from "./usage.ts";

export class NativeBackend implements Backend {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  static async open(root: string): Promise<NativeBackend> {
    await Deno.mkdir(root, { recursive: true, mode: 0o700 });
    return new NativeBackend(root);
  }

  #dir(id: number): string {
    return `${this.root}/${id}`;
  }

  async create(id: number, _kind: "active" | "view", parents: readonly number[]): Promise<void> {
    if (parents.length === 0) {
      await Deno.mkdir(this.#dir(id), { mode: 0o755 });
      return;
    }
    const from = this.#dir(parents[0]!);
    const out = await new Deno.Command("cp", {
      args: ["-a", "--reflink=auto", "--", from, this.#dir(id)],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const msg = new TextDecoder().decode(out.stderr).trim();
      throw new Error(
        `Cannot copy snapshot ${from} to ${this.#dir(id)}: ${msg || `cp exited ${out.code}`}`,
      );
    }
  }

  mounts(id: number, kind: "active" | "view"): Mount[] {
    return [{
      type: "bind",
      source: this.#dir(id),
      options: [kind === "active" ? "rw" : "ro", "rbind"],
    }];
  }

  usage(id: number): Promise<Usage> {
    return diskUsage(this.#dir(id));
  }

  async remove(id: number): Promise<void> {
    await Deno.remove(this.#dir(id), { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  async list(): Promise<number[]> {
    const ids: number[] = [];
    for await (const e of Deno.readDir(this.root)) {
      if (e.isDirectory && /^[1-9][0-9]*$/.test(e.name)) ids.push(Number(e.name));
    }
    return ids;
  }
}
