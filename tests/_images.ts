/** Test images built from Debian's busybox-static, with no registry or network. */
import { ok, run } from "./_harness.ts";

/** A busybox root filesystem (Debian's busybox-static) in `dir`. */
export async function busyboxRootfs(dir: string): Promise<string> {
  await Deno.mkdir(`${dir}/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${dir}/bin/busybox`);
  await Deno.chmod(`${dir}/bin/busybox`, 0o755);
  for (const app of ["sh", "echo", "sleep", "cat", "true", "false", "ps", "id"]) {
    await Deno.symlink("busybox", `${dir}/bin/${app}`);
  }
  for (const d of ["proc", "sys", "dev", "tmp", "etc"]) await Deno.mkdir(`${dir}/${d}`);
  return dir;
}

/**
 * An OCI image archive (one gzip layer: a busybox rootfs) for `ctr images
 * import`, named localhost/tasks-bb:latest; built with tar, gzip and sha256sum.
 */
export async function busyboxImageArchive(dir: string): Promise<string> {
  await busyboxRootfs(`${dir}/rootfs`);
  const script = `
set -e
cd "$1"
tar -C rootfs --numeric-owner --owner=0 --group=0 -cf layer.tar .
gzip -n -k layer.tar
mkdir -p oci/blobs/sha256
put() { d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" oci/blobs/sha256/$d; echo $d; }
diffid=$(sha256sum layer.tar | cut -d' ' -f1)
ld=$(put layer.tar.gz); lsz=$(stat -c %s layer.tar.gz)
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' $diffid > config.json
cd_=$(put config.json); csz=$(stat -c %s config.json)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' $cd_ $csz $ld $lsz > manifest.json
md=$(put manifest.json); msz=$(stat -c %s manifest.json)
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"localhost/tasks-bb:latest"},"platform":{"architecture":"amd64","os":"linux"}}]}' $md $msz > oci/index.json
echo '{"imageLayoutVersion":"1.0.0"}' > oci/oci-layout
tar -C oci -cf image.tar .
`;
  ok(await run("sh", ["-c", script, "sh", dir]), "building the image archive");
  return `${dir}/image.tar`;
}
