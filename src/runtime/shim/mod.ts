/**
 * berth's shim v2 (containerd.task.v2.Task over ttrpc, runc as child
 * processes). This surface stays light for the daemon and the `start` and
 * `delete` commands; the long-lived server (server.ts, service.ts) is loaded
 * only by `berth shim … serve`.
 *
 * What lives where (so a restarted daemon finds its shims):
 * - the shim's socket: `<state>/s/<sha256(address/namespace/group)>` (or
 *   `/run/berth/s/…` when that path would not fit a unix socket), with its
 *   `.lock` and, under `-debug`, its `.log`;
 * - runc's root: `<state>/runc/<namespace>` (`<Options.root>/<namespace>`
 *   when the daemon passes runc Options with a root);
 * - in each bundle: `address` (the shim's ttrpc address), `shim.pid`,
 *   `init.pid`, `options.json` (runtime options, read by `shim delete`).
 *
 * `<state>` is `$BERTH_SHIM_STATE`, else the directory of the daemon's socket
 * when it is named `berth.sock`, else `/run/berth` (paths.ts). Exit statuses
 * live in the shim's memory: the shim outlives daemon restarts, and events it
 * could not deliver wait in its queue until the daemon's ttrpc socket
 * answers again.
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
