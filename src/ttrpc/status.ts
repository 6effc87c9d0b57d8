/**
 * Status codes on the ttrpc wire (the gRPC codes, carried in a google.rpc.Status)
 * and the bridge to berth's error kinds.
 *
 * The kind <-> code table lives in src/api/errors.ts alone (it imports
 * nothing heavy); it is loaded only when an error actually crosses the wire,
 * which most calls of a short-lived shim or CLI never see.
 */
import { BerthError } from "../core/errdefs.ts";

/** The gRPC status codes ttrpc itself produces. */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** A status as it goes on the wire. */
export interface WireStatus {
  code: number;
  message: string;
}

let errorsModule: Promise<typeof import("../api/errors.ts")> | undefined;
function errors() {
  return errorsModule ??= import("../api/errors.ts");
}

/** Maps a thrown value to the status sent back to the caller. */
export async function statusOf(err: unknown): Promise<WireStatus> {
  const { toGrpcStatus } = await errors();
  const { code, details } = toGrpcStatus(err);
  return { code, message: details };
}

/** Turns a non-OK status received by a client into a BerthError of its kind. */
export async function errorOf(status: WireStatus, method: string): Promise<Error> {
  const { fromGrpcError } = await errors();
  const err = fromGrpcError({ code: status.code, details: status.message || `${method} failed` });
  if (err instanceof BerthError) return err;
  return new BerthError("unknown", status.message || `${method} failed`, { cause: err });
}
