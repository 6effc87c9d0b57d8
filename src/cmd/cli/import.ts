import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type ImportChunk,
  type ImportChunkSchema,
  Transfer,
} from "../../gen/berth/images/v1/transfer_pb.ts";
import { type Command, parse, table, toJson, UsageError } from "./command.ts";

const HELP = `Usage: berth import [options] FILE

Imports the images of an OCI image layout tar (as \`ctr export\`, \`skopeo copy
... oci-archive:\` and \`berth export\` write it) or of a \`docker save\` tar,
compressed or not. Blobs are verified against their digests; the images get
the names the archive gives them and are unpacked for the host platform.
FILE "-" reads standard input.

Options:
  --base-name NAME       name for entries tagged only (\`latest\` -> NAME:latest)
  --snapshotter NAME     snapshotter to unpack into [daemon default]
  --skip-unpack          import the content only
  -q, --quiet            print only the image names
  --json                 print the images as JSON
`;

/** Sent per message: well under ttrpc's 4 MiB message limit. */
const CHUNK = 1 << 20;

/** The file's bytes in chunks of at most CHUNK, the options riding on the first. */
async function* chunksOf(
  input: ReadableStream<Uint8Array>,
  first: Omit<ImportChunk, "data" | "$typeName">,
): AsyncGenerator<MessageInitShape<typeof ImportChunkSchema>> {
  let sentFirst = false;
  for await (const buf of input) {
    for (let o = 0; o < buf.length; o += CHUNK) {
      const data = buf.subarray(o, o + CHUNK);
      yield sentFirst ? { data } : { ...first, data };
      sentFirst = true;
    }
  }
  if (!sentFirst) yield { ...first, data: new Uint8Array(0) };
}

export const importCommand: Command = {
  name: "import",
  summary: "Import images from an OCI layout or docker save tar",
  help: HELP,
  async run(g, args) {
    const { values, positionals } = parse(args, {
      "base-name": { type: "string" },
      snapshotter: { type: "string" },
      "skip-unpack": { type: "boolean" },
      quiet: { type: "boolean", short: "q" },
      json: { type: "boolean" },
    }, HELP);
    const file = positionals[0];
    if (!file || positionals.length > 1) {
      throw new UsageError(`import: exactly one FILE is required\n\n${HELP}`);
    }
    const input = file === "-" ? Deno.stdin.readable : (await Deno.open(file)).readable;
    const res = await g.client().upload(
      Transfer,
      "import",
      chunksOf(input, {
        snapshotter: values.snapshotter ?? "",
        baseName: values["base-name"] ?? "",
        skipUnpack: values["skip-unpack"] ?? false,
      }),
    );
    if (values.json) {
      g.out(toJson(res.images.map((i) => ({
        name: i.name,
        mediaType: i.target?.mediaType ?? "",
        digest: i.target?.digest ?? "",
        size: Number(i.target?.size ?? 0),
      }))));
    } else if (values.quiet) { for (const i of res.images) g.out(i.name); }
    else {
      g.out(table(
        ["REF", "TYPE", "DIGEST"],
        res.images.map((i) => [i.name, i.target?.mediaType ?? "", i.target?.digest ?? ""]),
      ));
    }
    return 0;
  },
};
