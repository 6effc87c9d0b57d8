import { Diff as DiffService } from "../../gen/containerd/services/diff/v1/diff_pb.ts";
import { invalidArgument, notFound, notImplemented } from "../../core/errdefs.ts";
import { applyOnMounts } from "../../images/apply.ts";
import { compressionOf } from "../../archive/compression.ts";
import type { Plugin } from "../plugins.ts";

const LAYER_TAR = "application/vnd.oci.image.layer.v1.tar";

export const diffPlugin: Plugin = {
  type: "io.containerd.grpc.v1",
  id: "diff",
  requires: ["io.containerd.content.v1"],
  register({ daemon, server }) {
    server.add(DiffService, {
      async apply(req, ctx) {
        const ns = ctx.namespace();
        const desc = req.diff;
        if (!desc?.digest) throw invalidArgument("diff descriptor must be given");
        if (req.mounts.length === 0) throw invalidArgument("mounts must be given");
        // Refuse media types we cannot decompress, naming them.
        compressionOf(desc.mediaType);
        if (!daemon.content.visible(ns, desc.digest)) throw notFound(`content ${desc.digest}`);
        const mounts = req.mounts.map((m) => ({
          type: m.type,
          source: m.source,
          options: [...m.options],
        }));
        const start = performance.now();
        const res = await applyOnMounts(daemon.content.read(ns, desc.digest), mounts, {
          signal: ctx.signal,
          onWarning: (message) => daemon.log.warn("layer apply", { digest: desc.digest, message }),
        });
        daemon.log.debug("applied layer", {
          digest: desc.digest,
          diffId: res.diffId,
          ms: Math.round(performance.now() - start),
        });
        return { applied: { mediaType: LAYER_TAR, digest: res.diffId, size: BigInt(res.size) } };
      },
      diff() {
        throw notImplemented("computing layer diffs (Diff.Diff) is not supported by berth yet");
      },
    });
  },
};
