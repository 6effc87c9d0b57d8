/**
 * The snapshotter contract, as containerd defines it: named filesystem trees
 * stacked by parent, handed out as mounts. Keys are per namespace; each
 * snapshot's storage has a global id of its own.
 *
 * Lifecycle: `prepare` makes an active (writable) snapshot, `view` a read-only
 * one; `commit` turns an active snapshot into a committed one under a new name,
 * which can then be the parent of others. Only committed snapshots are parents,
 * and a snapshot with children cannot be removed.
 */
import type { Mount } from "../mount/mod.ts";
import type { Labels } from "../metadata/db.ts";

export type Kind = "active" | "view" | "committed";

export interface Info {
  /** The key (active, view) or name (committed). */
  name: string;
  /** The parent's name, "" for none. */
  parent: string;
  kind: Kind;
  labels: Labels;
  createdAt: Date;
  updatedAt: Date;
}

export interface Usage {
  /** Bytes on disk (allocated blocks) of the snapshot's own tree. */
  size: number;
  /** Distinct inodes in it. */
  inodes: number;
}

/** Who is asking: the namespace, and the lease that should hold new snapshots. */
export interface Scope {
  namespace: string;
  lease?: string | undefined;
}

export interface CreateOptions {
  /** A committed snapshot to build on; none for an empty tree. */
  parent?: string;
  labels?: Labels;
}

/** Label that names the committed snapshot an unpack intends to create. */
export const TARGET_LABEL = "containerd.io/snapshot.ref";

export interface Snapshotter {
  /** "overlayfs", "native". */
  readonly name: string;
  /** The directory holding this snapshotter's storage. */
  readonly root: string;
  stat(scope: Scope, key: string): Promise<Info>;
  /**
   * Updates labels: all of them (no paths, or "labels") or single ones
   * ("labels.<key>"); other fields are immutable.
   */
  update(
    scope: Scope,
    info: { name: string; labels: Labels },
    paths?: readonly string[],
  ): Promise<Info>;
  usage(scope: Scope, key: string): Promise<Usage>;
  /** The mounts of an active snapshot or a view. */
  mounts(scope: Scope, key: string): Promise<Mount[]>;
  prepare(scope: Scope, key: string, opts?: CreateOptions): Promise<Mount[]>;
  view(scope: Scope, key: string, opts?: CreateOptions): Promise<Mount[]>;
  commit(scope: Scope, name: string, key: string, opts?: { labels?: Labels }): Promise<void>;
  remove(scope: Scope, key: string): Promise<void>;
  /** The snapshots of the namespace matching any of `filters` (containerd syntax), by name. */
  walk(scope: Scope, filters?: readonly string[]): Promise<Info[]>;
  /** Removes storage no snapshot refers to any more (left by crashes or busy removals). */
  cleanup(): Promise<void>;
}
