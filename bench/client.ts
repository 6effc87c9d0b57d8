/**
 * The benchmark's gRPC client, run as its own process by bench/mod.ts:
 *
 *   deno run -A bench/client.ts SOCK throughput CONCURRENCY SECONDS
 *   deno run -A bench/client.ts SOCK latency CALLS
 *
 * It prints one JSON line: `{"calls": N, "perSec": X}` or `{"medianMs": X}`.
 * The same client code runs against berth and containerd.
 *
 * It exits without closing its channel: exiting only closes the socket, which
 * is what the bench needs. (Closing a grpc-js channel sends GOAWAY, which
 * crashed Deno 2.9.6's node:http2 after a few hundred streams,
 * denoland/deno#36788. berth's daemon no longer runs on node:http2, and
 * tests/robustness_test.ts checks that such clients leave it serving.)
 */
import * as grpc from "@grpc/grpc-js";
import { grpcDefinition } from "../tests/_grpc.ts";
import { Version } from "../src/gen/containerd/services/version/v1/version_pb.ts";

function connect(sock: string): () => Promise<void> {
  const Ctor = grpc.makeGenericClientConstructor(grpcDefinition(Version), "Version");
  const client = new Ctor(`unix:${sock}`, grpc.credentials.createInsecure());
  const version = (client as unknown as Record<string, (...a: unknown[]) => void>).version!;
  return () =>
    new Promise<void>((resolve, reject) =>
      version.call(client, {}, (err: Error | null) => (err ? reject(err) : resolve()))
    );
}

/** `concurrency` Version calls in flight on one channel for `seconds`. */
async function throughput(sock: string, concurrency: number, seconds: number) {
  const call = connect(sock);
  // Warm up: the connection, and the JIT on both sides.
  for (let i = 0; i < 200; i++) await call();
  let calls = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await call();
        calls++;
      }
    }),
  );
  return { calls, perSec: calls / ((performance.now() - start) / 1000) };
}

/** The median wall time of `n` Version calls made one at a time. */
async function latency(sock: string, n: number) {
  const call = connect(sock);
  for (let i = 0; i < 50; i++) await call();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)]! };
}

if (import.meta.main) {
  const [sock, mode, a, b] = Deno.args;
  let result: unknown;
  if (sock && mode === "throughput") result = await throughput(sock, Number(a), Number(b));
  else if (sock && mode === "latency") result = await latency(sock, Number(a));
  else {
    console.error("Usage: client.ts SOCK throughput CONCURRENCY SECONDS | SOCK latency CALLS");
    Deno.exit(2);
  }
  console.log(JSON.stringify(result));
  Deno.exit(0);
}
