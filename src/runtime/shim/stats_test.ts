import assert from "node:assert/strict";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { encodeMetricsV1 } from "./stats.ts";

function fields(bytes: Uint8Array): Map<number, (bigint | Uint8Array)[]> {
  const out = new Map<number, (bigint | Uint8Array)[]>();
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, type] = r.tag();
    const v = type === WireType.Varint ? BigInt(r.uint64()) : r.bytes();
    out.set(no, [...(out.get(no) ?? []), v]);
  }
  return out;
}

Deno.test("stats: runc's sample becomes cgroups v1 Metrics", () => {
  const m = fields(encodeMetricsV1({
    pids: { current: 2, limit: 100 },
    cpu: {
      usage: { total: 5000, kernel: 1000, user: 4000, percpu: [3000, 2000] },
      throttling: { periods: 7, throttledPeriods: 1, throttledTime: 9 },
    },
    memory: {
      usage: { limit: 9223372036854771712, usage: 4096, max: 8192, failcnt: 0 },
      raw: { cache: 12, total_rss: 34 },
    },
    blkio: { ioServiceBytesRecursive: [{ major: 8, minor: 0, op: "Read", value: 512 }] },
    hugetlb: { "2MB": { usage: 0, max: 0, failcnt: 0 } },
  }));
  const pids = fields(m.get(2)![0] as Uint8Array);
  assert.deepEqual([pids.get(1), pids.get(2)], [[2n], [100n]]);
  const cpu = fields(m.get(3)![0] as Uint8Array);
  const usage = fields(cpu.get(1)![0] as Uint8Array);
  assert.deepEqual(usage.get(1), [5000n]);
  // per_cpu is packed: one length-delimited field of varints.
  const per = new BinaryReader(usage.get(4)![0] as Uint8Array);
  assert.deepEqual([BigInt(per.uint64()), BigInt(per.uint64())], [3000n, 2000n]);
  assert.deepEqual(fields(cpu.get(2)![0] as Uint8Array).get(2), [1n]);
  const mem = fields(m.get(4)![0] as Uint8Array);
  assert.deepEqual(mem.get(1), [12n]); // cache
  assert.deepEqual(mem.get(19), [34n]); // total_rss
  const memUsage = fields(mem.get(33)![0] as Uint8Array);
  assert.deepEqual(memUsage.get(1), [9223372036854771712n]);
  assert.deepEqual(memUsage.get(2), [4096n]);
  const blk = fields(fields(m.get(5)![0] as Uint8Array).get(1)![0] as Uint8Array);
  assert.equal(new TextDecoder().decode(blk.get(1)![0] as Uint8Array), "Read");
  assert.deepEqual(blk.get(5), [512n]);
  const huge = fields(m.get(1)![0] as Uint8Array);
  assert.equal(new TextDecoder().decode(huge.get(4)![0] as Uint8Array), "2MB");
});
