/**
 * POSIX path helpers with node:path's semantics (posix flavour), for modules
 * the CLI loads: importing any `node:` module loads Deno's node compatibility
 * layer, ~30 ms of every CLI call. path_test.ts checks them against node:path.
 */

/** Whether `p` starts at the root. */
export function isAbsolute(p: string): boolean {
  return p.startsWith("/");
}

/** `p` with `.`, `..` and repeated slashes resolved; a trailing slash is kept. */
export function normalize(p: string): string {
  if (p === "") return ".";
  const abs = isAbsolute(p);
  const trailing = p.endsWith("/");
  const out: string[] = [];
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!abs) out.push("..");
      continue;
    }
    out.push(seg);
  }
  let s = out.join("/");
  if (abs) s = `/${s}`;
  else if (s === "") s = ".";
  if (trailing && s !== "/") s += "/";
  return s;
}

/** The parts joined with `/` and normalized (`.` when all are empty). */
export function join(...parts: string[]): string {
  const s = parts.filter((x) => x !== "").join("/");
  return s === "" ? "." : normalize(s);
}

/** An absolute path: the parts from the right up to the first absolute one, on the working directory. */
export function resolve(...parts: string[]): string {
  let s = "";
  for (let i = parts.length - 1; i >= 0 && !isAbsolute(s); i--) {
    const p = parts[i]!;
    if (p === "") continue;
    s = s === "" ? p : `${p}/${s}`;
  }
  if (!isAbsolute(s)) s = `${Deno.cwd()}/${s}`;
  const n = normalize(s);
  return n.length > 1 && n.endsWith("/") ? n.slice(0, -1) : n;
}

/** The directory part of `p` (the slashes before its last part are kept, as node:path does). */
export function dirname(p: string): string {
  if (p === "") return ".";
  const root = p.startsWith("/");
  let end = -1;
  let trailing = true;
  for (let i = p.length - 1; i >= 1; i--) {
    if (p[i] === "/") {
      if (!trailing) {
        end = i;
        break;
      }
    } else trailing = false;
  }
  if (end === -1) return root ? "/" : ".";
  if (root && end === 1) return "//";
  return p.slice(0, end);
}
