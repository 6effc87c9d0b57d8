/**
 * Snapshotters: overlayfs (the default) and native, each a
 * {@link SnapshotStore} (namespaced metadata in SQLite) over its storage.
 *
 * ```ts
 * const sn = await openSnapshotter("overlayfs", { root: `${root}/snapshots/overlayfs`, db, namespaces, leases, log });
 * const mounts = await sn.prepare({ namespace: "default" }, "k1");
 * ```
 */
import type { MetaDb } from "../metadata/db.ts";
import type { NamespaceStore } from "../metadata/namespaces.ts";
import type { LeaseStore } from "../metadata/leases.ts";
import type { Logger } from "../util/log.ts";
import { invalidArgument } from "../core/errdefs.ts";
import { SnapshotStore } from "./store.ts";
import { OverlayBackend } from "./overlayfs.ts";
import { NativeBackend } from "./native.ts";
import type { Snapshotter } from "./snapshotter.ts";

export type { CreateOptions, Info, Kind, Scope, Snapshotter, Usage } from "./snapshotter.ts";
export { TARGET_LABEL } from "./snapshotter.ts";
export { type Backend, SNAPSHOT_MIGRATIONS, SnapshotStore } from "./store.ts";
export { OverlayBackend } from "./overlayfs.ts";
export { NativeBackend } from "./native.ts";
export { diskUsage } from "./usage.ts";

/** The snapshotters berth has, in the order they are listed. */
export const SNAPSHOTTER_NAMES = ["overlayfs", "native"] as const;

export interface OpenOptions {
  /** This snapshotter's own directory, e.g. `<root>/snapshots/overlayfs`. */
  root: string;
  db: MetaDb;
  namespaces: NamespaceStore;
  leases: LeaseStore;
  log: Logger;
}

/** Opens the snapshotter called `name` on its directory. */
export async function openSnapshotter(name: string, opts: OpenOptions): Promise<Snapshotter> {
  let backend;
  switch (name) {
    case "overlayfs":
      backend = await OverlayBackend.open(opts.root);
      break;
    case "native":
      backend = await NativeBackend.open(opts.root);
      break;
    default:
      throw invalidArgument(
        `snapshotter "${name}" is unknown (known: ${SNAPSHOTTER_NAMES.join(", ")})`,
      );
  }
  return new SnapshotStore({ name, backend, ...opts });
}
