/**
 * A ttrpc server: serves protobuf-es service descriptors over containerd's
 * ttrpc framing on unix sockets. It is what berth's shim answers the daemon
 * with (containerd.task.v2.Task) and what the daemon receives shim events on
 * (containerd.services.events.ttrpc.v1.Events).
 *
 * Behaviour follows containerd/ttrpc v1.2: requests on one connection run
 * concurrently and are answered in completion order; unknown services and
 * methods answer UNIMPLEMENTED (`service X`, `method X`); an even stream id
 * or an undecodable request answers INVALID_ARGUMENT; an oversized message
 * answers RESOURCE_EXHAUSTED; a closed connection cancels its calls.
 *
 * Streaming methods (1.2) are chosen by the registered method's kind, as in
 * ttrpc: a server-streaming or bidi handler's messages go out as data frames
 * and its end as an empty data frame flagged remote-closed + no-data; a
 * client-streaming handler's result and any handler's error go out as the
 * Response. The client's data frames feed the handler's request iterator,
 * which ends at the frame flagged remote-closed. Data for a stream that is
 * not (or no longer) open answers INVALID_ARGUMENT `StreamID is no longer
 * active`.
 *
 * ```ts
 * const server = new TtrpcServer();
 * server.register(Task, { connect: async () => ({ shimPid: Deno.pid }) });
 * await server.listen("/run/berth/s/abc");
 * ```
 */
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import type { GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { type Request, RequestSchema, ResponseSchema } from "../gen/ttrpc/ttrpc_pb.ts";
import { BerthError, failedPrecondition, invalidArgument } from "../core/errdefs.ts";
import { validateIdentifier } from "../core/identifiers.ts";
import { Logger } from "../util/log.ts";
import {
  Flags,
  FrameReader,
  FrameWriter,
  GRPC_NAMESPACE_KEY,
  MAX_MESSAGE_LENGTH,
  MessageType,
  TTRPC_NAMESPACE_KEY,
} from "./frame.ts";
import { Code, statusOf, type WireStatus } from "./status.ts";
import { Inbox } from "./inbox.ts";

/** What a handler knows about its call besides the request. */
export class TtrpcContext {
  /** Metadata of the call; keys are lower case, a key may repeat. */
  readonly metadata: ReadonlyMap<string, readonly string[]>;
  /** Aborted when the caller's deadline passes or its connection closes. */
  readonly signal: AbortSignal;
  /** `/service/method`. */
  readonly method: string;
  constructor(
    method: string,
    metadata: ReadonlyMap<string, readonly string[]>,
    signal: AbortSignal,
  ) {
    this.method = method;
    this.metadata = metadata;
    this.signal = signal;
  }
  /** The first value of a metadata key. */
  get(key: string): string | undefined {
    return this.metadata.get(key.toLowerCase())?.[0];
  }
  /** The namespace of the call, validated, or undefined when none was sent. */
  get namespaceOrUndefined(): string | undefined {
    const ns = this.get(TTRPC_NAMESPACE_KEY) || this.get(GRPC_NAMESPACE_KEY);
    return ns ? validateIdentifier("namespace", ns) : undefined;
  }
  /** The namespace, required (as containerd's namespaced services do). */
  namespace(): string {
    const ns = this.namespaceOrUndefined;
    if (!ns) throw failedPrecondition("namespace is required");
    return ns;
  }
}

type In<M> = M extends { input: infer I extends DescMessage } ? MessageShape<I> : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? MessageInitShape<O> : never;

/** Sends one message on a server stream; resolves when it was written. */
export type TtrpcSend<T> = (msg: T) => Promise<void>;

/**
 * A handler, by method kind. A unary one may answer synchronously; any may
 * throw. A streaming handler's request iterator ends when the client closes
 * its side, and fails when the connection drops.
 */
export type TtrpcHandler<M> = M extends { methodKind: "unary" }
  ? (req: In<M>, ctx: TtrpcContext) => Out<M> | Promise<Out<M>>
  : M extends { methodKind: "server_streaming" }
    ? (req: In<M>, ctx: TtrpcContext, send: TtrpcSend<Out<M>>) => Promise<void>
  : M extends { methodKind: "client_streaming" }
    ? (reqs: AsyncIterable<In<M>>, ctx: TtrpcContext) => Promise<Out<M>>
  : M extends { methodKind: "bidi_streaming" }
    ? (reqs: AsyncIterable<In<M>>, ctx: TtrpcContext, send: TtrpcSend<Out<M>>) => Promise<void>
  : never;

/** An implementation of a service: any subset of its methods (the rest are UNIMPLEMENTED). */
export type TtrpcServiceImpl<S extends GenServiceMethods> = {
  [K in keyof S]?: TtrpcHandler<S[K]>;
};

interface Registered {
  desc: DescMethod;
  fn: (req: unknown, ctx: TtrpcContext, send?: TtrpcSend<unknown>) => unknown;
}

/** Requests and data frames waiting for a client-streaming or bidi handler. */
type StreamInbox = Inbox<Uint8Array>;

/** What a connection's frame loop hands to the calls it starts. */
interface ConnState {
  writer: FrameWriter;
  signal: AbortSignal;
  /** Open client streams by id (client-streaming and bidi calls). */
  inboxes: Map<number, StreamInbox>;
  reply(id: number, s: WireStatus, p?: Uint8Array): Promise<void>;
}

/** Options of a {@link TtrpcServer}. */
export interface TtrpcServerOptions {
  log?: Logger;
}

/** A ttrpc server. Register services, then `listen` or `serve`. */
export class TtrpcServer {
  #services = new Map<string, Map<string, Registered>>();
  #listeners = new Set<Deno.Listener>();
  #paths = new Set<string>();
  #conns = new Set<Deno.Conn>();
  #active = 0;
  #idle: (() => void)[] = [];
  #closed = false;
  #log: Logger;

  constructor(opts: TtrpcServerOptions = {}) {
    this.#log = opts.log ?? new Logger("warn");
  }

  /** Registers `impl` for `service`; a service can be registered once. */
  register<S extends GenServiceMethods>(
    service: DescService & { method: S },
    impl: TtrpcServiceImpl<S>,
  ): void {
    if (this.#services.has(service.typeName)) {
      throw new Error(`Cannot register ttrpc service ${service.typeName}: already registered`);
    }
    const methods = new Map<string, Registered>();
    for (const m of service.methods) {
      const fn = (impl as Record<string, unknown>)[m.localName];
      if (typeof fn !== "function") continue;
      methods.set(m.name, {
        desc: m,
        fn: m.methodKind === "unary"
          ? (req, ctx) => fn.call(impl, req, ctx)
          : (req, ctx, send) => fn.call(impl, req, ctx, send),
      });
    }
    this.#services.set(service.typeName, methods);
  }

  /**
   * Listens on a unix socket path and serves it in the background. The socket
   * file is removed again when the server closes.
   */
  listen(path: string): Deno.UnixListener {
    if (this.#closed) throw new Error(`Cannot listen for ttrpc on ${path}: the server is closed`);
    let l: Deno.UnixListener;
    try {
      l = Deno.listen({ transport: "unix", path });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new Error(`Cannot listen for ttrpc on ${path}: ${why}`, { cause: err });
    }
    this.#paths.add(path);
    this.serve(l).catch((err) => this.#log.error("ttrpc listener failed", { path, error: err }));
    return l;
  }

  /** Accepts connections on `listener` until it or the server is closed. */
  async serve(listener: Deno.Listener): Promise<void> {
    if (this.#closed) throw new Error("Cannot serve: the ttrpc server is closed");
    this.#listeners.add(listener);
    try {
      for (;;) {
        let conn: Deno.Conn;
        try {
          conn = await listener.accept();
        } catch (err) {
          if (this.#closed || err instanceof Deno.errors.BadResource) return;
          if (err instanceof Deno.errors.Interrupted) continue;
          throw err;
        }
        this.#serveConn(conn);
      }
    } finally {
      this.#listeners.delete(listener);
    }
  }

  /** Number of requests being handled right now. */
  get active(): number {
    return this.#active;
  }

  /**
   * Stops accepting, waits for running calls to finish, then closes every
   * connection. A handler must not await this (it would wait for itself):
   * answer first, then shut down.
   */
  async shutdown(): Promise<void> {
    this.#closeListeners();
    if (this.#active > 0) await new Promise<void>((r) => this.#idle.push(r));
    this.close();
  }

  /** Stops at once: listeners and connections are closed, running calls are cancelled. */
  close(): void {
    this.#closeListeners();
    for (const c of this.#conns) closeQuietly(c);
    this.#conns.clear();
  }

  #closeListeners(): void {
    this.#closed = true;
    for (const l of this.#listeners) closeQuietly(l);
    this.#listeners.clear();
    for (const p of this.#paths) {
      try {
        Deno.removeSync(p);
      } catch {
        // Already gone.
      }
    }
    this.#paths.clear();
  }

  /** The wire status of a failed call, logged as containerd does: errors loudly, refusals at debug. */
  #failure(path: string, err: unknown): WireStatus {
    const status = statusOf(err);
    if (status.code === Code.UNKNOWN || status.code === Code.INTERNAL) {
      this.#log.error("ttrpc call failed", {
        method: path,
        error: err instanceof Error ? err.stack : err,
      });
    } else {
      this.#log.debug("ttrpc call refused", {
        method: path,
        code: status.code,
        error: status.message,
      });
    }
    return status;
  }

  async #serveConn(conn: Deno.Conn): Promise<void> {
    this.#conns.add(conn);
    const reader = new FrameReader(conn);
    const writer = new FrameWriter(conn);
    const gone = new AbortController();
    const reply = (streamId: number, status: WireStatus, payload?: Uint8Array) =>
      this.#reply(writer, streamId, status, payload);
    const state: ConnState = { writer, signal: gone.signal, inboxes: new Map(), reply };
    try {
      for (;;) {
        const f = await reader.next();
        if (!f) break;
        if (f.payload === null) {
          reply(f.streamId, {
            code: Code.RESOURCE_EXHAUSTED,
            message:
              `message length ${f.length} exceed maximum message size of ${MAX_MESSAGE_LENGTH}`,
          });
          continue;
        }
        if (f.type === MessageType.data) {
          this.#data(state, f.streamId, f.flags, f.payload);
          continue;
        }
        // Other types are ignored for compatibility, as ttrpc does.
        if (f.type !== MessageType.request) continue;
        let req: Request;
        try {
          req = fromBinary(RequestSchema, f.payload);
        } catch (err) {
          reply(f.streamId, {
            code: Code.INVALID_ARGUMENT,
            message: `unmarshal request error: ${errText(err)}`,
          });
          continue;
        }
        if (f.streamId % 2 !== 1) {
          reply(f.streamId, {
            code: Code.INVALID_ARGUMENT,
            message: "StreamID must be odd for client initiated streams",
          });
          continue;
        }
        const m = this.#services.get(req.service)?.get(req.method);
        if (m && m.desc.methodKind !== "unary") this.#stream(f.streamId, req, m, state);
        else this.#call(f.streamId, req, gone.signal, reply);
      }
    } catch (err) {
      if (!isDisconnect(err)) this.#log.warn("ttrpc connection failed", { error: err });
    } finally {
      gone.abort(new Error("ttrpc connection closed"));
      for (const inbox of state.inboxes.values()) {
        inbox.fail(new BerthError("canceled", "ttrpc connection closed: context canceled"));
      }
      state.inboxes.clear();
      this.#conns.delete(conn);
      closeQuietly(conn);
    }
  }

  async #call(
    streamId: number,
    req: Request,
    connSignal: AbortSignal,
    reply: (id: number, s: WireStatus, p?: Uint8Array) => Promise<void>,
  ): Promise<void> {
    this.#active++;
    const path = `/${req.service}/${req.method}`;
    let status: WireStatus = { code: Code.OK, message: "" };
    let payload: Uint8Array | undefined;
    try {
      const service = this.#services.get(req.service);
      const m = service?.get(req.method);
      if (!service) status = { code: Code.UNIMPLEMENTED, message: `service ${req.service}` };
      else if (!m) status = { code: Code.UNIMPLEMENTED, message: `method ${req.method}` };
      else {
        let input: unknown;
        try {
          input = fromBinary(m.desc.input, req.payload);
        } catch (err) {
          status = {
            code: Code.INTERNAL,
            message: `ttrpc: error unmarshalling payload: ${errText(err)}`,
          };
        }
        if (input !== undefined) {
          const signal = req.timeoutNano > 0n
            ? AbortSignal.any([
              connSignal,
              AbortSignal.timeout(Number(req.timeoutNano / 1_000_000n)),
            ])
            : connSignal;
          const ctx = new TtrpcContext(path, metadataOf(req), signal);
          try {
            const out = await m.fn(input, ctx);
            payload = toBinary(
              m.desc.output,
              create(m.desc.output, out as MessageInitShape<DescMessage>),
            );
          } catch (err) {
            status = this.#failure(path, err);
          }
        }
      }
      await reply(streamId, status, payload);
    } finally {
      if (--this.#active === 0) { for (const r of this.#idle.splice(0)) r(); }
    }
  }

  /** A data frame from the client: the next message of an open client stream. */
  #data(state: ConnState, streamId: number, flags: number, payload: Uint8Array): void {
    const inbox = state.inboxes.get(streamId);
    if (!inbox) {
      state.reply(streamId, {
        code: Code.INVALID_ARGUMENT,
        message: streamId % 2 === 1
          ? "StreamID is no longer active"
          : "StreamID must be odd for client initiated streams",
      });
      return;
    }
    if (!(flags & Flags.noData)) inbox.push(payload);
    if (flags & Flags.remoteClosed) inbox.close();
  }

  /** A call of a streaming method: runs its handler over the stream's frames. */
  async #stream(streamId: number, req: Request, m: Registered, conn: ConnState): Promise<void> {
    this.#active++;
    const path = `/${req.service}/${req.method}`;
    const kind = m.desc.methodKind;
    const clientStreams = kind === "client_streaming" || kind === "bidi_streaming";
    const serverStreams = kind === "server_streaming" || kind === "bidi_streaming";
    let inbox: StreamInbox | undefined;
    if (clientStreams) {
      // Registered before the frame loop reads on, so no data frame is missed.
      inbox = new Inbox<Uint8Array>();
      conn.inboxes.set(streamId, inbox);
      // A request payload is the first message (ttrpc lets a client send one).
      if (req.payload.length > 0) inbox.push(req.payload);
    }
    let finished = false;
    try {
      const signal = req.timeoutNano > 0n
        ? AbortSignal.any([conn.signal, AbortSignal.timeout(Number(req.timeoutNano / 1_000_000n))])
        : conn.signal;
      const ctx = new TtrpcContext(path, metadataOf(req), signal);
      const send: TtrpcSend<unknown> = async (msg) => {
        if (finished) throw new Error(`${path}: cannot send after the call has ended`);
        if (signal.aborted) throw new BerthError("canceled", `${path}: context canceled`);
        const bytes = toBinary(
          m.desc.output,
          create(m.desc.output, msg as MessageInitShape<DescMessage>),
        );
        await conn.writer.send(streamId, MessageType.data, bytes);
      };
      let status: WireStatus = { code: Code.OK, message: "" };
      let payload: Uint8Array | undefined;
      try {
        const input = inbox ? decoded(inbox, m.desc.input) : fromBinary(m.desc.input, req.payload);
        const out = await m.fn(input, ctx, serverStreams ? send : undefined);
        if (!serverStreams) {
          payload = toBinary(
            m.desc.output,
            create(m.desc.output, out as MessageInitShape<DescMessage>),
          );
        }
      } catch (err) {
        status = this.#failure(path, err);
      }
      finished = true;
      if (conn.signal.aborted) return; // Nobody is left to answer.
      if (status.code === Code.OK && serverStreams) {
        // The end of a server stream: an empty data frame closing the stream.
        await conn.writer.send(
          streamId,
          MessageType.data,
          new Uint8Array(),
          Flags.remoteClosed | Flags.noData,
        ).catch((err) => {
          if (!isDisconnect(err)) this.#log.warn("ttrpc reply failed", { error: err });
        });
      } else await conn.reply(streamId, status, payload);
    } finally {
      finished = true;
      if (inbox) {
        // Data the client still sends after the answer is answered as for a closed stream.
        inbox.close();
        conn.inboxes.delete(streamId);
      }
      if (--this.#active === 0) { for (const r of this.#idle.splice(0)) r(); }
    }
  }

  async #reply(
    writer: FrameWriter,
    streamId: number,
    status: WireStatus,
    payload?: Uint8Array,
  ): Promise<void> {
    // An OK status is still sent as a (empty) message, as ttrpc does.
    let bytes = toBinary(ResponseSchema, create(ResponseSchema, { status, payload }));
    if (bytes.length > MAX_MESSAGE_LENGTH) {
      bytes = toBinary(
        ResponseSchema,
        create(ResponseSchema, {
          status: {
            code: Code.RESOURCE_EXHAUSTED,
            message:
              `response length ${bytes.length} exceeds maximum message size of ${MAX_MESSAGE_LENGTH}`,
          },
        }),
      );
    }
    try {
      await writer.send(streamId, MessageType.response, bytes);
    } catch (err) {
      // The caller went away; its connection loop notices and cleans up.
      if (!isDisconnect(err)) this.#log.warn("ttrpc reply failed", { error: err });
    }
  }
}

/** The messages of a client stream, decoded as the handler takes them. */
async function* decoded(inbox: StreamInbox, schema: DescMessage): AsyncGenerator<unknown> {
  for await (const bytes of inbox) {
    try {
      yield fromBinary(schema, bytes);
    } catch (err) {
      throw invalidArgument(`data handling error: ${errText(err)}`, { cause: err });
    }
  }
}

function metadataOf(req: Request): Map<string, string[]> {
  const md = new Map<string, string[]>();
  for (const { key, value } of req.metadata) {
    const k = key.toLowerCase();
    const list = md.get(k);
    if (list) list.push(value);
    else md.set(k, [value]);
  }
  return md;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isDisconnect(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource || err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.BrokenPipe || err instanceof Deno.errors.Interrupted;
}

function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch {
    // Already closed.
  }
}
