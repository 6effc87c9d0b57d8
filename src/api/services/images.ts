/**
 * `containerd.services.images.v1.Images`: a thin adapter over the image
 * store that publishes /images/create, /images/update and /images/delete as
 * containerd does.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type Image as ImageProto,
  Images as ImagesService,
} from "../../gen/containerd/services/images/v1/images_pb.ts";
import {
  ImageCreateSchema,
  ImageDeleteSchema,
  ImageUpdateSchema,
} from "../../gen/containerd/services/images/v1/events_pb.ts";
import type { Image, ImageInput } from "../../metadata/images.ts";
import type { Plugin } from "../plugins.ts";

function fromProto(img: ImageProto | undefined): ImageInput {
  const t = img?.target;
  return {
    name: img?.name ?? "",
    labels: img?.labels ?? {},
    target: {
      mediaType: t?.mediaType ?? "",
      digest: t?.digest ?? "",
      size: Number(t?.size ?? 0n),
      annotations: t?.annotations ?? {},
    },
  };
}

/** The API message of an image record. */
export function imageToProto(img: Image) {
  return {
    name: img.name,
    labels: img.labels,
    target: {
      mediaType: img.target.mediaType,
      digest: img.target.digest,
      size: BigInt(img.target.size),
      annotations: img.target.annotations,
    },
    createdAt: timestampFromDate(img.createdAt),
    updatedAt: timestampFromDate(img.updatedAt),
  };
}

export const imagesPlugin: Plugin = {
  type: "io.containerd.grpc.v1",
  id: "images",
  requires: ["io.containerd.metadata.v1"],
  register({ daemon, server }) {
    const store = daemon.images;
    const events = daemon.events;
    server.add(ImagesService, {
      get: (req, ctx) =>
        Promise.resolve({ image: imageToProto(store.get(ctx.namespace(), req.name)) }),
      list: (req, ctx) =>
        Promise.resolve({ images: store.list(ctx.namespace(), req.filters).map(imageToProto) }),
      create(req, ctx) {
        const ns = ctx.namespace();
        const img = store.create(ns, fromProto(req.image));
        daemon.log.debug("image created", {
          namespace: ns,
          name: img.name,
          digest: img.target.digest,
        });
        events.publish(ns, "/images/create", ImageCreateSchema, {
          name: img.name,
          labels: img.labels,
        });
        return Promise.resolve({ image: imageToProto(img) });
      },
      update(req, ctx) {
        const ns = ctx.namespace();
        const img = store.update(ns, fromProto(req.image), req.updateMask?.paths ?? []);
        events.publish(ns, "/images/update", ImageUpdateSchema, {
          name: img.name,
          labels: img.labels,
        });
        return Promise.resolve({ image: imageToProto(img) });
      },
      async delete(req, ctx) {
        const ns = ctx.namespace();
        store.delete(ns, req.name);
        daemon.log.debug("image deleted", { namespace: ns, name: req.name });
        events.publish(ns, "/images/delete", ImageDeleteSchema, { name: req.name });
        // What the image held is collected now; `sync` waits for it.
        const gc = daemon.gc.collect();
        if (req.sync) await gc;
        else gc.catch((e) => daemon.log.warn("gc failed", { error: e }));
        return {};
      },
    });
  },
};
