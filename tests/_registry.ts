/**
 * Shared registry fixture for the pull tests: Debian's docker-registry
 * (distribution 2.8) on 127.0.0.1 with a random port and temporary storage,
 * Basic-auth and token-auth instances over the same storage, small Deno.serve
 * fronts (redirects, corruption, throttling), and builders for the test images
 * the tests make themselves from local files and push with skopeo.
 *
 * ```ts
 * await using env = await startRegistryEnv();
 * const imgs = await buildTestImages(env);
 * // pull `${env.host}/busybox:v1`
 * ```
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign } from "node:crypto";
import { Buffer } from "node:buffer";
import { run, waitFor } from "./_harness.ts";
import { type Descriptor, MediaType } from "../src/oci/image.ts";
import { hostPlatform } from "../src/oci/platforms.ts";

/** "sha256:<hex>" of `b`. */
export function sha256(b: Uint8Array | string): string {
  return "sha256:" + createHash("sha256").update(b).digest("hex");
}

/** A TCP port free right now on `hostname`. */
export function freePort(hostname = "127.0.0.1"): number {
  const l = Deno.listen({ hostname, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A running registry process. */
export interface RegistryProc {
  port: number;
  /** "127.0.0.1:PORT" */
  host: string;
  logPath: string;
  stop(): Promise<void>;
}

/** Starts docker-registry on 127.0.0.1 over `storage` with `extra` YAML appended to its config. */
export async function startRegistry(
  tmp: string,
  storage: string,
  extra = "",
  scheme: "http" | "https" = "http",
): Promise<RegistryProc> {
  const port = freePort();
  const dir = await Deno.makeTempDir({ dir: tmp, prefix: "registry-" });
  await Deno.writeTextFile(
    `${dir}/config.yml`,
    `version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: ${storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging: {enabled: false}
http:
  addr: 127.0.0.1:${port}
  secret: berth-test-${port}
${extra}`,
  );
  const logPath = `${dir}/log`;
  const child = new Deno.Command("sh", {
    args: ["-c", `exec docker-registry serve "$1" >"$2" 2>&1`, "sh", `${dir}/config.yml`, logPath],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  child.status.then(() => (exited = true));
  try {
    await waitFor(`registry on :${port}`, async () => {
      if (exited) throw new Error(`registry exited: ${await Deno.readTextFile(logPath)}`);
      try {
        const r = scheme === "http"
          ? await fetch(`http://127.0.0.1:${port}/v2/`)
          : await run("curl", [
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            `https://127.0.0.1:${port}/v2/`,
          ]).then((x) => new Response(null, { status: Number(x.stdout) || 599 }));
        await r.body?.cancel();
        return r.status === 200 || r.status === 401;
      } catch {
        return false;
      }
    });
  } catch (e) {
    child.kill("SIGKILL");
    await child.status;
    throw e;
  }
  return {
    port,
    host: `127.0.0.1:${port}`,
    logPath,
    async stop() {
      if (!exited) child.kill("SIGTERM");
      await child.status;
    },
  };
}

/** One request a front saw. */
export interface FrontLog {
  method: string;
  path: string;
  auth: string | null;
  range: string | null;
}

/** A Deno.serve HTTP front on `hostname` with a request log. */
export interface Front {
  port: number;
  host: string;
  log: FrontLog[];
  close(): Promise<void>;
}

/** Starts an HTTP front that answers with `handler` and logs every request. */
export function front(
  handler: (req: Request, url: URL) => Response | Promise<Response>,
  hostname = "127.0.0.1",
): Front {
  const log: FrontLog[] = [];
  const server = Deno.serve({ hostname, port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    log.push({
      method: req.method,
      path: url.pathname,
      auth: req.headers.get("authorization"),
      range: req.headers.get("range"),
    });
    return handler(req, url);
  });
  return {
    port: server.addr.port,
    host: `${hostname}:${server.addr.port}`,
    log,
    close: () => server.shutdown(),
  };
}

/** Forwards a request to the registry on `port` (no redirects followed). */
export async function proxy(req: Request, url: URL, port: number): Promise<Response> {
  const headers = new Headers(req.headers);
  headers.delete("host");
  const r = await fetch(`http://127.0.0.1:${port}${url.pathname}${url.search}`, {
    method: req.method,
    headers,
    redirect: "manual",
  });
  return new Response(req.method === "HEAD" ? null : r.body, {
    status: r.status,
    headers: r.headers,
  });
}

/** An OCI layout written by hand: blobs, index.json, oci-layout. */
export class Layout {
  blobs = new Map<string, string>();
  constructor(readonly dir: string) {}

  async init(): Promise<this> {
    await Deno.mkdir(`${this.dir}/blobs/sha256`, { recursive: true });
    await Deno.writeTextFile(`${this.dir}/oci-layout`, '{"imageLayoutVersion":"1.0.0"}');
    return this;
  }

  path(digest: string): string {
    return `${this.dir}/blobs/sha256/${digest.replace(/^sha256:/, "")}`;
  }

  async put(
    mediaType: string,
    bytes: Uint8Array,
    extra: Partial<Descriptor> = {},
  ): Promise<Descriptor> {
    const digest = sha256(bytes);
    await Deno.writeFile(this.path(digest), bytes);
    this.blobs.set(digest, this.path(digest));
    return { mediaType, digest, size: bytes.length, ...extra };
  }

  /** Adds an existing file as a blob (moved in; hashed by streaming). */
  async putFile(mediaType: string, file: string): Promise<Descriptor> {
    const h = createHash("sha256");
    let size = 0;
    using f = await Deno.open(file);
    for await (const chunk of f.readable) {
      h.update(chunk);
      size += chunk.length;
    }
    const digest = "sha256:" + h.digest("hex");
    await Deno.rename(file, this.path(digest));
    this.blobs.set(digest, this.path(digest));
    return { mediaType, digest, size };
  }

  json(mediaType: string, doc: unknown, extra: Partial<Descriptor> = {}): Promise<Descriptor> {
    return this.put(mediaType, new TextEncoder().encode(JSON.stringify(doc)), extra);
  }

  async tag(desc: Descriptor, tag: string): Promise<void> {
    await Deno.writeTextFile(
      `${this.dir}/index.json`,
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ ...desc, annotations: { "org.opencontainers.image.ref.name": tag } }],
      }),
    );
  }
}

/** A built layer: the blob's descriptor and its diffID. */
export interface Layer {
  desc: Descriptor;
  diffId: string;
}

/**
 * Tars `dir` with GNU tar (PAX, sorted, numeric owners as they are on disk)
 * and compresses it; the blob goes into `layout`.
 */
export async function tarLayer(
  layout: Layout,
  dir: string,
  compression: "gzip" | "zstd" | "none" = "gzip",
): Promise<Layer> {
  const tarFile = `${dir}.tar`;
  await run("tar", [
    "--format=pax",
    "--pax-option=delete=atime,delete=ctime",
    "--sort=name",
    "--numeric-owner",
    "-C",
    dir,
    "-cf",
    tarFile,
    ".",
  ], { check: true });
  const diffId = sha256(await Deno.readFile(tarFile));
  if (compression === "none") {
    return { desc: await layout.putFile(MediaType.ociLayer, tarFile), diffId };
  }
  if (compression === "gzip") {
    await run("gzip", ["-n", "-1", tarFile], { check: true });
    return { desc: await layout.putFile(MediaType.ociLayerGzip, `${tarFile}.gz`), diffId };
  }
  await run("zstd", ["-q", "--rm", "-3", tarFile, "-o", `${tarFile}.zst`], { check: true });
  return { desc: await layout.putFile(MediaType.ociLayerZstd, `${tarFile}.zst`), diffId };
}

/** An image manifest written into a layout. */
export interface BuiltImage {
  manifest: Descriptor;
  config: Descriptor;
  layers: Layer[];
}

/** Writes config and manifest for `layers` (OCI media types). */
export async function writeImage(
  layout: Layout,
  layers: Layer[],
  opts: { arch?: string; variant?: string; config?: Record<string, unknown> } = {},
): Promise<BuiltImage> {
  const config = await layout.json(MediaType.ociConfig, {
    created: "2024-01-02T03:04:05Z",
    architecture: opts.arch ?? hostPlatform().architecture,
    ...(opts.variant ? { variant: opts.variant } : {}),
    os: "linux",
    config: { Cmd: ["sh"], Env: ["PATH=/bin"], ...(opts.config ?? {}) },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
  });
  const manifest = await layout.json(MediaType.ociManifest, {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config,
    layers: layers.map((l) => l.desc),
  });
  return { manifest, config, layers };
}

/** The busybox applets the one-layer image links to /bin/busybox. */
export const BUSYBOX_APPLETS = ["sh", "ls", "cat", "echo", "true", "id"];

/** Fills `dir` with a busybox root: /bin/busybox, applet symlinks, /etc/passwd. */
async function busyboxTree(dir: string, marker?: string): Promise<void> {
  await Deno.mkdir(`${dir}/bin`, { recursive: true });
  await Deno.mkdir(`${dir}/etc`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${dir}/bin/busybox`);
  await Deno.chmod(`${dir}/bin/busybox`, 0o755);
  for (const a of BUSYBOX_APPLETS) await Deno.symlink("busybox", `${dir}/bin/${a}`);
  await Deno.writeTextFile(`${dir}/etc/passwd`, "root:x:0:0:root:/root:/bin/sh\n");
  await Deno.writeTextFile(`${dir}/etc/group`, "root:x:0:\n");
  if (marker !== undefined) await Deno.writeTextFile(`${dir}/etc/platform-marker`, marker);
}

/** A name of exactly `n` characters. */
export const longName = (n: number, c = "n") => c.repeat(n);

/** The path over 180 characters the `layers` image holds (several directories). */
export const DEEP_PATH = `deep/${"d".repeat(60)}/${"e".repeat(60)}/${"f".repeat(60)}/leaf.txt`;

/** A 120-character symlink target (PAX linkpath). */
export const LONG_TARGET = `/srv/${"t".repeat(115)}`;

/**
 * The multi-layer image's layers. What a mount of the merged rootfs must
 * show is checked by the tests; the edge cases: whiteouts of a file, a
 * directory and a symlink; an opaque directory refilled in the same layer; a
 * hardlink; relative, absolute and dangling symlinks; setuid, setgid, sticky,
 * 0600 and 0640 modes; 1000:1000 and 123:456 owners; a 150-character name, a
 * path over 180 characters and a link target over 100 characters.
 */
async function layersTrees(tmp: string): Promise<string[]> {
  const l1 = `${tmp}/layers-1`;
  const d = (p: string) => Deno.mkdir(`${l1}/${p}`, { recursive: true });
  const f = async (p: string, text: string, mode = 0o644, owner?: [number, number]) => {
    await Deno.writeTextFile(`${l1}/${p}`, text);
    await Deno.chmod(`${l1}/${p}`, mode);
    if (owner) await Deno.chown(`${l1}/${p}`, owner[0], owner[1]);
  };
  await d("a");
  await d("gone-dir/sub");
  await d("opq/old-sub");
  await d("home/app");
  await d("tmp");
  await d("bin");
  await d("srv");
  await d(DEEP_PATH.slice(0, DEEP_PATH.lastIndexOf("/")));
  await f("a/keep.txt", "keep\n");
  await f("a/gone.txt", "gone\n");
  await f("gone-dir/sub/x", "x\n");
  await f("opq/old1", "old\n");
  await f("opq/old-sub/old2", "old\n");
  await f("bin/suid", "#!/bin/sh\n", 0o4755);
  await f("bin/sgid", "#!/bin/sh\n", 0o2755);
  await f("home/app/secret", "s\n", 0o600, [1000, 1000]);
  await f("home/app/shared", "g\n", 0o640, [123, 456]);
  await Deno.chown(`${l1}/home/app`, 1000, 1000);
  await Deno.chmod(`${l1}/tmp`, 0o1777);
  await f(`a/${longName(150)}`, "long name\n");
  await f(DEEP_PATH, "deep\n");
  await Deno.link(`${l1}/a/keep.txt`, `${l1}/a/hard.txt`);
  await Deno.symlink("keep.txt", `${l1}/a/rel-link`);
  await Deno.symlink("/a/keep.txt", `${l1}/abs-link`);
  await Deno.symlink("/does/not/exist", `${l1}/dangling`);
  await Deno.symlink("a", `${l1}/gone-link`);
  await Deno.symlink(LONG_TARGET, `${l1}/long-target`);

  const l2 = `${tmp}/layers-2`;
  await Deno.mkdir(`${l2}/a`, { recursive: true });
  await Deno.mkdir(`${l2}/opq`, { recursive: true });
  await Deno.writeTextFile(`${l2}/a/.wh.gone.txt`, "");
  await Deno.writeTextFile(`${l2}/.wh.gone-dir`, "");
  await Deno.writeTextFile(`${l2}/.wh.gone-link`, "");
  await Deno.writeTextFile(`${l2}/opq/.wh..wh..opq`, "");
  await Deno.writeTextFile(`${l2}/opq/new1`, "new\n");
  await Deno.writeTextFile(`${l2}/a/added.txt`, "layer2\n");

  const l3 = `${tmp}/layers-3`;
  await Deno.mkdir(`${l3}/gone-dir`, { recursive: true });
  await Deno.writeTextFile(`${l3}/gone-dir/again`, "back\n");
  return [l1, l2, l3];
}

/** Every image the pull tests push, by repository name. */
export interface TestImages {
  /** One gzip layer: /bin/busybox, applet links, /etc/passwd. */
  busybox: BuiltImage;
  /** Three layers with the edge cases of {@link layersTrees}. */
  layers: BuiltImage;
  /** An OCI index: the host platform and one other, each with /etc/platform-marker. */
  multi: { index: Descriptor; host: BuiltImage; other: BuiltImage; otherPlatform: string };
  /** busybox pushed with Docker schema2 media types (skopeo --format v2s2). */
  schema2: { manifest: Descriptor };
  /** busybox with a tar+zstd layer. */
  zstd: BuiltImage;
  /** All pushed as `${host}/NAME:v1`. */
  names: string[];
}

/** The architecture that is not the host's, for the multi-platform index. */
export function otherArch(): { arch: string; variant?: string; platform: string } {
  return hostPlatform().architecture === "arm64"
    ? { arch: "amd64", platform: "linux/amd64" }
    : { arch: "arm64", variant: "v8", platform: "linux/arm64/v8" };
}

/** skopeo copy with an accept-anything policy and plain http to the registry. */
export async function skopeoCopy(tmp: string, ...args: string[]): Promise<void> {
  const policy = `${tmp}/policy.json`;
  await Deno.writeTextFile(policy, '{"default":[{"type":"insecureAcceptAnything"}]}');
  await run("skopeo", [
    "--policy",
    policy,
    "copy",
    "-q",
    "--dest-tls-verify=false",
    ...args,
  ], { check: true });
}

/** Builds every test image as OCI layouts under `tmp` and pushes them to `registry`. */
export async function buildTestImages(tmp: string, registry: string): Promise<TestImages> {
  const src = `${tmp}/src`;
  await Deno.mkdir(src, { recursive: true });

  const bbLayout = await new Layout(`${tmp}/oci-busybox`).init();
  await busyboxTree(`${src}/busybox`);
  const bbLayer = await tarLayer(bbLayout, `${src}/busybox`);
  const busybox = await writeImage(bbLayout, [bbLayer]);
  await bbLayout.tag(busybox.manifest, "v1");

  const lLayout = await new Layout(`${tmp}/oci-layers`).init();
  const trees = await layersTrees(src);
  const lLayers = [];
  for (const t of trees) lLayers.push(await tarLayer(lLayout, t));
  const layers = await writeImage(lLayout, lLayers, {
    config: { User: "1000:1000", WorkingDir: "/home/app", Cmd: ["cat", "/a/keep.txt"] },
  });
  await lLayout.tag(layers.manifest, "v1");

  const mLayout = await new Layout(`${tmp}/oci-multi`).init();
  const host = hostPlatform();
  const other = otherArch();
  await busyboxTree(`${src}/multi-host`, `${formatPlat(host.architecture, host.variant)}\n`);
  const hostImg = await writeImage(mLayout, [await tarLayer(mLayout, `${src}/multi-host`)]);
  await Deno.mkdir(`${src}/multi-other/etc`, { recursive: true });
  await Deno.writeTextFile(`${src}/multi-other/etc/platform-marker`, `${other.platform}\n`);
  const otherImg = await writeImage(mLayout, [await tarLayer(mLayout, `${src}/multi-other`)], {
    arch: other.arch,
    ...(other.variant ? { variant: other.variant } : {}),
  });
  const index = await mLayout.json(MediaType.ociIndex, {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [
      {
        ...hostImg.manifest,
        platform: {
          os: "linux",
          architecture: host.architecture,
          ...(host.variant ? { variant: host.variant } : {}),
        },
      },
      {
        ...otherImg.manifest,
        platform: {
          os: "linux",
          architecture: other.arch,
          ...(other.variant ? { variant: other.variant } : {}),
        },
      },
    ],
  });
  await mLayout.tag(index, "v1");

  const zLayout = await new Layout(`${tmp}/oci-zstd`).init();
  await busyboxTree(`${src}/zstd`);
  const zstd = await writeImage(zLayout, [await tarLayer(zLayout, `${src}/zstd`, "zstd")]);
  await zLayout.tag(zstd.manifest, "v1");

  const R = registry;
  await skopeoCopy(tmp, `oci:${bbLayout.dir}:v1`, `docker://${R}/busybox:v1`);
  await skopeoCopy(tmp, `oci:${lLayout.dir}:v1`, `docker://${R}/layers:v1`);
  await skopeoCopy(tmp, "--all", `oci:${mLayout.dir}:v1`, `docker://${R}/multi:v1`);
  await skopeoCopy(tmp, `oci:${zLayout.dir}:v1`, `docker://${R}/zstd:v1`);
  await skopeoCopy(tmp, "--format", "v2s2", `oci:${bbLayout.dir}:v1`, `docker://${R}/schema2:v1`);
  const head = await fetch(`http://${R}/v2/schema2/manifests/v1`, {
    method: "HEAD",
    headers: { accept: MediaType.dockerManifest },
  });
  await head.body?.cancel();
  const schema2 = {
    manifest: {
      mediaType: head.headers.get("content-type") ?? "",
      digest: head.headers.get("docker-content-digest") ?? "",
      size: Number(head.headers.get("content-length")),
    },
  };
  return {
    busybox,
    layers,
    multi: { index, host: hostImg, other: otherImg, otherPlatform: other.platform },
    schema2,
    zstd,
    names: ["busybox", "layers", "multi", "schema2", "zstd"],
  };
}

function formatPlat(arch: string, variant?: string): string {
  return `linux/${arch}${variant ? `/${variant}` : ""}`;
}

/**
 * Builds a one-layer image whose layer is `mb` MiB of incompressible data
 * (in files of 8 MiB), stored uncompressed in a gzip -1 stream, and pushes it
 * as `${registry}/${name}:v1`.
 */
export async function buildBigImage(
  tmp: string,
  registry: string,
  name: string,
  mb: number,
): Promise<BuiltImage> {
  const dir = `${tmp}/src/${name}`;
  await Deno.mkdir(`${dir}/data`, { recursive: true });
  const chunk = new Uint8Array(1 << 20);
  for (let f = 0; f * 8 < mb; f++) {
    using file = await Deno.open(`${dir}/data/part-${f}`, { write: true, create: true });
    for (let i = 0; i < Math.min(8, mb - f * 8); i++) {
      for (let j = 0; j < chunk.length; j += 65536) {
        crypto.getRandomValues(chunk.subarray(j, j + 65536));
      }
      await file.write(chunk);
    }
  }
  const layout = await new Layout(`${tmp}/oci-${name}`).init();
  const img = await writeImage(layout, [await tarLayer(layout, dir)]);
  await layout.tag(img.manifest, "v1");
  await skopeoCopy(tmp, `oci:${layout.dir}:v1`, `docker://${registry}/${name}:v1`);
  await Deno.remove(dir, { recursive: true });
  return img;
}

/** Starts a registry over `storage` that requires Basic auth for tester:secret. */
export async function startBasicAuthRegistry(tmp: string, storage: string): Promise<RegistryProc> {
  const htp = await run("htpasswd", ["-Bbn", "tester", "secret"], { check: true });
  await Deno.writeTextFile(`${tmp}/htpasswd`, htp.stdout);
  return await startRegistry(
    tmp,
    storage,
    `auth:\n  htpasswd:\n    realm: berth-test\n    path: ${tmp}/htpasswd\n`,
  );
}

/** libtrust's key id: base32 of the first 240 bits of sha256(DER SPKI), in groups of 4. */
export function libtrustKeyId(spkiDer: Uint8Array): string {
  const bytes = createHash("sha256").update(spkiDer).digest().subarray(0, 30);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(":");
}

export function b64url(b: Uint8Array | string): string {
  return Buffer.from(b).toString("base64url");
}

/** A registry that requires ES256 bearer tokens from our own token server. */
/**
 * The token server's answer: with Basic tester:secret, an ES256 JWT for the
 * requested scopes, signed with `key` under libtrust key id `kid`; else 401.
 */
export function issueToken(req: Request, url: URL, kid: string, key: KeyObject): Response {
  if (req.headers.get("authorization") !== `Basic ${btoa("tester:secret")}`) {
    return new Response(JSON.stringify({ details: "incorrect username or password" }), {
      status: 401,
    });
  }
  const now = Math.floor(Date.now() / 1000);
  const access = url.searchParams.getAll("scope").map((s) => {
    const [type, name, actions] = s.split(":");
    return { type, name, actions: actions!.split(",") };
  });
  const header = b64url(JSON.stringify({ typ: "JWT", alg: "ES256", kid }));
  const claims = b64url(JSON.stringify({
    iss: "berth-test-issuer",
    sub: "tester",
    aud: url.searchParams.get("service"),
    exp: now + 300,
    nbf: now - 10,
    iat: now,
    jti: crypto.randomUUID(),
    access,
  }));
  const sig = sign("sha256", Buffer.from(`${header}.${claims}`), {
    key,
    dsaEncoding: "ieee-p1363",
  });
  return Response.json({
    token: `${header}.${claims}.${b64url(sig)}`,
    expires_in: 300,
    issued_at: new Date().toISOString(),
  });
}

export interface TokenRegistry extends RegistryProc {
  /** Every request the token server received. */
  tokenRequests: URL[];
}

/**
 * Starts a token server (tester:secret by Basic auth, ES256 JWTs signed with
 * a fresh key) and a registry over `storage` that trusts its certificate; the
 * registry itself checks every token.
 */
export async function startTokenAuthRegistry(
  tmp: string,
  storage: string,
): Promise<TokenRegistry> {
  const ossl = (...args: string[]) => run("openssl", args, { check: true });
  await ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${tmp}/tok.key`);
  await ossl(
    "req",
    "-x509",
    "-new",
    "-key",
    `${tmp}/tok.key`,
    "-subj",
    "/CN=berth-test-token",
    "-days",
    "1",
    "-out",
    `${tmp}/tok.crt`,
  );
  const key = createPrivateKey(await Deno.readTextFile(`${tmp}/tok.key`));
  const kid = libtrustKeyId(
    createPublicKey(await Deno.readTextFile(`${tmp}/tok.crt`)).export({
      type: "spki",
      format: "der",
    }),
  );
  const tokenRequests: URL[] = [];
  const tokens = front((req, url) => {
    tokenRequests.push(url);
    return issueToken(req, url, kid, key);
  });
  let reg: RegistryProc;
  try {
    reg = await startRegistry(
      tmp,
      storage,
      `auth:
  token:
    realm: http://127.0.0.1:${tokens.port}/token
    service: berth-test-registry
    issuer: berth-test-issuer
    rootcertbundle: ${tmp}/tok.crt
`,
    );
  } catch (e) {
    await tokens.close();
    throw e;
  }
  return {
    ...reg,
    tokenRequests,
    async stop() {
      await reg.stop();
      await tokens.close();
    },
  };
}

/**
 * A front that answers blob GETs with a 307 to a second front on 127.0.0.2
 * (another host, as a CDN would be), which serves the blob from the registry.
 */
export function startRedirectFront(registryPort: number): {
  front: Front;
  cdn: Front;
  close(): Promise<void>;
} {
  const cdn = front((req, url) => {
    const digest = url.pathname.split("/").pop()!;
    const repo = url.searchParams.get("repo")!;
    return proxy(req, new URL(`http://x/v2/${repo}/blobs/${digest}`), registryPort);
  }, "127.0.0.2");
  const fr = front((req, url) => {
    const m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
    if (m && req.method === "GET") {
      return new Response(null, {
        status: 307,
        headers: { location: `http://${cdn.host}/cdn/${m[2]}?repo=${m[1]}` },
      });
    }
    return proxy(req, url, registryPort);
  });
  return {
    front: fr,
    cdn,
    async close() {
      await fr.close();
      await cdn.close();
    },
  };
}

/** A registry with its storage and temp dir, disposed with everything it started. */
export class RegistryEnv implements AsyncDisposable {
  readonly cleanups: Array<() => Promise<void> | void> = [];
  constructor(readonly tmp: string, readonly storage: string, readonly registry: RegistryProc) {}
  get host(): string {
    return this.registry.host;
  }
  get port(): number {
    return this.registry.port;
  }
  /** Registers something to stop on dispose (stopped in reverse order). */
  defer(fn: () => Promise<void> | void): void {
    this.cleanups.push(fn);
  }
  async [Symbol.asyncDispose](): Promise<void> {
    for (const fn of this.cleanups.reverse()) {
      try {
        await fn();
      } catch { /* keep cleaning */ }
    }
    await this.registry.stop();
    await Deno.remove(this.tmp, { recursive: true }).catch(() => {});
  }
}

/** Starts an open registry on a fresh temp dir. */
export async function startRegistryEnv(prefix = "berth-registry-"): Promise<RegistryEnv> {
  const tmp = await Deno.makeTempDir({ prefix });
  const storage = `${tmp}/storage`;
  try {
    return new RegistryEnv(tmp, storage, await startRegistry(tmp, storage));
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}
