/**
 * Works around a crash in Deno 2.9.6's node:http2 (denoland/deno#36788): after a
 * few hundred streams on one connection, a GOAWAY frame from the client makes
 * nghttp2 abort ("find_stream_on_goaway_func: Assertion `stream->closed_next ==
 * NULL'", or "free(): invalid pointer"), killing the whole daemon. grpc-js
 * clients send GOAWAY whenever they close a channel.
 *
 * The daemon accepts the unix connections itself and hands each one to grpc-js
 * through a filter that drops the GOAWAY frames clients send. A client's GOAWAY
 * only says it will open no more streams; it closes the connection afterwards
 * anyway, and the server sees that as the end of the session.
 */
import * as net from "node:net";
import { Duplex, Transform } from "node:stream";
import type * as grpc from "@grpc/grpc-js";

const PREFACE_LENGTH = 24; // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
const FRAME_HEADER_LENGTH = 9;
const GOAWAY = 0x7;

/** A byte stream filter that removes client GOAWAY frames, passing all else. */
export function dropGoawayFrames(): Transform {
  let preface = PREFACE_LENGTH;
  let header = Buffer.alloc(0);
  let skip = 0; // payload bytes of a dropped frame still to come
  let pass = 0; // payload bytes of a kept frame still to come
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const out: Buffer[] = [];
      let off = 0;
      while (off < chunk.length) {
        const left = chunk.length - off;
        if (preface > 0 || pass > 0) {
          const n = Math.min(preface > 0 ? preface : pass, left);
          out.push(chunk.subarray(off, off + n));
          if (preface > 0) preface -= n;
          else pass -= n;
          off += n;
        } else if (skip > 0) {
          const n = Math.min(skip, left);
          skip -= n;
          off += n;
        } else {
          const n = Math.min(FRAME_HEADER_LENGTH - header.length, left);
          header = Buffer.concat([header, chunk.subarray(off, off + n)]);
          off += n;
          if (header.length < FRAME_HEADER_LENGTH) break;
          const length = header.readUIntBE(0, 3);
          if (header[3] === GOAWAY) skip = length;
          else {
            out.push(header);
            pass = length;
          }
          header = Buffer.alloc(0);
        }
      }
      done(null, out.length === 1 ? out[0] : Buffer.concat(out));
    },
  });
}

/** `socket` as a duplex whose readable side has the client GOAWAY frames removed. */
export function filteredConnection(socket: net.Socket): Duplex {
  const filtered = socket.pipe(dropGoawayFrames());
  const conn = new Duplex({
    read() {
      filtered.resume();
    },
    write(chunk, encoding, done) {
      socket.write(chunk, encoding, done);
    },
    final(done) {
      socket.end(done);
    },
    destroy(err, done) {
      socket.destroy(err ?? undefined);
      done(err);
    },
  });
  filtered.on("data", (c: Buffer) => {
    if (!conn.push(c)) filtered.pause();
  });
  filtered.on("end", () => conn.push(null));
  socket.on("close", () => conn.destroy());
  return conn;
}

/**
 * Listens on the unix socket `path` and feeds every connection, filtered, to
 * `server` (which needs no bindAsync). Resolves once listening.
 */
export function listenFiltered(
  server: grpc.Server,
  credentials: grpc.ServerCredentials,
  path: string,
): Promise<net.Server> {
  const injector = server.createConnectionInjector(credentials);
  const listener = net.createServer((socket) => {
    socket.on("error", () => socket.destroy());
    injector.injectConnection(filteredConnection(socket));
  });
  return new Promise((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(path, () => resolve(listener));
  });
}
