/**
 * One error vocabulary for all of berth. Code throws a {@link BerthError} of a
 * kind; the API edge maps the kind to a gRPC status once (src/api/errors.ts).
 * Callers test the kind with {@link isKind}, never the message text.
 *
 * Messages follow containerd: the object first, the class last:
 * `namespace "x": not found`.
 */

export type ErrorKind =
  | "unknown"
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "unavailable"
  | "not_implemented"
  | "canceled"
  | "deadline_exceeded"
  | "resource_exhausted"
  | "aborted"
  | "permission_denied"
  | "unauthenticated"
  | "out_of_range"
  | "data_loss";

const KIND_TEXT: Record<ErrorKind, string> = {
  unknown: "unknown",
  invalid_argument: "invalid argument",
  not_found: "not found",
  already_exists: "already exists",
  failed_precondition: "failed precondition",
  unavailable: "unavailable",
  not_implemented: "not implemented",
  canceled: "context canceled",
  deadline_exceeded: "context deadline exceeded",
  resource_exhausted: "resource exhausted",
  aborted: "aborted",
  permission_denied: "permission denied",
  unauthenticated: "unauthenticated",
  out_of_range: "out of range",
  data_loss: "data loss",
};

/** An error of a known kind. `message` already carries the context. */
export class BerthError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BerthError";
    this.kind = kind;
  }
}

function make(kind: ErrorKind) {
  return (context: string, options?: ErrorOptions): BerthError =>
    new BerthError(kind, context ? `${context}: ${KIND_TEXT[kind]}` : KIND_TEXT[kind], options);
}

/** `notFound('namespace "x"')` gives `namespace "x": not found`. */
export const notFound = make("not_found");
export const alreadyExists = make("already_exists");
export const invalidArgument = make("invalid_argument");
export const failedPrecondition = make("failed_precondition");
export const unavailable = make("unavailable");
export const notImplemented = make("not_implemented");
export const aborted = make("aborted");
export const outOfRange = make("out_of_range");
export const resourceExhausted = make("resource_exhausted");
export const unauthenticated = make("unauthenticated");
export const permissionDenied = make("permission_denied");

/** True when `err` (or an error in its cause chain) is a BerthError of `kind`. */
export function isKind(err: unknown, kind: ErrorKind): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof BerthError) return e.kind === kind;
  }
  return false;
}

/** The kind of `err`, "unknown" for foreign errors. */
export function kindOf(err: unknown): ErrorKind {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof BerthError) return e.kind;
  }
  return "unknown";
}

/** Adds context in front of an error's message, keeping its kind. */
export function wrap(err: unknown, context: string): Error {
  if (err instanceof BerthError) {
    return new BerthError(err.kind, `${context}: ${err.message}`, { cause: err });
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new Error(`${context}: ${msg}`, { cause: err });
}
