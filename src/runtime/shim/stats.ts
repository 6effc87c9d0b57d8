/**
 * Task stats: what `runc events --stats` prints, encoded as containerd's
 * cgroups v1 `io.containerd.cgroups.v1.Metrics` (the Any type containerd's
 * runc shim answers Stats with on cgroup v1 hosts, which `ctr tasks metrics`
 * decodes).
 *
 * The message is written field by field with the protobuf wire writer; the
 * field numbers are those of containerd/cgroups stats/v1/metrics.proto. Only
 * what runc reports is filled: pids, cpu, memory, blkio and hugetlb.
 */
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

/** The type URL of the encoded metrics. */
export const METRICS_V1_TYPE = "io.containerd.cgroups.v1.Metrics";

type Json = Record<string, unknown>;

const MAX_U64 = (1n << 64n) - 1n;

function u64(v: unknown): bigint {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) return 0n;
  const b = BigInt(Math.trunc(v));
  return b > MAX_U64 ? MAX_U64 : b;
}

function obj(v: unknown): Json {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v as Json : {};
}

/** Writes uint64 fields (skipping zeros, as proto3 does). */
function scalars(w: BinaryWriter, fields: [number, unknown][]): void {
  for (const [no, v] of fields) {
    const n = u64(v);
    if (n !== 0n) w.tag(no, WireType.Varint).uint64(n);
  }
}

/** Writes a sub-message built by `fill` as field `no`. */
function message(w: BinaryWriter, no: number, fill: (w: BinaryWriter) => void): void {
  const sub = new BinaryWriter();
  fill(sub);
  const bytes = sub.finish();
  if (bytes.length > 0) w.tag(no, WireType.LengthDelimited).bytes(bytes);
}

// MemoryStat fields 1..32, in order, as the cgroup v1 memory.stat keys runc passes in `raw`.
const MEMORY_RAW = [
  "cache",
  "rss",
  "rss_huge",
  "mapped_file",
  "dirty",
  "writeback",
  "pgpgin",
  "pgpgout",
  "pgfault",
  "pgmajfault",
  "inactive_anon",
  "active_anon",
  "inactive_file",
  "active_file",
  "unevictable",
  "hierarchical_memory_limit",
  "hierarchical_memsw_limit",
  "total_cache",
  "total_rss",
  "total_rss_huge",
  "total_mapped_file",
  "total_dirty",
  "total_writeback",
  "total_pgpgin",
  "total_pgpgout",
  "total_pgfault",
  "total_pgmajfault",
  "total_inactive_anon",
  "total_active_anon",
  "total_inactive_file",
  "total_active_file",
  "total_unevictable",
];

function memoryEntry(w: BinaryWriter, no: number, e: unknown): void {
  const m = obj(e);
  message(w, no, (s) => scalars(s, [[1, m.limit], [2, m.usage], [3, m.max], [4, m.failcnt]]));
}

// BlkIOStat fields 1..8 and runc's names for them.
const BLKIO = [
  "ioServiceBytesRecursive",
  "ioServicedRecursive",
  "ioQueueRecursive",
  "ioServiceTimeRecursive",
  "ioWaitTimeRecursive",
  "ioMergedRecursive",
  "ioTimeRecursive",
  "sectorsRecursive",
];

/**
 * Encodes runc's stats (the `data` of a `runc events --stats` event) as a
 * cgroups v1 Metrics message.
 */
export function encodeMetricsV1(data: Json): Uint8Array {
  const w = new BinaryWriter();
  for (const [pagesize, h] of Object.entries(obj(data.hugetlb))) {
    const e = obj(h);
    message(w, 1, (s) => {
      scalars(s, [[1, e.usage], [2, e.max], [3, e.failcnt]]);
      s.tag(4, WireType.LengthDelimited).string(pagesize);
    });
  }
  const pids = obj(data.pids);
  message(w, 2, (s) => scalars(s, [[1, pids.current], [2, pids.limit]]));
  const cpu = obj(data.cpu);
  message(w, 3, (s) => {
    const usage = obj(cpu.usage);
    message(s, 1, (u) => {
      scalars(u, [[1, usage.total], [2, usage.kernel], [3, usage.user]]);
      const per = Array.isArray(usage.percpu) ? usage.percpu : [];
      if (per.length > 0) {
        u.tag(4, WireType.LengthDelimited).fork();
        for (const v of per) u.uint64(u64(v));
        u.join();
      }
    });
    const t = obj(cpu.throttling);
    message(
      s,
      2,
      (x) => scalars(x, [[1, t.periods], [2, t.throttledPeriods], [3, t.throttledTime]]),
    );
  });
  const mem = obj(data.memory);
  message(w, 4, (s) => {
    const raw = obj(mem.raw);
    scalars(s, MEMORY_RAW.map((k, i) => [i + 1, raw[k]] as [number, unknown]));
    memoryEntry(s, 33, mem.usage);
    memoryEntry(s, 34, mem.swap);
    memoryEntry(s, 35, mem.kernel);
    memoryEntry(s, 36, mem.kernelTCP);
  });
  const blkio = obj(data.blkio);
  message(w, 5, (s) => {
    BLKIO.forEach((name, i) => {
      const list = Array.isArray(blkio[name]) ? blkio[name] as unknown[] : [];
      for (const item of list) {
        const e = obj(item);
        message(s, i + 1, (b) => {
          if (typeof e.op === "string" && e.op) b.tag(1, WireType.LengthDelimited).string(e.op);
          scalars(b, [[3, e.major], [4, e.minor], [5, e.value]]);
        });
      }
    });
  });
  return w.finish();
}
