/**
 * berth's shim v2 (containerd.task.v2.Task over ttrpc, runc as child
 * processes). This surface stays light for the daemon and the `start` and
 * `delete` commands; the long-lived server (server.ts, service.ts) is loaded
 * only by `berth shim … serve`.
 *
 * ```ts
 * import { startShim } from "./src/runtime/shim/mod.ts";
 * // In-process equivalent of `berth shim -namespace ns -id c1 -address SOCK start`:
 * const address = await startShim({
 *   namespace: "ns", id: "c1", address: "/run/berth/berth.sock", bundle: "/run/berth/bundles/ns/c1",
 *   publishBinary: "", debug: false, socket: "", ttrpcAddress: "/run/berth/berth.sock.ttrpc",
 * });
 * ```
 *
 * @module
 */
export { deleteShim, eventsAddress, GROUP_LABELS, groupOf, startShim } from "./binary.ts";
export type { ShimFlags } from "./binary.ts";
export {
  DEFAULT_SHIM_STATE,
  runcRoot,
  selfCommand,
  shimSocketPath,
  shimStateDir,
} from "./paths.ts";
export { readBundleOptions, runcFor, unmountRootfs } from "./bundle.ts";
export type { BundleOptions } from "./bundle.ts";
