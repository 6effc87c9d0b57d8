/**
 * What a CLI verb is, and the helpers verbs share: flag parsing with --help,
 * tables, JSON output and label arguments.
 */
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

/** One option of a verb, as node:util's parseArgs describes it. */
export interface OptionSpec {
  readonly type: "boolean" | "string";
  readonly short?: string;
  readonly multiple?: boolean;
}
type Options = Readonly<Record<string, OptionSpec>>;
type ValueOf<O extends OptionSpec> = O["type"] extends "boolean"
  ? (O["multiple"] extends true ? boolean[] : boolean)
  : (O["multiple"] extends true ? string[] : string);
/** Parsed option values: absent options are undefined. */
export type Values<O extends Options> = { -readonly [K in keyof O]?: ValueOf<O[K]> };

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

/**
 * Parses a verb's arguments; -h/--help raises HelpRequested with `help`.
 * The rules are node:util's parseArgs in strict mode with positionals (which
 * costs a CLI call tens of milliseconds to load): `--name value`,
 * `--name=value`, `-n value`, `-nvalue`, grouped short booleans (`-qa`),
 * and `--` ending the options.
 */
export function parse<O extends Options>(
  args: string[],
  options: O,
  help: string,
): { values: Values<O>; positionals: string[] } {
  const all: Options = { ...options, help: { type: "boolean", short: "h" } };
  let parsed;
  try {
    parsed = parseStrict(args, all);
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(`${e.message}\n\n${help}`);
    throw e;
  }
  if (parsed.values.help) throw new HelpRequested(help);
  delete parsed.values.help;
  return parsed as { values: Values<O>; positionals: string[] };
}

function parseStrict(
  args: string[],
  options: Options,
): { values: Record<string, unknown>; positionals: string[] } {
  const values: Record<string, unknown> = {};
  const positionals: string[] = [];
  const byShort = new Map<string, string>();
  for (const [name, o] of Object.entries(options)) if (o.short) byShort.set(o.short, name);
  const label = (name: string) => {
    const o = options[name]!;
    return o.short ? `-${o.short}, --${name}` : `--${name}`;
  };
  const store = (name: string, value: string | boolean) => {
    if (options[name]!.multiple) ((values[name] ??= []) as unknown[]).push(value);
    else values[name] = value;
  };
  /** The value of string option `name` given as `raw`: the next argument. */
  const takeNext = (name: string, raw: string, i: number): string => {
    const v = args[i];
    if (v === undefined) throw new UsageError(`Option '${label(name)} <value>' argument missing`);
    if (v.length > 1 && v.startsWith("-")) {
      throw new UsageError(
        `Option '${raw}' argument is ambiguous.\nDid you forget to specify the option ` +
          `argument for '${raw}'?\nTo specify an option argument starting with a dash use ` +
          `'${raw.startsWith("--") ? `${raw}=-XYZ` : `--${name}=-XYZ' or '${raw}-XYZ`}'.`,
      );
    }
    return v;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const raw = eq < 0 ? a : a.slice(0, eq);
      const o = Object.hasOwn(options, name) ? options[name] : undefined;
      if (!o) throw new UsageError(`Unknown option '${raw}'`);
      if (o.type === "boolean") {
        if (eq >= 0) throw new UsageError(`Option '${label(name)}' does not take an argument`);
        store(name, true);
      } else store(name, eq >= 0 ? a.slice(eq + 1) : takeNext(name, raw, ++i));
      continue;
    }
    if (a.length > 1 && a.startsWith("-")) {
      // -x, -xVALUE, or a group of short booleans (-qa) whose last may take a value.
      for (let j = 1; j < a.length; j++) {
        const name = byShort.get(a[j]!);
        if (!name) throw new UsageError(`Unknown option '-${a[j]}'`);
        if (options[name]!.type === "boolean") {
          store(name, true);
          continue;
        }
        store(name, j + 1 < a.length ? a.slice(j + 1) : takeNext(name, `-${a[j]}`, ++i));
        break;
      }
      continue;
    }
    positionals.push(a);
  }
  return { values, positionals };
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
