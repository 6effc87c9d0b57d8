/**
 * berth.images.v1.Transfer: the server-side pull the CLI uses (one call,
 * progress streamed back), and image import and export.
 */
import { Transfer } from "../../gen/berth/images/v1/transfer_pb.ts";
import { invalidArgument } from "../../core/errdefs.ts";
import { EXPIRE_LABEL } from "../../metadata/leases.ts";
import { importImages } from "../../images/import.ts";
import { exportImages } from "../../images/export.ts";
import { unpackStored } from "../../images/unpack.ts";
import type { BlobProgress } from "../../images/pull.ts";
import type { Plugin } from "../plugins.ts";
import { imageToProto } from "./images.ts";

/** Progress messages are sent at most this often (the last one always). */
const PROGRESS_INTERVAL_MS = 100;

export const transferPlugin: Plugin = {
  type: "io.containerd.grpc.v1",
  id: "berth.transfer",
  requires: ["io.containerd.content.v1", "io.containerd.snapshotter.v1"],
  register({ daemon, server }) {
    server.add(Transfer, {
      async pull(req, ctx, send) {
        if (!req.reference) throw invalidArgument("reference must be given");
        const ns = ctx.namespace();
        let pending: { blobs: BlobProgress[]; phase: string } | undefined;
        let last = 0;
        let sending = Promise.resolve();
        const flush = () => {
          if (!pending) return;
          const p = pending;
          pending = undefined;
          last = performance.now();
          sending = sending.then(() =>
            send({
              phase: p.phase,
              blobs: p.blobs.map((b) => ({
                ...b,
                offset: BigInt(b.offset),
                total: BigInt(b.total),
              })),
            })
          ).catch(() => {});
        };
        const res = await daemon.puller.pull(ns, {
          reference: req.reference,
          platforms: req.platforms,
          allPlatforms: req.allPlatforms,
          plainHttp: req.plainHttp,
          user: req.user,
          snapshotter: req.snapshotter,
          skipUnpack: req.skipUnpack,
          maxConcurrentDownloads: req.maxConcurrentDownloads,
          labels: req.labels,
          signal: ctx.signal,
          onProgress(blobs, phase) {
            pending = { blobs, phase };
            if (performance.now() - last >= PROGRESS_INTERVAL_MS) flush();
          },
        });
        flush();
        await sending;
        await send({
          phase: "done",
          image: imageToProto(res.image),
          target: { ...res.image.target, size: BigInt(res.image.target.size) },
          fetchedBytes: BigInt(res.fetchedBytes),
        });
      },
      async import(chunks, ctx) {
        const ns = ctx.namespace();
        const it = chunks[Symbol.asyncIterator]();
        const first = await it.next();
        if (first.done) throw invalidArgument("import: the archive is empty");
        const head = first.value;
        async function* data() {
          yield head.data;
          for (let r = await it.next(); !r.done; r = await it.next()) yield r.value.data;
        }
        // A lease of our own keeps GC off the blobs until the images hold them.
        const lease = ctx.lease ?? daemon.leases.create(ns, "", {
          [EXPIRE_LABEL]: new Date(Date.now() + 3600_000).toISOString(),
        }).id;
        try {
          const res = await importImages(daemon, ns, data(), {
            ...(head.baseName ? { baseName: head.baseName } : {}),
            lease,
            signal: ctx.signal,
          });
          if (!head.skipUnpack) {
            const snapshotter = head.snapshotter || daemon.config.snapshotter;
            for (const img of res.images) {
              for (const manifest of img.manifests) {
                await unpackStored(daemon.unpacker, daemon.content, {
                  namespace: ns,
                  snapshotter,
                  manifest,
                  lease,
                });
              }
            }
          }
          return { images: res.images.map((i) => imageToProto(i.image)) };
        } finally {
          if (!ctx.lease) daemon.leases.delete(ns, lease);
        }
      },
      async export(req, ctx, send) {
        const ns = ctx.namespace();
        if (req.names.length === 0) {
          throw invalidArgument("export: at least one image name is required");
        }
        if (req.format && req.format !== "oci" && req.format !== "docker") {
          throw invalidArgument(`export: unknown format "${req.format}": want oci or docker`);
        }
        const stream = await exportImages(daemon, ns, req.names, {
          format: (req.format || "oci") as "oci" | "docker",
          platforms: req.platforms,
          allPlatforms: req.allPlatforms,
        });
        for await (const data of stream) await send({ data });
      },
    });
  },
};
