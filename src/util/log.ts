/**
 * Structured logging: one logger with fields, written as logfmt lines to stderr.
 * `logger.with({ id })` derives a child that adds fields to every line.
 */

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";
const ORDER: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };
export type Fields = Record<string, unknown>;

export function parseLogLevel(s: string): LogLevel {
  if (s in ORDER) return s as LogLevel;
  throw new Error(`Invalid log level "${s}": want one of ${Object.keys(ORDER).join(", ")}`);
}

function quote(v: unknown): string {
  const s = v instanceof Error ? v.message : typeof v === "string" ? v : JSON.stringify(v) ?? "";
  return /^[\w./:@+-]+$/.test(s) ? s : JSON.stringify(s);
}

export class Logger {
  #level: number;
  #fields: Fields;
  #sink: (line: string) => void;

  constructor(level: LogLevel = "info", fields: Fields = {}, sink?: (line: string) => void) {
    this.#level = ORDER[level];
    this.#fields = fields;
    this.#sink = sink ?? ((line) => {
      try {
        Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
      } catch { /* stderr gone: nothing to do */ }
    });
  }

  with(fields: Fields): Logger {
    const l = new Logger("info", { ...this.#fields, ...fields }, this.#sink);
    l.#level = this.#level;
    return l;
  }

  enabled(level: LogLevel): boolean {
    return ORDER[level] >= this.#level;
  }

  log(level: LogLevel, msg: string, fields?: Fields): void {
    if (ORDER[level] < this.#level) return;
    let line = `time=${new Date().toISOString()} level=${level} msg=${quote(msg)}`;
    for (const [k, v] of Object.entries({ ...this.#fields, ...fields })) {
      if (v !== undefined) line += ` ${k}=${quote(v)}`;
    }
    this.#sink(line);
  }

  trace(msg: string, f?: Fields) {
    this.log("trace", msg, f);
  }
  debug(msg: string, f?: Fields) {
    this.log("debug", msg, f);
  }
  info(msg: string, f?: Fields) {
    this.log("info", msg, f);
  }
  warn(msg: string, f?: Fields) {
    this.log("warn", msg, f);
  }
  error(msg: string, f?: Fields) {
    this.log("error", msg, f);
  }
}
