import * as grpc from "@grpc/grpc-js";
import * as net from "node:net";
import { Duplex, Transform } from "node:stream";
import { addService } from "../src/api/grpc.ts";
import { Version } from "../src/gen/containerd/services/version/v1/version_pb.ts";
import { Logger } from "../src/util/log.ts";

const PREFACE_LEN = 24;
const GOAWAY = 7;
/** Drops GOAWAY frames a client sends (Deno's nghttp2 binding crashes on them). */
function dropGoaway(): Transform {
  let preface = PREFACE_LEN;
  let header = Buffer.alloc(0);
  let skip = 0; // payload bytes of a dropped frame still to skip
  let pass = 0; // payload bytes of a kept frame still to pass
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      let off = 0;
      const out: Buffer[] = [];
      while (off < chunk.length) {
        if (preface > 0) {
          const n = Math.min(preface, chunk.length - off);
          out.push(chunk.subarray(off, off + n)); off += n; preface -= n; continue;
        }
        if (skip > 0) { const n = Math.min(skip, chunk.length - off); off += n; skip -= n; continue; }
        if (pass > 0) { const n = Math.min(pass, chunk.length - off); out.push(chunk.subarray(off, off + n)); off += n; pass -= n; continue; }
        const need = 9 - header.length;
        const n = Math.min(need, chunk.length - off);
        header = Buffer.concat([header, chunk.subarray(off, off + n)]); off += n;
        if (header.length < 9) break;
        const len = header.readUIntBE(0, 3);
        if (header[3] === GOAWAY) skip = len; else { out.push(header); pass = len; }
        header = Buffer.alloc(0);
      }
      cb(null, out.length === 1 ? out[0] : Buffer.concat(out));
    },
  });
}

const sock = Deno.args[0]!;
const server = new grpc.Server();
addService(server, Version, { version: () => Promise.resolve({ version: "x", revision: "y" }) }, new Logger("warn"));
const mode = Deno.args[1] ?? "filter";
if (mode === "plain") {
  await new Promise<void>((res, rej) => server.bindAsync(`unix:${sock}`, grpc.ServerCredentials.createInsecure(), (e) => e ? rej(e) : res()));
} else {
  const inj = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  net.createServer((s) => {
    if (mode === "inject") { inj.injectConnection(s); return; }
    const f = dropGoaway();
    s.pipe(f);
    const d = Duplex.from({ readable: f, writable: s });
    s.on("close", () => d.destroy());
    s.on("error", () => {});
    inj.injectConnection(d);
  }).listen(sock);
}
console.error("serving", mode);
