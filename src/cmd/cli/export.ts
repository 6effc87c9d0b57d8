import { Transfer } from "../../gen/berth/images/v1/transfer_pb.ts";
import { type Command, parse, UsageError } from "./command.ts";

const HELP = `Usage: berth export [options] FILE NAME...

Writes the named images to FILE as an OCI image layout tar (index.json,
oci-layout, blobs/sha256/...), the format \`ctr import\`, \`skopeo\` and
\`docker load\` read. Image names are kept in the index.json annotations. FILE
"-" writes to standard output.

Options:
  --format oci|docker    docker adds manifest.json (as \`docker save\` writes it),
                         one platform per image [oci]
  --platform P           os/arch[/variant] to include (repeatable)
                         [every platform in the content store; docker: host]
  --all-platforms        every platform of an index (all must be present)
`;

export const exportCommand: Command = {
  name: "export",
  summary: "Export images to an OCI layout or docker tar",
  help: HELP,
  async run(g, args) {
    const { values, positionals } = parse(args, {
      format: { type: "string" },
      platform: { type: "string", multiple: true },
      "all-platforms": { type: "boolean" },
    }, HELP);
    const [file, ...names] = positionals;
    if (!file || names.length === 0) {
      throw new UsageError(`export: FILE and at least one NAME are required\n\n${HELP}`);
    }
    const format = values.format ?? "oci";
    if (format !== "oci" && format !== "docker") {
      throw new UsageError(`export: --format must be oci or docker, not "${format}"`);
    }
    const toStdout = file === "-";
    if (toStdout && Deno.stdout.isTerminal()) {
      throw new UsageError("export: refusing to write a tar to a terminal; give a FILE");
    }
    const out = toStdout ? undefined : await Deno.open(file, {
      write: true,
      create: true,
      truncate: true,
    });
    const w = (out?.writable ?? Deno.stdout.writable).getWriter();
    try {
      for await (
        const chunk of g.client().stream(Transfer, "export", {
          names,
          format,
          platforms: values.platform ?? [],
          allPlatforms: values["all-platforms"] ?? false,
        })
      ) {
        await w.write(chunk.data);
      }
      await w.close();
    } catch (e) {
      // A partial archive is worse than none.
      await w.abort().catch(() => {});
      if (!toStdout) await Deno.remove(file).catch(() => {});
      throw e;
    }
    return 0;
  },
};
