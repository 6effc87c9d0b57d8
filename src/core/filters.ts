/**
 * containerd's filter syntax, used by every List call:
 *
 * ```
 * filters   := one string per filter; a list of filters is OR-ed
 * selectors := selector ("," selector)*           all must match
 * selector  := fieldpath [operator value]          no operator: field is present
 * fieldpath := field ("." field)*
 * field     := quoted | [A-Za-z_][A-Za-z0-9_]*
 * operator  := "==" | "!=" | "~="                  ~= is a regular expression
 * value     := quoted | [^\s,]+
 * quoted    := a double-quoted string with Go escapes
 * ```
 *
 * @example
 * ```ts
 * const f = parseFilters(['labels."a"==b,name~=^x']);
 * f.match((path) => lookup(obj, path));
 * ```
 */

import { invalidArgument } from "./errdefs.ts";

/** Looks a field path up on the object being filtered; undefined means absent. */
export type Adaptor = (path: string[]) => string | undefined;

type Op = "==" | "!=" | "~=" | "present";
interface Selector {
  path: string[];
  op: Op;
  value: string;
  re?: RegExp;
}

export interface Filter {
  match(adapt: Adaptor): boolean;
}

const ALWAYS: Filter = { match: () => true };

class Parser {
  #s: string;
  #i = 0;
  constructor(s: string) {
    this.#s = s;
  }
  #err(what: string): never {
    throw invalidArgument(`filter "${this.#s}" at ${this.#i}: ${what}`);
  }
  #ws() {
    while (this.#i < this.#s.length && /\s/.test(this.#s[this.#i]!)) this.#i++;
  }
  #quoted(): string {
    const start = this.#i;
    this.#i++; // opening quote
    let out = "";
    while (this.#i < this.#s.length) {
      const c = this.#s[this.#i++]!;
      if (c === '"') return out;
      if (c === "\\") {
        const e = this.#s[this.#i++];
        if (e === undefined) break;
        const map: Record<string, string> = {
          n: "\n",
          t: "\t",
          r: "\r",
          '"': '"',
          "\\": "\\",
          "/": "/",
        };
        out += map[e] ?? "\\" + e;
      } else out += c;
    }
    this.#i = start;
    this.#err("unterminated quoted string");
  }
  #field(): string {
    this.#ws();
    if (this.#s[this.#i] === '"') return this.#quoted();
    const m = /^[A-Za-z_][A-Za-z0-9_\-/]*/.exec(this.#s.slice(this.#i));
    if (!m) this.#err("expected a field name");
    this.#i += m[0].length;
    return m[0];
  }
  #selector(): Selector {
    const path = [this.#field()];
    while (this.#s[this.#i] === ".") {
      this.#i++;
      path.push(this.#field());
    }
    this.#ws();
    const two = this.#s.slice(this.#i, this.#i + 2);
    if (two === "==" || two === "!=" || two === "~=") {
      this.#i += 2;
      this.#ws();
      let value: string;
      if (this.#s[this.#i] === '"') value = this.#quoted();
      else {
        const m = /^[^\s,|]+/.exec(this.#s.slice(this.#i));
        if (!m) this.#err("expected a value");
        value = m[0];
        this.#i += value.length;
      }
      const sel: Selector = { path, op: two, value };
      if (two === "~=") {
        try {
          sel.re = new RegExp(value);
        } catch (e) {
          this.#err(`bad regular expression "${value}": ${(e as Error).message}`);
        }
      }
      return sel;
    }
    return { path, op: "present", value: "" };
  }
  /** Returns alternatives (split by "||"), each a list of AND-ed selectors. */
  parse(): Selector[][] {
    const alts: Selector[][] = [[]];
    this.#ws();
    if (this.#i >= this.#s.length) return [];
    for (;;) {
      alts[alts.length - 1]!.push(this.#selector());
      this.#ws();
      if (this.#i >= this.#s.length) return alts;
      if (this.#s[this.#i] === ",") {
        this.#i++;
      } else if (this.#s.startsWith("||", this.#i)) {
        this.#i += 2;
        alts.push([]);
      } else this.#err(`unexpected "${this.#s[this.#i]}"`);
    }
  }
}

function matchSel(sel: Selector, adapt: Adaptor): boolean {
  const v = adapt(sel.path);
  switch (sel.op) {
    case "present":
      return v !== undefined;
    case "==":
      return v === sel.value;
    case "!=":
      return v !== sel.value;
    case "~=":
      return v !== undefined && sel.re!.test(v);
  }
}

/** Parses a list of filters (OR-ed). An empty list matches everything. */
export function parseFilters(filters: readonly string[]): Filter {
  const alts = filters.filter((f) => f.trim() !== "").flatMap((f) => new Parser(f).parse());
  if (alts.length === 0) return ALWAYS;
  return { match: (adapt) => alts.some((sels) => sels.every((s) => matchSel(s, adapt))) };
}

/**
 * An adaptor for plain objects: `labels` maps to the label set, other fields
 * are looked up by name (camelCase or snake_case) and stringified.
 */
export function adaptObject(obj: Record<string, unknown>): Adaptor {
  return (path) => {
    let cur: unknown = obj;
    for (const p of path) {
      if (cur === null || typeof cur !== "object") return undefined;
      const rec = cur as Record<string, unknown>;
      const camel = p.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
      cur = p in rec ? rec[p] : rec[camel];
      if (cur === undefined) return undefined;
    }
    if (cur === null || cur === undefined) return undefined;
    if (typeof cur === "object") return undefined;
    return String(cur);
  };
}
