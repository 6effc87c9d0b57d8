/**
 * The local content store: blobs by digest and resumable ingests by ref.
 * Namespaces and labels are the metadata layer's (src/metadata/content.ts).
 */
export { type BlobInfo, LocalContentStore, type ReadOptions, type WriterOptions } from "./store.ts";
export {
  type CommitOptions,
  type CommitResult,
  type IngestStatus,
  IngestWriter,
} from "./writer.ts";
export { CANONICAL, digestProblem, splitDigest, validateDigest } from "./digest.ts";
