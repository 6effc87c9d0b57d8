/**
 * `containerd.services.content.v1.Content` over the namespaced content store.
 * The Write stream follows containerd 1.6's service message for message:
 * the first message names the ref; every response echoes the action and the
 * current offset; WRITE appends at the offset (offset 0 on a non-empty
 * ingest starts it over, any other offset must match); COMMIT verifies size
 * and digest; a clean end of the stream repeats the last response.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  Content as ContentService,
  WriteAction,
  type WriteContentRequest,
} from "../../gen/containerd/services/content/v1/content_pb.ts";
import { ContentDeleteSchema } from "../../gen/containerd/events/content_pb.ts";
import { alreadyExists, BerthError, invalidArgument, outOfRange } from "../../core/errdefs.ts";
import { validateDigest } from "../../content/digest.ts";
import type { IngestStatus } from "../../content/writer.ts";
import type { ContentInfo } from "../../metadata/content.ts";
import type { Plugin } from "../plugins.ts";

/** containerd sends List results in blocks of this many. */
const LIST_BATCH = 100;
/** Read responses carry at most this many bytes (containerd's buffer size). */
const READ_CHUNK = 1 << 20;

function infoToProto(i: ContentInfo) {
  return {
    digest: i.digest,
    size: BigInt(i.size),
    createdAt: timestampFromDate(i.createdAt),
    updatedAt: timestampFromDate(i.updatedAt),
    labels: i.labels,
  };
}

function statusToProto(s: IngestStatus) {
  return {
    startedAt: timestampFromDate(s.startedAt),
    updatedAt: timestampFromDate(s.updatedAt),
    ref: s.ref,
    offset: BigInt(s.offset),
    total: BigInt(s.total),
    expected: s.expected,
  };
}

/** int64 fields arrive as bigints; the store counts bytes in safe integers. */
function bytes(v: bigint, what: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw invalidArgument(`${what} ${v} is out of range`);
  return n;
}

/** The next message of a stream, or a canceled error when the client goes away. */
function next<T>(it: AsyncIterator<T>, signal: AbortSignal): Promise<IteratorResult<T>> {
  if (signal.aborted) return Promise.reject(new BerthError("canceled", "write stream canceled"));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(new BerthError("canceled", "write stream canceled"));
    signal.addEventListener("abort", onAbort, { once: true });
    it.next().then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** The content store's own entry in the plugin list. */
export const contentStorePlugin: Plugin = {
  type: "io.containerd.content.v1",
  id: "content",
  register() {},
};

export const contentPlugin: Plugin = {
  type: "io.containerd.grpc.v1",
  id: "content",
  requires: ["io.containerd.content.v1", "io.containerd.metadata.v1"],
  register({ daemon, server }) {
    const store = daemon.content;
    const log = daemon.log.with({ service: "content" });
    server.add(ContentService, {
      info(req, ctx) {
        return Promise.resolve({ info: infoToProto(store.info(ctx.namespace(), req.digest)) });
      },

      update(req, ctx) {
        if (!req.info) throw invalidArgument("info must be given");
        const info = store.update(
          ctx.namespace(),
          req.info.digest,
          req.info.labels,
          req.updateMask?.paths ?? [],
        );
        return Promise.resolve({ info: infoToProto(info) });
      },

      async list(req, ctx, send) {
        const all = store.list(ctx.namespace(), req.filters);
        for (let i = 0; i < all.length; i += LIST_BATCH) {
          await send({ info: all.slice(i, i + LIST_BATCH).map(infoToProto) });
        }
      },

      delete(req, ctx) {
        const ns = ctx.namespace();
        validateDigest(req.digest);
        store.delete(ns, req.digest, ctx.lease);
        daemon.events.publish(ns, "/content/delete", ContentDeleteSchema, { digest: req.digest });
        return Promise.resolve({});
      },

      // Response offsets are absolute positions in the blob (containerd 1.6
      // counts from the requested offset; its clients ignore the field).
      async read(req, ctx, send) {
        const ns = ctx.namespace();
        const info = store.info(ns, req.digest);
        const offset = Math.max(0, bytes(req.offset, "offset"));
        if (offset > info.size) throw outOfRange(`read past object length ${info.size} bytes`);
        let size = bytes(req.size, "size");
        if (size <= 0 || offset + size > info.size) size = info.size - offset;
        if (size === 0) return;
        let at = offset;
        for await (
          const data of store.read(ns, req.digest, { offset, size, chunkSize: READ_CHUNK })
        ) {
          if (ctx.signal.aborted) return;
          await send({ offset: BigInt(at), data });
          at += data.length;
        }
      },

      async status(req, ctx) {
        return { status: statusToProto(await store.status(ctx.namespace(), req.ref)) };
      },

      async listStatuses(req, ctx) {
        const list = await store.listStatuses(ctx.namespace(), req.filters);
        return { statuses: list.map(statusToProto) };
      },

      async write(reqs, ctx, send) {
        const ns = ctx.namespace();
        const it = reqs[Symbol.asyncIterator]();
        let got = await next(it, ctx.signal);
        if (got.done) return;
        let req: WriteContentRequest = got.value;
        const ref = req.ref;
        if (!ref) throw invalidArgument("first message must have a reference");
        let total = bytes(req.total, "total");
        let expected = req.expected;
        const w = await store.writer(ns, ref, {
          total,
          expected,
          lease: ctx.lease,
          labels: req.labels,
        });
        log.debug("write started", { namespace: ns, ref, total, expected, offset: w.offset });
        try {
          // One response object for the whole stream, as in containerd: what a
          // STAT filled in (total, times) stays in the WRITE replies after it.
          const msg: {
            action: WriteAction;
            offset: bigint;
            total?: bigint;
            digest?: string;
            startedAt?: ReturnType<typeof timestampFromDate>;
            updatedAt?: ReturnType<typeof timestampFromDate>;
          } = { action: req.action, offset: 0n };
          for (;;) {
            const st = w.status();
            msg.action = req.action;
            msg.offset = BigInt(st.offset);
            if (req.expected) {
              validateDigest(req.expected);
              expected = req.expected;
              if (store.visible(ns, req.expected)) {
                // Someone committed it meanwhile: the ingest is useless.
                await store.abort(ns, ref, ctx.lease).catch((e) =>
                  log.warn("cannot abort ingest", { ref, error: e })
                );
                throw alreadyExists(`content ${req.expected}`);
              }
            }
            const t = bytes(req.total, "total");
            if (t > 0) total = t;
            const known = w.status();
            if (w.open && (known.total !== total || (expected && known.expected !== expected))) {
              await w.setExpectations(total, expected);
            }
            switch (req.action) {
              case WriteAction.STAT:
                msg.digest = w.digest();
                msg.startedAt = timestampFromDate(st.startedAt);
                msg.updatedAt = timestampFromDate(st.updatedAt);
                msg.total = BigInt(total);
                break;
              case WriteAction.WRITE:
              case WriteAction.COMMIT: {
                const off = bytes(req.offset, "offset");
                if (off > 0 && off !== st.offset) {
                  throw outOfRange(`write @${off} must occur at current offset ${st.offset}`);
                }
                if (off === 0 && st.offset > 0) {
                  await w.truncate(0);
                  msg.offset = 0n;
                }
                if (req.data.length > 0) {
                  msg.offset += BigInt(await w.write(req.data));
                }
                if (req.action === WriteAction.COMMIT) {
                  const digest = await w.commit(total, expected, { labels: req.labels });
                  log.debug("write committed", { namespace: ns, ref, digest });
                }
                msg.digest = w.digest();
                break;
              }
              default:
                break;
            }
            await send({ ...msg });
            got = await next(it, ctx.signal);
            if (got.done) {
              // containerd pumps the last response once more on a clean end.
              await send({ ...msg });
              return;
            }
            req = got.value;
          }
        } finally {
          w.close();
        }
      },

      async abort(req, ctx) {
        await store.abort(ctx.namespace(), req.ref, ctx.lease);
        return {};
      },
    });
  },
};
