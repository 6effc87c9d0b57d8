import { Images } from "../../gen/containerd/services/images/v1/images_pb.ts";
import { Snapshots } from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { parseImageConfig } from "../../oci/image.ts";
import { chainIds, sha256Hex } from "./digest.ts";
import { mountAll, unmountAll } from "../../mount/mod.ts";
import { type Command, parse, UsageError } from "./command.ts";
import { details, readBlob } from "./image_util.ts";

const MOUNT_HELP = `Usage: berth mount [--snapshotter NAME] [--rw] IMAGE DIR

Mounts an image's root filesystem on DIR (read-only unless --rw; with --rw,
changes go to a new snapshot removed by unmount). Needs root.

Options:
  --snapshotter NAME   snapshotter holding the image's layers [overlayfs]
  --rw                 a writable snapshot instead of a read-only view
`;

const UNMOUNT_HELP = `Usage: berth unmount [--snapshotter NAME] DIR

Unmounts DIR (mounted by berth mount) and removes its snapshot.
`;

/** The snapshot key a mount of DIR uses: stable, so unmount finds it. */
async function keyFor(dir: string): Promise<string> {
  return `berth-mount-${(await sha256Hex(Deno.realPathSync(dir))).slice(0, 16)}`;
}

export const mountCommand: Command = {
  name: "mount",
  summary: "Mount an image's root filesystem on a directory",
  help: MOUNT_HELP,
  async run(g, args) {
    const { values, positionals } = parse(args, {
      snapshotter: { type: "string" },
      rw: { type: "boolean" },
    }, MOUNT_HELP);
    const [name, dir] = positionals;
    if (!name || !dir) throw new UsageError(`mount: IMAGE and DIR are required\n\n${MOUNT_HELP}`);
    const snapshotter = values.snapshotter ?? "overlayfs";
    const c = g.client();
    const { image } = await c.call(Images, "get", { name });
    const d = await details(c, image!);
    if (!d.config) throw new Error(`Image "${name}" has no manifest for this platform`);
    const config = parseImageConfig(await readBlob(c, d.config.digest), `config of "${name}"`);
    const parent = (await chainIds(config.rootfs.diff_ids)).at(-1) ?? "";
    const key = await keyFor(dir);
    const method = values.rw ? "prepare" : "view";
    const res = await c.call(Snapshots, method, { snapshotter, key, parent, labels: {} });
    try {
      await mountAll(
        res.mounts.map((m) => ({ type: m.type, source: m.source, options: [...m.options] })),
        dir,
      );
    } catch (e) {
      await c.call(Snapshots, "remove", { snapshotter, key }).catch(() => {});
      throw e;
    }
    g.out(dir);
    return 0;
  },
};

export const unmountCommand: Command = {
  name: "unmount",
  summary: "Unmount a directory mounted by berth mount",
  help: UNMOUNT_HELP,
  async run(g, args) {
    const { values, positionals } = parse(args, { snapshotter: { type: "string" } }, UNMOUNT_HELP);
    const [dir] = positionals;
    if (!dir) throw new UsageError(`unmount: DIR is required\n\n${UNMOUNT_HELP}`);
    const key = await keyFor(dir);
    await unmountAll(dir);
    await g.client().call(Snapshots, "remove", {
      snapshotter: values.snapshotter ?? "overlayfs",
      key,
    });
    g.out(dir);
    return 0;
  },
};
