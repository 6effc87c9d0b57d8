/** Image helpers shared by CLI verbs: reading blobs and finding the host platform's manifest. */
import { Content } from "../../gen/containerd/services/content/v1/content_pb.ts";
import type { Image } from "../../gen/containerd/services/images/v1/images_pb.ts";
import { isIndexType, parseIndex, parseManifest } from "../../oci/image.ts";
import { selectManifests } from "../../oci/platforms.ts";
import type { Client } from "./client.ts";

/** Reads a whole blob through the content service. */
export async function readBlob(c: Client, digest: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const r of c.stream(Content, "read", { digest })) parts.push(r.data);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** The host platform's manifest, config and total size of an image (as ctr sizes it). */
export async function details(c: Client, img: Image) {
  const t = img.target!;
  let mdesc = { mediaType: t.mediaType, digest: t.digest, size: Number(t.size) };
  let size = 0;
  if (isIndexType(t.mediaType)) {
    const index = parseIndex(await readBlob(c, t.digest), {
      what: `index of "${img.name}"`,
      mediaType: t.mediaType,
    });
    const m = selectManifests(index)[0];
    if (!m) return { size: Number(t.size), manifest: undefined, config: undefined };
    mdesc = m;
  }
  const manifest = parseManifest(await readBlob(c, mdesc.digest), {
    what: `manifest of "${img.name}"`,
    mediaType: mdesc.mediaType,
  });
  size = mdesc.size + manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0);
  return { size, manifest, config: manifest.config };
}
