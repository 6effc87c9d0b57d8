/**
 * HTTP/2 framing (RFC 9113 section 4 and 6): the frame header, the frame
 * types, flags, settings and error codes the server uses, and the encoders
 * for the frames it sends. Pure byte work, no I/O.
 */

/** The client connection preface (RFC 9113 3.4). */
export const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export const FRAME_HEADER_LENGTH = 9;

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** Error codes (RFC 9113 7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

/** The protocol's defaults, before any SETTINGS. */
export const DEFAULT_WINDOW = 65_535;
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
export const MAX_WINDOW = 2 ** 31 - 1;

/** A violation that ends the connection (GOAWAY with `code`). */
export class ConnectionError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/** A violation that ends one stream (RST_STREAM with `code`). */
export class StreamError extends Error {
  readonly code: number;
  readonly streamId: number;
  constructor(streamId: number, code: number, message: string) {
    super(message);
    this.streamId = streamId;
    this.code = code;
  }
}

/** A frame header as read off the wire. */
export interface FrameHeader {
  length: number;
  type: number;
  flags: number;
  streamId: number;
}

export function readFrameHeader(b: Uint8Array, at: number): FrameHeader {
  return {
    length: (b[at]! << 16) | (b[at + 1]! << 8) | b[at + 2]!,
    type: b[at + 3]!,
    flags: b[at + 4]!,
    // The reserved top bit is ignored on receipt.
    streamId: ((b[at + 5]! & 0x7f) << 24 | (b[at + 6]! << 16) | (b[at + 7]! << 8) | b[at + 8]!) >>>
      0,
  };
}

function writeHeader(
  out: Uint8Array,
  length: number,
  type: number,
  flags: number,
  streamId: number,
): void {
  out[0] = length >>> 16;
  out[1] = length >>> 8;
  out[2] = length;
  out[3] = type;
  out[4] = flags;
  out[5] = (streamId >>> 24) & 0x7f;
  out[6] = streamId >>> 16;
  out[7] = streamId >>> 8;
  out[8] = streamId;
}

/** A whole frame: header plus `payload`. */
export function frame(
  type: number,
  flags: number,
  streamId: number,
  payload?: Uint8Array,
): Uint8Array {
  const n = payload?.length ?? 0;
  const out = new Uint8Array(FRAME_HEADER_LENGTH + n);
  writeHeader(out, n, type, flags, streamId);
  if (payload) out.set(payload, FRAME_HEADER_LENGTH);
  return out;
}

/** A frame whose payload is one or more 32-bit big-endian words. */
export function wordsFrame(type: number, flags: number, streamId: number, ...words: number[]) {
  const out = new Uint8Array(FRAME_HEADER_LENGTH + 4 * words.length);
  writeHeader(out, 4 * words.length, type, flags, streamId);
  const v = new DataView(out.buffer);
  words.forEach((w, i) => v.setUint32(FRAME_HEADER_LENGTH + 4 * i, w >>> 0));
  return out;
}

/** SETTINGS with `values` (id, value pairs). */
export function settingsFrame(values: Array<[number, number]>): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_LENGTH + 6 * values.length);
  writeHeader(out, 6 * values.length, FrameType.SETTINGS, 0, 0);
  const v = new DataView(out.buffer);
  values.forEach(([id, value], i) => {
    v.setUint16(FRAME_HEADER_LENGTH + 6 * i, id);
    v.setUint32(FRAME_HEADER_LENGTH + 6 * i + 2, value);
  });
  return out;
}

/** GOAWAY naming the last stream we processed, with a reason for the peer's logs. */
export function goawayFrame(lastStreamId: number, code: number, debug = ""): Uint8Array {
  const text = new TextEncoder().encode(debug);
  const out = new Uint8Array(FRAME_HEADER_LENGTH + 8 + text.length);
  writeHeader(out, 8 + text.length, FrameType.GOAWAY, 0, 0);
  const v = new DataView(out.buffer);
  v.setUint32(FRAME_HEADER_LENGTH, lastStreamId & MAX_WINDOW);
  v.setUint32(FRAME_HEADER_LENGTH + 4, code);
  out.set(text, FRAME_HEADER_LENGTH + 8);
  return out;
}

/**
 * A header block as HEADERS plus CONTINUATION frames, none larger than
 * `maxFrame`; END_STREAM goes on the HEADERS frame (RFC 9113 6.2).
 */
export function headerFrames(
  streamId: number,
  block: Uint8Array,
  endStream: boolean,
  maxFrame: number,
): Uint8Array[] {
  const out: Uint8Array[] = [];
  let off = 0;
  do {
    const n = Math.min(maxFrame, block.length - off);
    const last = off + n === block.length;
    const type = off === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
    const flags = (last ? Flag.END_HEADERS : 0) |
      (off === 0 && endStream ? Flag.END_STREAM : 0);
    out.push(frame(type, flags, streamId, block.subarray(off, off + n)));
    off += n;
  } while (off < block.length);
  return out;
}
