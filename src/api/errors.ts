/**
 * The one place where berth's error kinds become gRPC status codes, and back
 * (for berth's own clients). containerd's errdefs mapping is the reference.
 */
/** gRPC status codes (google.rpc.Code), as numbers on the wire. */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
type Code = (typeof Code)[keyof typeof Code];
import { BerthError, type ErrorKind, kindOf } from "../core/errdefs.ts";

const TO_CODE: Record<ErrorKind, Code> = {
  unknown: Code.UNKNOWN,
  invalid_argument: Code.INVALID_ARGUMENT,
  not_found: Code.NOT_FOUND,
  already_exists: Code.ALREADY_EXISTS,
  failed_precondition: Code.FAILED_PRECONDITION,
  unavailable: Code.UNAVAILABLE,
  not_implemented: Code.UNIMPLEMENTED,
  canceled: Code.CANCELLED,
  deadline_exceeded: Code.DEADLINE_EXCEEDED,
  resource_exhausted: Code.RESOURCE_EXHAUSTED,
  aborted: Code.ABORTED,
  permission_denied: Code.PERMISSION_DENIED,
  unauthenticated: Code.UNAUTHENTICATED,
  out_of_range: Code.OUT_OF_RANGE,
  data_loss: Code.DATA_LOSS,
};

const FROM_CODE = new Map<number, ErrorKind>(
  Object.entries(TO_CODE).map(([k, c]) => [c, k as ErrorKind]),
);

/** Maps any thrown value to a gRPC status code and message. */
export function toGrpcStatus(err: unknown): { code: Code; details: string } {
  const kind = kindOf(err);
  const message = err instanceof Error ? err.message : String(err);
  if (kind === "unknown" && err && typeof err === "object" && "code" in err) {
    // Node system errors: give the common ones their natural class.
    const sys = (err as { code?: unknown }).code;
    if (sys === "ENOSPC") return { code: Code.RESOURCE_EXHAUSTED, details: message };
    if (sys === "ENOENT") return { code: Code.NOT_FOUND, details: message };
  }
  return { code: TO_CODE[kind], details: message };
}

/** Turns a gRPC error received by a client back into a BerthError. */
export function fromGrpcError(err: unknown): Error {
  if (err && typeof err === "object" && "code" in err && "details" in err) {
    const e = err as { code: number; details: string };
    return new BerthError(FROM_CODE.get(e.code) ?? "unknown", e.details || "unknown error", {
      cause: err,
    });
  }
  return err instanceof Error ? err : new Error(String(err));
}
