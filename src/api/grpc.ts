/**
 * berth's gRPC server: the protocol (gRPC over HTTP/2, PROTOCOL-HTTP2.md in
 * grpc/grpc) on our own HTTP/2 server (src/h2), serving protobuf-es service
 * descriptors on a unix socket. Each handler gets the decoded request and a
 * {@link CallContext}; thrown errors are mapped to gRPC statuses once, here.
 * Every service added is also recorded (see `servicesOf` in ./service.ts) so
 * the daemon serves it over ttrpc as well.
 *
 * Why not grpc-js: on Deno it runs on node:http2 over nghttp2, which costs
 * several times containerd's CPU per call, held back each call's trailers
 * until the client's next frame, and aborted the daemon on client GOAWAYs
 * after a few hundred streams (denoland/deno#36788). Here a unary response is
 * one write of HEADERS, DATA and trailers.
 */
import {
  create,
  type DescMessage,
  type DescMethod,
  fromBinary,
  toBinary,
} from "@bufbuild/protobuf";
import type { DescService } from "@bufbuild/protobuf";
import type { GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { Code, toGrpcStatus } from "./errors.ts";
import type { Logger } from "../util/log.ts";
import { CallContext, recordService, type ServiceImpl } from "./service.ts";
import { H2Connection, type HeaderField, type ServerStream } from "../h2/server.ts";

export { CallContext, LEASE_HEADER, NAMESPACE_HEADER } from "./service.ts";
export type { Send, ServiceImpl } from "./service.ts";

/** A failure with its gRPC status, raised by the protocol layer itself. */
export class GrpcStatusError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

export interface GrpcServerOptions {
  log: Logger;
  /** Largest request message accepted (default 16 MiB). */
  maxReceiveMessageLength?: number;
  /** Largest response message sent (default 16 MiB). */
  maxSendMessageLength?: number;
}

type AnyHandler = (...args: unknown[]) => Promise<unknown>;

interface Method {
  path: string;
  desc: DescMethod;
  fn: AnyHandler;
}

const RESPONSE_HEADERS: HeaderField[] = [
  [":status", "200"],
  ["content-type", "application/grpc"],
];
const OK_TRAILERS: HeaderField[] = [["grpc-status", "0"]];

/** gRPC over HTTP/2 on unix sockets. */
export class GrpcServer {
  #log: Logger;
  #maxRecv: number;
  #maxSend: number;
  #methods = new Map<string, Method>();
  #services = new Set<string>();
  #listeners: Deno.Listener[] = [];
  #conns = new Set<H2Connection>();

  constructor(opts: GrpcServerOptions) {
    this.#log = opts.log;
    this.#maxRecv = opts.maxReceiveMessageLength ?? 16 << 20;
    this.#maxSend = opts.maxSendMessageLength ?? 16 << 20;
  }

  /** Serves `impl` for `service`; methods it lacks answer UNIMPLEMENTED. */
  addService<S extends GenServiceMethods>(
    service: DescService & { method: S },
    impl: ServiceImpl<S>,
  ): void {
    this.#services.add(service.typeName);
    for (const m of service.methods) {
      const fn = (impl as Record<string, unknown>)[m.localName];
      if (typeof fn !== "function") continue;
      const path = `/${service.typeName}/${m.name}`;
      this.#methods.set(path, {
        path,
        desc: m,
        fn: (...args) => (fn as AnyHandler).apply(impl, args),
      });
    }
    recordService(this, service, impl);
  }

  /** Starts accepting connections on the unix socket `path` (created here). */
  listen(path: string): void {
    const listener = Deno.listen({ transport: "unix", path });
    this.#listeners.push(listener);
    (async () => {
      try {
        for await (const conn of listener) this.#serveConnection(conn);
      } catch (err) {
        if (!(err instanceof Deno.errors.BadResource)) {
          this.#log.error("accepting connections failed", { error: err });
        }
      }
    })();
  }

  /** Connections open now (for tests and metrics). */
  get connections(): number {
    return this.#conns.size;
  }

  /**
   * Stops accepting, tells every client to go away, and waits up to `graceMs`
   * for the calls in flight; then closes what is left.
   */
  async shutdown(graceMs = 5000): Promise<void> {
    for (const l of this.#listeners.splice(0)) {
      try {
        l.close();
      } catch { /* closed */ }
    }
    const conns = [...this.#conns];
    for (const c of conns) c.goAway();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(conns.map((c) => c.done)),
      new Promise((r) => (timer = setTimeout(r, graceMs))),
    ]);
    clearTimeout(timer);
    for (const c of conns) c.close();
  }

  #serveConnection(conn: Deno.Conn): void {
    const h2 = new H2Connection(conn, {
      onStream: (s) => {
        this.#handle(s).catch((err) => {
          this.#log.error("call handling failed", {
            error: err instanceof Error ? err.stack : err,
          });
          s.reset();
        });
      },
      onError: (err) => this.#log.debug("connection ended on an error", { error: err.message }),
    });
    this.#conns.add(h2);
    h2.serve().finally(() => this.#conns.delete(h2));
  }

  async #handle(s: ServerStream): Promise<void> {
    if (s.header(":method") !== "POST") {
      return s.respond([[":status", "405"]], true);
    }
    if (!(s.header("content-type") ?? "").startsWith("application/grpc")) {
      return s.respond([[":status", "415"]], true);
    }
    const path = s.header(":path") ?? "";
    const m = this.#methods.get(path);
    if (!m) {
      return this.#fail(s, path, new GrpcStatusError(Code.UNIMPLEMENTED, this.#unknown(path)));
    }
    const encoding = s.header("grpc-encoding");
    if (encoding && encoding !== "identity") {
      return this.#fail(
        s,
        path,
        new GrpcStatusError(
          Code.UNIMPLEMENTED,
          `grpc: Decompressor is not installed for grpc-encoding "${encoding}"`,
        ),
      );
    }
    // The handler's signal: the client cancelling, the connection ending, or the deadline.
    const ac = new AbortController();
    const onAbort = () => ac.abort(s.signal.reason);
    s.signal.addEventListener("abort", onAbort, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = s.header("grpc-timeout");
    if (timeout) {
      const ms = parseTimeout(timeout);
      if (ms === undefined) {
        s.signal.removeEventListener("abort", onAbort);
        return this.#fail(
          s,
          path,
          new GrpcStatusError(Code.INTERNAL, `malformed grpc-timeout "${timeout}"`),
        );
      }
      timer = setTimeout(() => {
        const err = new GrpcStatusError(Code.DEADLINE_EXCEEDED, "context deadline exceeded");
        ac.abort(err);
        this.#fail(s, path, err);
      }, ms);
    }
    const ctx = new CallContext((name) => s.header(name), ac.signal);
    const reader = new MessageReader(s, this.#maxRecv);
    const decode = (bytes: Uint8Array) => {
      try {
        return fromBinary(m.desc.input, bytes);
      } catch (err) {
        throw new GrpcStatusError(
          Code.INTERNAL,
          `grpc: error unmarshalling request: ${(err as Error).message}`,
        );
      }
    };
    const requests = async function* () {
      for (;;) {
        const bytes = await reader.next();
        if (bytes === null) return;
        yield decode(bytes);
      }
    };
    const send = async (msg: unknown) => {
      if (s.localEnded) throw new Error("call cancelled");
      if (!s.headersSent) s.respond(RESPONSE_HEADERS);
      await s.write(this.#encode(m.desc, msg));
    };
    const t0 = performance.now();
    try {
      switch (m.desc.methodKind) {
        case "unary": {
          const bytes = await reader.next();
          if (bytes === null) {
            throw new GrpcStatusError(Code.INTERNAL, "grpc: the request has no message");
          }
          const res = await m.fn(decode(bytes), ctx);
          const out = this.#encode(m.desc, res);
          if (s.localEnded) return;
          s.respond(RESPONSE_HEADERS);
          s.write(out).catch(() => {}); // framed now; a reset stream drops it
          s.end(OK_TRAILERS);
          this.#log.trace("call", { method: path, ms: +(performance.now() - t0).toFixed(1) });
          return;
        }
        case "server_streaming": {
          const bytes = await reader.next();
          if (bytes === null) {
            throw new GrpcStatusError(Code.INTERNAL, "grpc: the request has no message");
          }
          await m.fn(decode(bytes), ctx, send);
          break;
        }
        case "client_streaming": {
          const res = await m.fn(requests(), ctx);
          const out = this.#encode(m.desc, res);
          if (s.localEnded) return;
          s.respond(RESPONSE_HEADERS);
          s.write(out).catch(() => {});
          break;
        }
        case "bidi_streaming":
          await m.fn(requests(), ctx, send);
          break;
      }
      if (!s.localEnded) {
        if (!s.headersSent) s.respond(RESPONSE_HEADERS);
        s.end(OK_TRAILERS);
      }
    } catch (err) {
      this.#fail(s, path, err);
    } finally {
      clearTimeout(timer);
      s.signal.removeEventListener("abort", onAbort);
    }
  }

  /** A response message with its length prefix. */
  #encode(desc: DescMethod, msg: unknown): Uint8Array {
    const body = toBinary(desc.output, create(desc.output as DescMessage, msg as never));
    if (body.length > this.#maxSend) {
      throw new GrpcStatusError(
        Code.RESOURCE_EXHAUSTED,
        `grpc: trying to send message larger than max (${body.length} vs. ${this.#maxSend})`,
      );
    }
    const out = new Uint8Array(5 + body.length);
    new DataView(out.buffer).setUint32(1, body.length);
    out.set(body, 5);
    return out;
  }

  /** Ends the call with an error status (trailers-only when nothing was sent yet). */
  #fail(s: ServerStream, path: string, err: unknown): void {
    const { code, details } = err instanceof GrpcStatusError
      ? { code: err.code, details: err.message }
      : toGrpcStatus(err);
    if (s.localEnded) return; // cancelled, or the deadline already answered
    if (code === Code.UNKNOWN || code === Code.INTERNAL) {
      this.#log.error("call failed", {
        method: path,
        error: err instanceof Error ? err.stack : err,
      });
    } else {
      this.#log.debug("call refused", { method: path, code: codeName(code), error: details });
    }
    const status: HeaderField[] = [
      ["grpc-status", String(code)],
      ["grpc-message", percentEncode(details)],
    ];
    if (s.headersSent) s.end(status);
    else s.respond([...RESPONSE_HEADERS, ...status], true);
  }

  #unknown(path: string): string {
    const slash = path.lastIndexOf("/");
    const service = path.slice(1, slash), method = path.slice(slash + 1);
    if (slash <= 0 || !this.#services.has(service)) return `unknown service ${service || path}`;
    return `unknown method ${method} for service ${service}`;
  }
}

/** Splits a request body into gRPC messages (a flag byte and a 4-byte length each). */
class MessageReader {
  #s: ServerStream;
  #max: number;
  #buf = new Uint8Array(0);
  #len = 0;

  constructor(s: ServerStream, max: number) {
    this.#s = s;
    this.#max = max;
  }

  /** The next message, or null when the client ended the stream between messages. */
  async next(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.#len >= 5) {
        const flag = this.#buf[0]!;
        const size = new DataView(this.#buf.buffer, this.#buf.byteOffset).getUint32(1);
        if (flag & 1) {
          throw new GrpcStatusError(
            Code.INTERNAL,
            "grpc: compressed message without a grpc-encoding",
          );
        }
        if (size > this.#max) {
          throw new GrpcStatusError(
            Code.RESOURCE_EXHAUSTED,
            `grpc: received message larger than max (${size} vs. ${this.#max})`,
          );
        }
        if (this.#len >= 5 + size) {
          const msg = this.#buf.slice(5, 5 + size);
          this.#buf.copyWithin(0, 5 + size, this.#len);
          this.#len -= 5 + size;
          return msg;
        }
      }
      const chunk = await this.#s.read();
      if (chunk === null) {
        if (this.#len === 0) return null;
        throw new GrpcStatusError(Code.INTERNAL, "grpc: the request ended inside a message");
      }
      if (this.#len === 0 && chunk.length >= 5) {
        // The common case: a whole message in one chunk, used in place.
        const size = new DataView(chunk.buffer, chunk.byteOffset).getUint32(1);
        if (chunk.length === 5 + size && !(chunk[0]! & 1) && size <= this.#max) {
          return chunk.subarray(5);
        }
      }
      if (this.#buf.length < this.#len + chunk.length) {
        const bigger = new Uint8Array(Math.max(this.#len + chunk.length, this.#buf.length * 2));
        bigger.set(this.#buf.subarray(0, this.#len));
        this.#buf = bigger;
      }
      this.#buf.set(chunk, this.#len);
      this.#len += chunk.length;
    }
  }
}

/** grpc-timeout ("100m", "5S", ...) in milliseconds; undefined if malformed. */
export function parseTimeout(v: string): number | undefined {
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 }[m[2] as "H"];
  return Math.min(n * unit, 2 ** 31 - 1);
}

/** grpc-message's encoding: UTF-8, with bytes outside printable ASCII and '%' as %XX. */
export function percentEncode(s: string): string {
  let plain = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return s;
  let out = "";
  for (const b of new TextEncoder().encode(s)) {
    out += b < 0x20 || b > 0x7e || b === 0x25
      ? `%${b.toString(16).toUpperCase().padStart(2, "0")}`
      : String.fromCharCode(b);
  }
  return out;
}

function codeName(code: number): string {
  for (const [k, v] of Object.entries(Code)) if (v === code) return k;
  return String(code);
}
