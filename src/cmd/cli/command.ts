/**
 * What a CLI verb is, and the helpers verbs share: flag parsing with --help,
 * tables, JSON output and label arguments.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { Client } from "./client.ts";

export interface Globals {
  address: string;
  namespace: string;
  /** Opens (once) the connection to the daemon. */
  client(): Client;
  out(line: string): void;
  err(line: string): void;
}

export interface Command {
  name: string;
  aliases?: string[];
  summary: string;
  /** Full help text, printed for --help. */
  help: string;
  run(g: Globals, args: string[]): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** A mistake in the command line itself: printed with exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Thrown to print a help text and exit 0. */
export class HelpRequested extends Error {
  readonly text: string;
  constructor(text: string) {
    super("help");
    this.text = text;
  }
}

/** Parses a verb's arguments; -h/--help raises HelpRequested with `help`. */
export function parse<O extends Options>(args: string[], options: O, help: string) {
  const all = { ...options, help: { type: "boolean", short: "h" } } as O & {
    help: { type: "boolean"; short: "h" };
  };
  let parsed;
  try {
    parsed = parseArgs({ args, options: all, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.replace(/\. To specify.*$/s, "")}\n\n${help}`);
  }
  if ((parsed.values as Record<string, unknown>).help) throw new HelpRequested(help);
  return parsed;
}

/** Dispatches to a subcommand (e.g. `namespaces ls`). */
export async function dispatch(
  g: Globals,
  args: string[],
  help: string,
  subs: Record<string, (g: Globals, args: string[]) => Promise<number>>,
): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") {
    throw new HelpRequested(help);
  }
  const fn = subs[sub];
  if (!fn) throw new UsageError(`unknown subcommand "${sub}"\n\n${help}`);
  return await fn(g, rest);
}

/** Formats rows as a left-aligned table under `headers`. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("    ").trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** `k=v,k2=v2` for a label set, `-` when empty. */
export function formatLabels(labels: Record<string, string>): string {
  const s = Object.entries(labels).map(([k, v]) => `${k}=${v}`).sort().join(",");
  return s || "-";
}

/** Parses `k=v` arguments into labels; `k=` or `k` alone means "remove k". */
export function parseLabels(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args) {
    const i = a.indexOf("=");
    const k = i < 0 ? a : a.slice(0, i);
    if (!k) throw new UsageError(`label "${a}" has no key`);
    out[k] = i < 0 ? "" : a.slice(i + 1);
  }
  return out;
}

/** Prints `v` as indented JSON, with bigints as numbers and bytes as base64. */
export function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => {
    if (typeof x === "bigint") return Number(x);
    if (x instanceof Uint8Array) return btoa(String.fromCharCode(...x));
    if (x && typeof x === "object" && "$typeName" in x) {
      const { $typeName: _, ...rest } = x as Record<string, unknown>;
      return rest;
    }
    return x;
  }, 2);
}

/** Human-readable size in the units ctr uses (kB = 1000). */
export function formatSize(n: number | bigint): string {
  let v = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}
