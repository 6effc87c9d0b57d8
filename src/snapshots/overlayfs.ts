/**
 * The overlayfs snapshotter's storage: `<root>/<id>/fs` holds what the
 * snapshot itself adds (an overlay upper dir, or a layer once committed) and
 * `<root>/<id>/work` is overlayfs's work dir for active snapshots.
 *
 * Mounts, as containerd's overlay snapshotter gives them:
 * - active, no parent: a writable bind mount of its fs;
 * - active with parents: overlay of upperdir=fs over the parents' fs dirs;
 * - view of one parent: a read-only bind mount of the parent's fs;
 * - view of several: an overlay of lowerdirs only (read-only by nature).
 * Layer lists longer than a page are handled at mount time (src/mount).
 */
import { escapeLowerdir, type Mount } from "../mount/mod.ts";
import type { Backend } from "./store.ts";
import type { Usage } from "./snapshotter.ts";
import { diskUsage } from "./usage.ts";

export class OverlayBackend implements Backend {
  readonly root: string;
  /** Extra overlay options, e.g. index=off when the kernel has an index setting. */
  readonly #options: string[];

  constructor(root: string, opts: { options?: string[] } = {}) {
    this.root = root;
    this.#options = opts.options ?? [];
  }

  /** Creates the root and checks the kernel has overlayfs. */
  static async open(root: string): Promise<OverlayBackend> {
    await Deno.mkdir(root, { recursive: true, mode: 0o700 });
    const fs = await Deno.readTextFile("/proc/filesystems").catch(() => "");
    if (!/\toverlay$/m.test(fs)) {
      throw new Error(`Cannot use the overlayfs snapshotter: the kernel has no overlay filesystem`);
    }
    // Sharing lower dirs between overlays with the inode index on makes later
    // mounts fail (EBUSY); containerd turns it off whenever the knob exists.
    let options: string[] = [];
    try {
      await Deno.stat("/sys/module/overlay/parameters/index");
      options = ["index=off"];
    } catch { /* no index support: nothing to turn off */ }
    return new OverlayBackend(root, { options });
  }

  #dir(id: number): string {
    return `${this.root}/${id}`;
  }

  #fs(id: number): string {
    return `${this.root}/${id}/fs`;
  }

  async create(id: number, kind: "active" | "view", parents: readonly number[]): Promise<void> {
    await Deno.mkdir(this.#dir(id), { mode: 0o700 });
    await Deno.mkdir(this.#fs(id), { mode: 0o755 });
    if (kind === "active") await Deno.mkdir(`${this.#dir(id)}/work`, { mode: 0o711 });
    if (kind === "active" && parents.length > 0) {
      // The merged root takes its owner from the upper dir: keep the parent's.
      const st = await Deno.lstat(this.#fs(parents[0]!));
      await Deno.chown(this.#fs(id), st.uid, st.gid);
    }
  }

  mounts(id: number, kind: "active" | "view", parents: readonly number[]): Mount[] {
    if (parents.length === 0) {
      return [{
        type: "bind",
        source: this.#fs(id),
        options: [kind === "active" ? "rw" : "ro", "rbind"],
      }];
    }
    if (kind === "view" && parents.length === 1) {
      return [{ type: "bind", source: this.#fs(parents[0]!), options: ["ro", "rbind"] }];
    }
    const options = [...this.#options];
    if (kind === "active") {
      options.push(`workdir=${this.#dir(id)}/work`, `upperdir=${this.#fs(id)}`);
    }
    options.push(`lowerdir=${parents.map((p) => escapeLowerdir(this.#fs(p))).join(":")}`);
    return [{ type: "overlay", source: "overlay", options }];
  }

  usage(id: number): Promise<Usage> {
    return diskUsage(this.#fs(id));
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
