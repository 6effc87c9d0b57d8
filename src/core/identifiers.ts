/**
 * Identifiers (namespaces, container ids, lease ids, ...) follow containerd's
 * rule: alphanumerics separated by single `.`, `_` or `-`, at most 76 characters.
 */
import { invalidArgument } from "./errdefs.ts";

const IDENTIFIER = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;
const MAX_LENGTH = 76;

/** Returns `s` when it is a valid identifier; throws invalid argument otherwise. */
export function validateIdentifier(kind: string, s: string): string {
  if (s === "") throw invalidArgument(`${kind} identifier must not be empty`);
  if (s.length > MAX_LENGTH) {
    throw invalidArgument(`${kind} identifier "${s}" is longer than ${MAX_LENGTH} characters`);
  }
  if (!IDENTIFIER.test(s)) {
    throw invalidArgument(`${kind} identifier "${s}" must match ${IDENTIFIER.source}`);
  }
  return s;
}
