/**
 * Status codes on the ttrpc wire (the gRPC codes, carried in a google.rpc.Status)
 * and the bridge to berth's error kinds, whose table is src/api/errors.ts.
 */
import { BerthError } from "../core/errdefs.ts";
import { Code, fromGrpcError, toGrpcStatus } from "../api/errors.ts";

export { Code };

/** A status as it goes on the wire. */
export interface WireStatus {
  code: number;
  message: string;
}

/** Maps a thrown value to the status sent back to the caller. */
export function statusOf(err: unknown): WireStatus {
  const { code, details } = toGrpcStatus(err);
  return { code, message: details };
}

/** Turns a non-OK status received by a client into a BerthError of its kind. */
export function errorOf(status: WireStatus, method: string): Error {
  const err = fromGrpcError({ code: status.code, details: status.message || `${method} failed` });
  if (err instanceof BerthError) return err;
  return new BerthError("unknown", status.message || `${method} failed`, { cause: err });
}
