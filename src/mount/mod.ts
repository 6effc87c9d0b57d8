/**
 * Mounts: containerd `Mount` lists onto directories, and back.
 *
 * ```ts
 * import { withTempMount } from "../mount/mod.ts";
 * await withTempMount(mounts, (root) => Deno.readTextFile(`${root}/etc/os-release`));
 * ```
 */
export {
  type Mount,
  mountAll,
  type MountMethod,
  mountOne,
  type TempMountOptions,
  unmount,
  unmountAll,
  type UnmountOptions,
  withTempMount,
} from "./mount.ts";
export {
  compactLowerdirs,
  escapeLowerdir,
  MS,
  optionsSize,
  type ParsedOptions,
  parseMountOptions,
  splitLowerdirs,
} from "./options.ts";
export { type MountInfo, mountsUnder, parseMountInfo, readMountInfo } from "./mountinfo.ts";
