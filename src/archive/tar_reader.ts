/**
 * A push-based streaming tar reader: feed it chunks of an uncompressed tar as
 * they arrive and it calls a {@link TarSink} for each entry and each slice of
 * file data, synchronously, without buffering file contents.
 *
 * It reads the formats image layers use: POSIX ustar with PAX extended headers
 * (`path`, `linkpath`, `size`, `uid`, `gid`, `mtime`, `atime`, `SCHILY.xattr.*`),
 * GNU long names and link names (`L`/`K`), GNU base-256 numbers, and old v7
 * headers. PAX values are kept as bytes, so binary xattrs such as
 * `security.capability` survive (npm:tar-stream decodes them as UTF-8 and
 * mangles them, which is why berth reads tar itself).
 */

/** The kinds of entry a layer can hold. */
export type TarEntryType = "file" | "dir" | "symlink" | "link" | "char" | "block" | "fifo";

/** One entry, after extended headers have been folded in. */
export interface TarEntry {
  /** The name as stored (PAX `path` or GNU long name when present). */
  name: string;
  type: TarEntryType;
  /** Permission bits including setuid, setgid and sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow (regular files only; 0 for everything else). */
  size: number;
  /** Symlink target or hardlink target name. */
  linkname: string;
  mtimeSec: number;
  mtimeNsec: number;
  /** Access time when a PAX header carries one. */
  atimeSec?: number;
  atimeNsec?: number;
  devmajor: number;
  devminor: number;
  /** Extended attributes from `SCHILY.xattr.NAME` records, values as raw bytes. */
  xattrs?: Map<string, Uint8Array>;
}

/** Receives what the reader finds; every call is synchronous. */
export interface TarSink {
  /** A new entry; its data (if any) follows through `data`, then `end`. */
  entry(e: TarEntry): void;
  /** A slice of the current entry's data (a view into the input chunk). */
  data(bytes: Uint8Array): void;
  /** The current entry is complete. */
  end(): void;
}

/** Malformed tar input; `offset` is the byte offset of the bad block. */
export class TarFormatError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.name = "TarFormatError";
    this.offset = offset;
  }
}

const BLOCK = 512;
/** Like Go's archive/tar: extended headers larger than this are refused. */
const MAX_META = 1 << 20;

const enum State {
  Header,
  Meta,
  Data,
  Skip,
  Done,
}

const utf8 = new TextDecoder("utf-8");

/**
 * Streaming tar parser.
 *
 * ```ts
 * const r = new TarReader(sink);
 * for await (const chunk of stream) r.push(chunk);
 * r.finish();
 * ```
 */
export class TarReader {
  #sink: TarSink;
  #state = State.Header;
  #offset = 0; // bytes consumed so far
  #hdr = new Uint8Array(BLOCK);
  #hdrFill = 0;
  #remaining = 0; // data bytes left in the current entry (Data/Meta/Skip)
  #pad = 0; // padding bytes after the data
  #meta: Uint8Array | undefined;
  #metaFill = 0;
  #metaType = 0;
  #inEntry = false;
  #entryName = "";
  // pending extended header values for the next entry
  #pax: Map<string, Uint8Array> | undefined;
  #longName: string | undefined;
  #longLink: string | undefined;

  constructor(sink: TarSink) {
    this.#sink = sink;
  }

  /** True after the end-of-archive marker (a zero block) was read. */
  get done(): boolean {
    return this.#state === State.Done;
  }

  /** The name of the entry being read, for error messages. */
  get currentEntry(): string {
    return this.#entryName;
  }

  /** Feeds the next chunk. Throws TarFormatError on malformed input. */
  push(chunk: Uint8Array): void {
    let pos = 0;
    const len = chunk.length;
    while (pos < len) {
      switch (this.#state) {
        case State.Done:
          return; // trailing zero blocks and padding: only hashed by the caller
        case State.Header: {
          if (this.#hdrFill === 0 && len - pos >= BLOCK) {
            const at = this.#offset;
            this.#offset += BLOCK;
            this.#header(chunk.subarray(pos, pos + BLOCK), at);
            pos += BLOCK;
          } else {
            const n = Math.min(BLOCK - this.#hdrFill, len - pos);
            this.#hdr.set(chunk.subarray(pos, pos + n), this.#hdrFill);
            this.#hdrFill += n;
            this.#offset += n;
            pos += n;
            if (this.#hdrFill === BLOCK) {
              this.#hdrFill = 0;
              this.#header(this.#hdr, this.#offset - BLOCK);
            }
          }
          break;
        }
        case State.Data: {
          const n = Math.min(this.#remaining, len - pos);
          if (n > 0) {
            this.#sink.data(chunk.subarray(pos, pos + n));
            this.#remaining -= n;
            pos += n;
            this.#offset += n;
          }
          if (this.#remaining === 0) this.#finishData();
          break;
        }
        case State.Meta: {
          const n = Math.min(this.#remaining, len - pos);
          this.#meta!.set(chunk.subarray(pos, pos + n), this.#metaFill);
          this.#metaFill += n;
          this.#remaining -= n;
          pos += n;
          this.#offset += n;
          if (this.#remaining === 0) this.#finishMeta();
          break;
        }
        case State.Skip: {
          const n = Math.min(this.#remaining, len - pos);
          this.#remaining -= n;
          pos += n;
          this.#offset += n;
          if (this.#remaining === 0) this.#state = State.Header;
          break;
        }
      }
    }
  }

  /** Ends the input: throws when it stopped inside an entry or header. */
  finish(): void {
    if (this.#state === State.Done) return;
    if (this.#state === State.Header && this.#hdrFill === 0 && !this.#pax && !this.#longName) {
      return; // no end-of-archive blocks: accepted, as Go's archive/tar does
    }
    const what = this.#entryName ? ` in entry "${this.#entryName}"` : "";
    throw new TarFormatError(`unexpected end of tar stream${what}`, this.#offset);
  }

  #finishData(): void {
    if (this.#pad > 0) {
      this.#remaining = this.#pad;
      this.#pad = 0;
      this.#state = State.Skip;
    } else {
      this.#state = State.Header;
    }
    if (this.#inEntry) {
      this.#inEntry = false;
      this.#sink.end();
    }
  }

  #header(b: Uint8Array, at: number): void {
    if (isZero(b)) {
      this.#state = State.Done;
      return;
    }
    const stored = parseNumber(b, 148, 8);
    let unsigned = 0;
    let signed = 0;
    for (let i = 0; i < BLOCK; i++) {
      const v = i >= 148 && i < 156 ? 32 : b[i]!;
      unsigned += v;
      signed += v > 127 ? v - 256 : v;
    }
    if (stored !== unsigned && stored !== signed) {
      throw new TarFormatError(`invalid tar header checksum at offset ${at}`, at);
    }
    const typeflag = b[156]!;
    let size = parseNumber(b, 124, 12);
    const pax = this.#pax;
    const paxSize = pax?.get("size");
    if (paxSize) size = parseDecimal(paxSize, "size", at);
    if (size < 0) throw new TarFormatError(`negative entry size at offset ${at}`, at);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;

    // Extended headers that describe the next entry.
    switch (typeflag) {
      case 0x78: // 'x' PAX local
      case 0x67: // 'g' PAX global: read and ignored (containerd ignores it too)
      case 0x4c: // 'L' GNU long name
      case 0x4b: // 'K' GNU long link name
        if (size > MAX_META) {
          throw new TarFormatError(`extended header of ${size} bytes at offset ${at}`, at);
        }
        this.#metaType = typeflag;
        this.#meta = new Uint8Array(size);
        this.#metaFill = 0;
        this.#remaining = size;
        this.#pad = pad;
        this.#state = State.Meta;
        if (size === 0) this.#finishMeta();
        return;
    }

    const magicUstar = b[257] === 0x75 && b[258] === 0x73 && b[259] === 0x74 &&
      b[260] === 0x61 && b[261] === 0x72;
    const posix = magicUstar && b[262] === 0; // "ustar\0" (GNU writes "ustar  \0")
    let name = this.#longName ?? cString(b, 0, 100);
    if (this.#longName === undefined && posix) {
      const prefix = cString(b, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const paxPath = pax?.get("path");
    if (paxPath) name = utf8.decode(paxPath);
    let linkname = this.#longLink ?? cString(b, 157, 100);
    const paxLink = pax?.get("linkpath");
    if (paxLink) linkname = utf8.decode(paxLink);

    let type: TarEntryType;
    let hasData = false;
    switch (typeflag) {
      case 0: // v7 regular file; a trailing slash meant a directory
        type = name.endsWith("/") ? "dir" : "file";
        hasData = type === "file";
        break;
      case 0x30: // '0'
      case 0x37: // '7' contiguous file
        type = "file";
        hasData = true;
        break;
      case 0x31: // '1'
        type = "link";
        break;
      case 0x32: // '2'
        type = "symlink";
        break;
      case 0x33: // '3'
        type = "char";
        break;
      case 0x34: // '4'
        type = "block";
        break;
      case 0x35: // '5'
      case 0x44: // 'D' GNU dump dir
        type = "dir";
        break;
      case 0x36: // '6'
        type = "fifo";
        break;
      case 0x56: // 'V' GNU volume label: not a file
        this.#resetExtended();
        this.#skip(size + pad);
        return;
      default: {
        const c = String.fromCharCode(typeflag);
        throw new TarFormatError(
          `unsupported tar entry type '${c}' for "${name}" at offset ${at}`,
          at,
        );
      }
    }
    if (pax) {
      for (const k of pax.keys()) {
        if (k.startsWith("GNU.sparse.")) {
          throw new TarFormatError(`unsupported sparse file "${name}" at offset ${at}`, at);
        }
      }
    }

    const e: TarEntry = {
      name,
      type,
      mode: parseNumber(b, 100, 8) & 0o7777,
      uid: parseNumber(b, 108, 8),
      gid: parseNumber(b, 116, 8),
      size: hasData ? size : 0,
      linkname,
      mtimeSec: parseNumber(b, 136, 12),
      mtimeNsec: 0,
      devmajor: type === "char" || type === "block" ? parseNumber(b, 329, 8) : 0,
      devminor: type === "char" || type === "block" ? parseNumber(b, 337, 8) : 0,
    };
    if (pax) applyPax(e, pax, at);
    this.#resetExtended();
    this.#entryName = name;
    this.#inEntry = true;
    this.#sink.entry(e);
    if (hasData && size > 0) {
      this.#remaining = size;
      this.#pad = pad;
      this.#state = State.Data;
    } else {
      // Header-only types: like Go, any stored size is skipped, not read as data.
      this.#inEntry = false;
      this.#sink.end();
      this.#skip(hasData ? 0 : size + pad);
    }
  }

  #skip(n: number): void {
    if (n > 0) {
      this.#remaining = n;
      this.#state = State.Skip;
    } else {
      this.#state = State.Header;
    }
  }

  #resetExtended(): void {
    this.#pax = undefined;
    this.#longName = undefined;
    this.#longLink = undefined;
  }

  #finishMeta(): void {
    const buf = this.#meta!;
    this.#meta = undefined;
    const at = this.#offset;
    switch (this.#metaType) {
      case 0x78: {
        const recs = parsePax(buf, at);
        if (this.#pax) { for (const [k, v] of recs) this.#pax.set(k, v); }
        else this.#pax = recs;
        break;
      }
      case 0x4c:
        this.#longName = cString(buf, 0, buf.length);
        break;
      case 0x4b:
        this.#longLink = cString(buf, 0, buf.length);
        break;
    }
    this.#skip(this.#pad);
    this.#pad = 0;
  }
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/** A NUL-terminated UTF-8 field. */
function cString(b: Uint8Array, off: number, len: number): string {
  let end = off;
  const max = off + len;
  while (end < max && b[end] !== 0) end++;
  // ASCII fast path: most names are plain ASCII
  let ascii = true;
  for (let i = off; i < end; i++) {
    if (b[i]! > 127) {
      ascii = false;
      break;
    }
  }
  if (ascii) return String.fromCharCode.apply(null, b.subarray(off, end) as unknown as number[]);
  return utf8.decode(b.subarray(off, end));
}

/** An octal field (space/NUL padded) or a GNU base-256 field (high bit set). */
function parseNumber(b: Uint8Array, off: number, len: number): number {
  const first = b[off]!;
  if (first & 0x80) {
    // GNU base-256: big-endian two's complement; bit 0x80 of the first byte is
    // the marker, bit 0x40 the sign.
    const inv = first & 0x40 ? 0xff : 0;
    let v = (first ^ inv) & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + (b[off + i]! ^ inv);
    return inv ? -v - 1 : v;
  }
  let v = 0;
  let i = off;
  const end = off + len;
  while (i < end && (b[i] === 0x20 || b[i] === 0)) i++;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
  }
  return v;
}

function parseDecimal(v: Uint8Array, key: string, at: number): number {
  const s = utf8.decode(v);
  if (!/^\d+$/.test(s)) throw new TarFormatError(`invalid PAX ${key} "${s}" at offset ${at}`, at);
  return Number(s);
}

/** `sec[.frac]`, possibly negative, as whole seconds and nanoseconds. */
function parsePaxTime(v: Uint8Array, key: string, at: number): [number, number] {
  const s = utf8.decode(v);
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(s);
  if (!m) throw new TarFormatError(`invalid PAX ${key} "${s}" at offset ${at}`, at);
  let sec = Number(m[2]);
  let nsec = m[3] ? Number((m[3] + "000000000").slice(0, 9)) : 0;
  if (m[1]) {
    sec = -sec;
    if (nsec) {
      sec -= 1;
      nsec = 1e9 - nsec;
    }
  }
  return [sec, nsec];
}

const XATTR_PREFIX = "SCHILY.xattr.";

function applyPax(e: TarEntry, pax: Map<string, Uint8Array>, at: number): void {
  for (const [k, v] of pax) {
    switch (k) {
      case "uid":
        e.uid = parseDecimal(v, k, at);
        break;
      case "gid":
        e.gid = parseDecimal(v, k, at);
        break;
      case "mtime":
        [e.mtimeSec, e.mtimeNsec] = parsePaxTime(v, k, at);
        break;
      case "atime":
        [e.atimeSec, e.atimeNsec] = parsePaxTime(v, k, at);
        break;
      default:
        if (k.startsWith(XATTR_PREFIX)) {
          (e.xattrs ??= new Map()).set(k.slice(XATTR_PREFIX.length), v);
        }
    }
  }
}

/** PAX records: `LEN KEY=VALUE\n`, LEN counting the whole record in bytes. */
function parsePax(buf: Uint8Array, at: number): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] === 0) break; // NUL padding
    let sp = pos;
    let len = 0;
    while (sp < buf.length && buf[sp]! >= 0x30 && buf[sp]! <= 0x39) {
      len = len * 10 + (buf[sp]! - 0x30);
      sp++;
    }
    if (sp === pos || buf[sp] !== 0x20 || len <= sp - pos + 1 || pos + len > buf.length) {
      throw new TarFormatError(`invalid PAX record at offset ${at}`, at);
    }
    const end = pos + len; // exclusive; buf[end-1] must be '\n'
    if (buf[end - 1] !== 0x0a) throw new TarFormatError(`invalid PAX record at offset ${at}`, at);
    let eq = sp + 1;
    while (eq < end - 1 && buf[eq] !== 0x3d) eq++;
    if (eq >= end - 1) throw new TarFormatError(`invalid PAX record at offset ${at}`, at);
    const key = cString(buf, sp + 1, eq - sp - 1);
    // a view is enough: every extended header gets a buffer of its own
    out.set(key, buf.subarray(eq + 1, end - 1));
    pos = end;
  }
  return out;
}
