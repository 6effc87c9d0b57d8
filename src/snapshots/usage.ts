/** Disk usage of a directory tree, counted as containerd's fs.DiskUsage does. */
import type { Usage } from "./snapshotter.ts";

/**
 * Sums the allocated blocks (st_blocks × 512) of each distinct inode under
 * `dir`, the directory itself included; hard links count once.
 */
export async function diskUsage(dir: string): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0;
  const visit = async (path: string) => {
    const st = await Deno.lstat(path);
    const id = `${st.dev}:${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      size += (st.blocks ?? 0) * 512;
    }
    if (st.isDirectory) {
      for await (const e of Deno.readDir(path)) await visit(`${path}/${e.name}`);
    }
  };
  await visit(dir);
  return { size, inodes: seen.size };
}
