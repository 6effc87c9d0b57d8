/** Reading /proc/self/mountinfo: which paths are mount points. */

/** Undoes the octal escapes (`\040` for a space) of mountinfo fields. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface MountInfo {
  id: number;
  parent: number;
  mountPoint: string;
  fsType: string;
  source: string;
  options: string;
  superOptions: string;
}

/** Parses mountinfo text (proc(5)). */
export function parseMountInfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const [left, right] = line.split(" - ");
    if (left === undefined || right === undefined) continue;
    const f = left.split(" ");
    const r = right.split(" ");
    out.push({
      id: Number(f[0]),
      parent: Number(f[1]),
      mountPoint: unescape(f[4] ?? ""),
      options: f[5] ?? "",
      fsType: r[0] ?? "",
      source: unescape(r[1] ?? ""),
      superOptions: r[2] ?? "",
    });
  }
  return out;
}

/** The mounts of this process's mount namespace. */
export async function readMountInfo(): Promise<MountInfo[]> {
  return parseMountInfo(await Deno.readTextFile("/proc/self/mountinfo"));
}

/** Mount points at or below `dir`. */
export async function mountsUnder(dir: string): Promise<MountInfo[]> {
  const prefix = dir.endsWith("/") ? dir : dir + "/";
  return (await readMountInfo()).filter((m) =>
    m.mountPoint === dir || m.mountPoint.startsWith(prefix)
  );
}
