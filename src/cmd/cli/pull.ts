import { Transfer } from "../../gen/berth/images/v1/transfer_pb.ts";
import { type Command, formatSize, parse, toJson, UsageError } from "./command.ts";

const HELP = `Usage: berth pull [options] REF

Pulls an image: resolves REF, fetches and verifies its blobs, unpacks the
layers into snapshots and records the image. Runs in the daemon; progress is
shown per layer (live on a terminal, one line per change otherwise).

Options:
  --snapshotter NAME     snapshotter to unpack into [daemon default]
  --platform P           os/arch[/variant] to pull (repeatable) [host]
  --all-platforms        pull every platform of an index
  --plain-http           use http instead of https (localhost uses http anyway)
  -u, --user USER:PASS   registry credentials
  --skip-unpack          fetch the content only
  -q, --quiet            print only the image name and digest
  --json                 print the result as JSON
`;

/** One blob's progress as a pull reports it. */
export interface Blob {
  digest: string;
  offset: number;
  total: number;
  state: string;
}

function short(d: string): string {
  return d.replace(/^sha256:/, "").slice(0, 12);
}

/**
 * Renders progress: redrawn in place on a terminal, change lines otherwise.
 * Written to `out` (default stdout; `berth run` uses stderr).
 */
export class ProgressView {
  #tty: boolean;
  #out: { writeSync(b: Uint8Array): number };
  #lines = 0;
  #seen = new Map<string, string>();
  #start = performance.now();
  #rates = new Map<string, { t: number; off: number; rate: number }>();
  #enc = new TextEncoder();
  constructor(tty: boolean, out: { writeSync(b: Uint8Array): number } = Deno.stdout) {
    this.#tty = tty;
    this.#out = out;
  }
  #rate(b: Blob): number {
    const now = performance.now();
    const r = this.#rates.get(b.digest);
    if (!r) {
      this.#rates.set(b.digest, { t: now, off: b.offset, rate: 0 });
      return 0;
    }
    if (now - r.t > 200) {
      const inst = ((b.offset - r.off) * 1000) / (now - r.t);
      r.rate = r.rate ? r.rate * 0.6 + inst * 0.4 : inst;
      r.t = now;
      r.off = b.offset;
    }
    return r.rate;
  }
  update(phase: string, blobs: Blob[]) {
    if (!this.#tty) {
      for (const b of blobs) {
        const key = b.state === "downloading" ? "downloading" : b.state;
        if (this.#seen.get(b.digest) === key) continue;
        this.#seen.set(b.digest, key);
        this.#out.writeSync(
          this.#enc.encode(`${short(b.digest)}: ${b.state} ${formatSize(b.total)}\n`),
        );
      }
      return;
    }
    const rows = blobs.map((b) => {
      const pct = b.total > 0 ? Math.floor((b.offset / b.total) * 100) : 100;
      let extra = "";
      if (b.state === "downloading") {
        const rate = this.#rate(b);
        const eta = rate > 0 ? Math.ceil((b.total - b.offset) / rate) : undefined;
        extra = `  ${formatSize(b.offset)}/${formatSize(b.total)} ${String(pct).padStart(3)}%` +
          (rate > 0 ? `  ${formatSize(rate)}/s` : "") + (eta !== undefined ? `  ETA ${eta}s` : "");
      } else extra = `  ${formatSize(b.total)}`;
      return `${short(b.digest)}  ${b.state.padEnd(11)}${extra}`;
    });
    const elapsed = ((performance.now() - this.#start) / 1000).toFixed(1);
    rows.push(`${phase} (${elapsed}s)`);
    let out = this.#lines > 0 ? `\x1b[${this.#lines}A` : "";
    out += rows.map((r) => `\x1b[2K${r}\n`).join("");
    this.#lines = rows.length;
    this.#out.writeSync(this.#enc.encode(out));
  }
}

export const pullCommand: Command = {
  name: "pull",
  summary: "Pull an image from a registry",
  help: HELP,
  async run(g, args) {
    const { values, positionals } = parse(args, {
      snapshotter: { type: "string" },
      platform: { type: "string", multiple: true },
      "all-platforms": { type: "boolean" },
      "plain-http": { type: "boolean" },
      user: { type: "string", short: "u" },
      "skip-unpack": { type: "boolean" },
      quiet: { type: "boolean", short: "q" },
      json: { type: "boolean" },
    }, HELP);
    const ref = positionals[0];
    if (!ref || positionals.length > 1) {
      throw new UsageError(`pull: exactly one REF is required\n\n${HELP}`);
    }
    const view = values.quiet || values.json
      ? undefined
      : new ProgressView(Deno.stdout.isTerminal());
    const blobs = new Map<string, Blob>();
    let final;
    for await (
      const msg of g.client().stream(Transfer, "pull", {
        reference: ref,
        snapshotter: values.snapshotter ?? "",
        platforms: values.platform ?? [],
        allPlatforms: values["all-platforms"] ?? false,
        plainHttp: values["plain-http"] ?? false,
        user: values.user ?? "",
        skipUnpack: values["skip-unpack"] ?? false,
      })
    ) {
      for (const b of msg.blobs) {
        blobs.set(b.digest, {
          digest: b.digest,
          offset: Number(b.offset),
          total: Number(b.total),
          state: b.state,
        });
      }
      if (msg.image) final = msg;
      else view?.update(msg.phase, [...blobs.values()]);
    }
    if (!final?.image) throw new Error(`Pull of "${ref}" ended without a result`);
    const img = final.image;
    const digest = img.target?.digest ?? "";
    if (values.json) {
      g.out(toJson({ name: img.name, digest, fetchedBytes: Number(final.fetchedBytes) }));
    } else if (values.quiet) g.out(`${img.name}@${digest}`);
    else {
      view?.update("done", [...blobs.values()]);
      g.out(`${img.name}: pulled ${digest} (${formatSize(Number(final.fetchedBytes))} fetched)`);
    }
    return 0;
  },
};
