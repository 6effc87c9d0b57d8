/**
 * Garbage collection on containerd's label model, as a mark-and-sweep over
 * the resources of every store.
 *
 * - Roots: images (their targets), containers (their snapshots), resources held
 *   by unexpired leases, and any object labelled `containerd.io/gc.root`.
 * - Edges: `containerd.io/gc.ref.content[.<anything>]=<digest>` points to a blob,
 *   `containerd.io/gc.ref.snapshot.<snapshotter>[/<anything>]=<key>` to a
 *   snapshot; a snapshot also references its parent.
 * - Everything of a swept kind not reached from a root is removed.
 *
 * Each store takes part through a {@link GcParticipant}, so the collector knows
 * nothing of their tables: stores added later (snapshotters, containers) just
 * register one.
 */

/** A node of the reference graph: `kind` is "content", "snapshots/<name>", "images", ... */
export interface GcNode {
  kind: string;
  namespace: string;
  id: string;
}

export interface GcParticipant {
  /** The kind of node this participant owns (and may sweep). */
  readonly kind: string;
  /** Nodes of this kind that are roots by themselves (images, gc.root labels). */
  roots(): Iterable<GcNode>;
  /** Nodes this node references (from its labels, parent, target...). */
  refs(node: GcNode): Iterable<GcNode>;
  /** Every node of this kind; those not marked are handed to `remove`. */
  all(): Iterable<GcNode>;
  /** Removes unreferenced nodes. Absent for kinds that are never swept. */
  remove?(nodes: GcNode[]): Promise<void> | void;
}

export const ROOT_LABEL = "containerd.io/gc.root";
export const CONTENT_REF_PREFIX = "containerd.io/gc.ref.content";
export const SNAPSHOT_REF_PREFIX = "containerd.io/gc.ref.snapshot.";

/** The references a label set makes, per containerd's gc.ref labels. */
export function labelRefs(namespace: string, labels: Record<string, string>): GcNode[] {
  const out: GcNode[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (k === CONTENT_REF_PREFIX || k.startsWith(CONTENT_REF_PREFIX + ".")) {
      out.push({ kind: "content", namespace, id: v });
    } else if (k.startsWith(SNAPSHOT_REF_PREFIX)) {
      const rest = k.slice(SNAPSHOT_REF_PREFIX.length);
      const snapshotter = rest.split("/")[0];
      if (snapshotter) out.push({ kind: `snapshots/${snapshotter}`, namespace, id: v });
    }
  }
  return out;
}

const keyOf = (n: GcNode) => `${n.kind}\u0000${n.namespace}\u0000${n.id}`;

export interface GcStats {
  marked: number;
  removed: Record<string, number>;
  ms: number;
}

export class Collector {
  #parts = new Map<string, GcParticipant>();
  #extraRoots: Array<() => Iterable<GcNode>> = [];
  #later: Array<() => Iterable<GcParticipant>> = [];
  #running: Promise<GcStats> | undefined;

  register(p: GcParticipant): void {
    this.#parts.set(p.kind, p);
  }

  /** Participants known only later (snapshotters register after start-up): asked at each run. */
  registerLater(fn: () => Iterable<GcParticipant>): void {
    this.#later.push(fn);
  }

  /** Adds a source of roots that owns no nodes itself (leases, containers). */
  addRoots(fn: () => Iterable<GcNode>): void {
    this.#extraRoots.push(fn);
  }

  /** The set of nodes reachable from the roots. */
  mark(): Set<string> {
    const marked = new Set<string>();
    const stack: GcNode[] = [];
    const push = (n: GcNode) => {
      const k = keyOf(n);
      if (!marked.has(k)) {
        marked.add(k);
        stack.push(n);
      }
    };
    for (const p of this.#parts.values()) for (const n of p.roots()) push(n);
    for (const fn of this.#extraRoots) for (const n of fn()) push(n);
    while (stack.length > 0) {
      const n = stack.pop()!;
      const p = this.#parts.get(n.kind);
      if (p) { for (const r of p.refs(n)) push(r); }
    }
    return marked;
  }

  async #collect(): Promise<GcStats> {
    const start = performance.now();
    for (const fn of this.#later) {
      for (const p of fn()) if (!this.#parts.has(p.kind)) this.register(p);
    }
    const marked = this.mark();
    const removed: Record<string, number> = {};
    for (const p of this.#parts.values()) {
      if (!p.remove) continue;
      const dead = [...p.all()].filter((n) => !marked.has(keyOf(n)));
      if (dead.length > 0) {
        await p.remove(dead);
        removed[p.kind] = dead.length;
      }
    }
    return { marked: marked.size, removed, ms: performance.now() - start };
  }

  /**
   * Runs a collection. Calls made while one runs are folded into one more run
   * after it, so every caller sees a collection that started after its call.
   */
  collect(): Promise<GcStats> {
    if (this.#running) {
      return this.#running.then(() => this.collect());
    }
    this.#running = this.#collect().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }
}
