import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Images } from "../../gen/containerd/services/images/v1/images_pb.ts";
import { parseImageConfig } from "../../oci/image.ts";
import { familiarReference, parseReference } from "../../oci/reference.ts";
import { details, readBlob } from "./image_util.ts";
import {
  type Command,
  dispatch,
  formatSize,
  type Globals,
  parse,
  table,
  toJson,
  UsageError,
} from "./command.ts";
import { formatAge } from "./content.ts";

const HELP = `Usage: berth images [command]

Manage images. With no command, lists them.

Commands:
  ls [-q] [--json] [FILTER...]   list images (REPOSITORY, TAG, DIGEST, SIZE, CREATED)
  rm [--async] NAME...           remove images (and, unless --async, collect what they held)
  tag SOURCE TARGET...           give an image more names
  inspect NAME...                print image, manifest and config as JSON

Filters use containerd's syntax, e.g. name~=busybox or labels."a"==b.
Aliases: image, rmi (= images rm)
`;

function splitName(name: string): [string, string] {
  try {
    const r = parseReference(name);
    const fam = familiarReference({ domain: r.domain, path: r.path });
    return [fam, r.tag ?? (r.digest ? "<none>" : "latest")];
  } catch {
    return [name, "<none>"];
  }
}

async function ls(g: Globals, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    quiet: { type: "boolean", short: "q" },
    json: { type: "boolean" },
  }, HELP);
  const c = g.client();
  const { images } = await c.call(Images, "list", { filters: positionals });
  if (values.quiet) {
    for (const i of images) g.out(i.name);
    return 0;
  }
  const rows = await Promise.all(images.map(async (img) => {
    let size: number | undefined;
    try {
      size = (await details(c, img)).size;
    } catch {
      size = undefined; // content missing (e.g. pulled elsewhere and pruned)
    }
    return { img, size };
  }));
  if (values.json) {
    g.out(toJson(rows.map(({ img, size }) => ({
      name: img.name,
      digest: img.target?.digest,
      mediaType: img.target?.mediaType,
      size: size ?? null,
      labels: img.labels,
      createdAt: img.createdAt ? timestampDate(img.createdAt).toISOString() : null,
    }))));
    return 0;
  }
  g.out(table(
    ["REPOSITORY", "TAG", "DIGEST", "SIZE", "CREATED"],
    rows.map(({ img, size }) => {
      const [repo, tag] = splitName(img.name);
      return [
        repo,
        tag,
        (img.target?.digest ?? "").replace(/^sha256:/, "").slice(0, 12),
        size === undefined ? "-" : formatSize(size),
        img.createdAt ? `${formatAge(timestampDate(img.createdAt))} ago` : "-",
      ];
    }),
  ));
  return 0;
}

export async function removeImages(g: Globals, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { async: { type: "boolean" } }, HELP);
  if (positionals.length === 0) {
    throw new UsageError(`images rm: at least one NAME is required\n\n${HELP}`);
  }
  let failed = 0;
  for (const name of positionals) {
    try {
      await g.client().call(Images, "delete", { name, sync: !values.async });
      g.out(name);
    } catch (e) {
      g.err(`berth: ${(e as Error).message}`);
      failed++;
    }
  }
  return failed ? 1 : 0;
}

async function tag(g: Globals, args: string[]): Promise<number> {
  const { positionals } = parse(args, {}, HELP);
  const [src, ...targets] = positionals;
  if (!src || targets.length === 0) {
    throw new UsageError(`images tag: SOURCE and TARGET are required\n\n${HELP}`);
  }
  const c = g.client();
  const { image } = await c.call(Images, "get", { name: src });
  for (const t of targets) {
    const name = (() => {
      try {
        const r = parseReference(t);
        return `${r.domain}/${r.path}${r.tag ? `:${r.tag}` : ""}${r.digest ? `@${r.digest}` : ""}`;
      } catch {
        return t;
      }
    })();
    try {
      await c.call(Images, "create", {
        image: { name, labels: image?.labels ?? {}, target: image?.target },
      });
    } catch (e) {
      if (!/already exists/.test((e as Error).message)) throw e;
      await c.call(Images, "update", {
        image: { name, labels: image?.labels ?? {}, target: image?.target },
        updateMask: { paths: ["target"] },
      });
    }
    g.out(name);
  }
  return 0;
}

async function inspect(g: Globals, args: string[]): Promise<number> {
  const { positionals } = parse(args, {}, HELP);
  if (positionals.length === 0) {
    throw new UsageError(`images inspect: a NAME is required\n\n${HELP}`);
  }
  const c = g.client();
  const out = [];
  for (const name of positionals) {
    const { image } = await c.call(Images, "get", { name });
    const d = await details(c, image!);
    const config = d.config
      ? parseImageConfig(await readBlob(c, d.config.digest), `config of "${name}"`)
      : undefined;
    out.push({
      name: image!.name,
      target: image!.target,
      labels: image!.labels,
      createdAt: image!.createdAt ? timestampDate(image!.createdAt).toISOString() : null,
      size: d.size,
      manifest: d.manifest,
      config,
    });
  }
  g.out(toJson(out));
  return 0;
}

export const imagesCommand: Command = {
  name: "images",
  aliases: ["image"],
  summary: "Manage images (ls, rm, tag, inspect)",
  help: HELP,
  run: (g, args) =>
    args.length === 0 || args[0]!.startsWith("-") && args[0] !== "-h" && args[0] !== "--help"
      ? ls(g, args)
      : dispatch(g, args, HELP, {
        ls,
        list: ls,
        rm: removeImages,
        remove: removeImages,
        tag,
        inspect,
      }),
};

export const rmiCommand: Command = {
  name: "rmi",
  summary: "Remove images",
  help: HELP,
  run: removeImages,
};
