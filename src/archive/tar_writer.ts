/**
 * A small tar writer: PAX (POSIX) headers by default, GNU long-name headers on
 * request. Names are written as given, without cleaning, so tests can build
 * archives that a well-behaved writer would never produce (`../x`, `/etc/x`).
 */
import type { TarEntryType } from "./tar_reader.ts";

/** One entry to write. */
export interface TarWriteEntry {
  name: string;
  type: TarEntryType;
  /** Permission bits (07777); default 0644 for files, 0755 for directories. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Modification time in whole seconds; default 1700000000. */
  mtime?: number;
  /** Symlink or hardlink target. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** File contents. */
  data?: Uint8Array | string;
  /** Extended attributes, stored as `SCHILY.xattr.NAME` PAX records. */
  xattrs?: Record<string, Uint8Array | string>;
  /** How to store names over 100 bytes: PAX records (default) or GNU `L`/`K` headers. */
  longNames?: "pax" | "gnu";
}

const enc = new TextEncoder();
const TYPE: Record<TarEntryType, number> = {
  file: 0x30,
  link: 0x31,
  symlink: 0x32,
  char: 0x33,
  block: 0x34,
  dir: 0x35,
  fifo: 0x36,
};

function bytes(v: Uint8Array | string): Uint8Array {
  return typeof v === "string" ? enc.encode(v) : v;
}

function octal(b: Uint8Array, off: number, len: number, v: number): void {
  const s = Math.trunc(v).toString(8).padStart(len - 1, "0");
  if (s.length > len - 1) throw new Error(`tar field too small for ${v}`);
  b.set(enc.encode(s), off);
  b[off + len - 1] = 0;
}

function header(
  name: Uint8Array,
  typeflag: number,
  size: number,
  e: Partial<TarWriteEntry>,
  linkname: Uint8Array,
  gnu: boolean,
): Uint8Array {
  const b = new Uint8Array(512);
  b.set(name.subarray(0, 100), 0);
  octal(b, 100, 8, e.mode ?? 0o644);
  octal(b, 108, 8, e.uid ?? 0);
  octal(b, 116, 8, e.gid ?? 0);
  octal(b, 124, 12, size);
  octal(b, 136, 12, e.mtime ?? 1700000000);
  b.fill(0x20, 148, 156);
  b[156] = typeflag;
  b.set(linkname.subarray(0, 100), 157);
  b.set(enc.encode(gnu ? "ustar  \0" : "ustar\u000000"), 257);
  octal(b, 329, 8, e.devmajor ?? 0);
  octal(b, 337, 8, e.devminor ?? 0);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += b[i]!;
  octal(b, 148, 7, sum);
  b[155] = 0x20;
  return b;
}

function padded(data: Uint8Array): Uint8Array[] {
  const pad = (512 - (data.length % 512)) % 512;
  return pad ? [data, new Uint8Array(pad)] : [data];
}

function paxRecord(key: string, value: Uint8Array): Uint8Array {
  const tail = enc.encode(` ${key}=`);
  const body = tail.length + value.length + 1;
  let len = body + String(body).length;
  if (String(len).length !== String(body).length) len = body + String(len).length;
  const out = new Uint8Array(len);
  const head = enc.encode(`${len} ${key}=`);
  out.set(head, 0);
  out.set(value, head.length);
  out[len - 1] = 0x0a;
  return out;
}

/** The blocks of one entry: extended headers, header, data and padding. */
export function tarEntry(e: TarWriteEntry): Uint8Array[] {
  const out: Uint8Array[] = [];
  const name = enc.encode(e.name);
  const link = enc.encode(e.linkname ?? "");
  const data = e.data === undefined ? new Uint8Array(0) : bytes(e.data);
  const gnu = e.longNames === "gnu";
  const pax: Uint8Array[] = [];
  if (name.length > 100) {
    if (gnu) {
      out.push(
        header(enc.encode("././@LongLink"), 0x4c, name.length + 1, {}, enc.encode(""), true),
      );
      out.push(...padded(new Uint8Array([...name, 0])));
    } else {
      pax.push(paxRecord("path", name));
    }
  }
  if (link.length > 100) {
    if (gnu) {
      out.push(
        header(enc.encode("././@LongLink"), 0x4b, link.length + 1, {}, enc.encode(""), true),
      );
      out.push(...padded(new Uint8Array([...link, 0])));
    } else {
      pax.push(paxRecord("linkpath", link));
    }
  }
  for (const [k, v] of Object.entries(e.xattrs ?? {})) {
    pax.push(paxRecord(`SCHILY.xattr.${k}`, bytes(v)));
  }
  if (pax.length) {
    const body = new Uint8Array(pax.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of pax) {
      body.set(p, o);
      o += p.length;
    }
    out.push(header(enc.encode("PaxHeader"), 0x78, body.length, {}, enc.encode(""), false));
    out.push(...padded(body));
  }
  const mode = e.mode ?? (e.type === "dir" ? 0o755 : 0o644);
  out.push(header(name, TYPE[e.type], data.length, { ...e, mode }, link, gnu));
  if (data.length) out.push(...padded(data));
  return out;
}

/** A whole archive, with the two zero blocks at the end. */
export function buildTar(entries: TarWriteEntry[]): Uint8Array {
  const parts = entries.flatMap(tarEntry);
  parts.push(new Uint8Array(1024));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
