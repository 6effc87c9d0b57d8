/**
 * Layer archives: apply a layer blob (tar, tar+gzip, tar+zstd) into a
 * snapshot directory in one streaming pass that also computes the diffID.
 *
 * ```ts
 * import { applyLayer } from "./src/archive/mod.ts";
 * const { diffId, size } = await applyLayer(body, upperDir, {
 *   mode: "overlay",
 *   parents: lowerDirs,
 *   mediaType: desc.mediaType,
 *   expectedDiffId: config.rootfs.diff_ids[i],
 * });
 * ```
 */
export {
  applyLayer,
  type ApplyMode,
  type ApplyOptions,
  type ApplyResult,
  LowersNeededError,
} from "./apply.ts";
export { type Compression, compressionOf, decompress, detectCompression } from "./compression.ts";
export {
  type TarEntry,
  type TarEntryType,
  TarFormatError,
  TarReader,
  type TarSink,
} from "./tar_reader.ts";
export { buildTar, tarEntry, type TarWriteEntry } from "./tar_writer.ts";
