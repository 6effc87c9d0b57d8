/**
 * Content digests (`algorithm:hex`, OCI image spec "Digests"). The store
 * computes sha256 (the canonical algorithm); sha384 and sha512 digests are
 * accepted where a client names one, so that a mismatch is reported as such
 * rather than as a malformed request.
 */
import { invalidArgument } from "../core/errdefs.ts";

/** The algorithm the store hashes with. */
export const CANONICAL = "sha256";

const HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** What is wrong with `s` as a digest, or undefined when it is valid. */
export function digestProblem(s: string): string | undefined {
  if (s === "") return "digest must not be empty";
  const i = s.indexOf(":");
  if (i <= 0) return "want algorithm:hex";
  const alg = s.slice(0, i);
  const hex = s.slice(i + 1);
  const len = HEX_LENGTH[alg];
  if (len === undefined) return `unsupported digest algorithm "${alg}"`;
  if (hex.length !== len) return `${alg} wants ${len} hex characters, got ${hex.length}`;
  if (!/^[a-f0-9]+$/.test(hex)) return "hex part must be lowercase hexadecimal";
  return undefined;
}

/** Returns `s` when it is a valid digest; throws invalid argument otherwise. */
export function validateDigest(s: string): string {
  const problem = digestProblem(s);
  if (problem) throw invalidArgument(`digest ${JSON.stringify(s)}: ${problem}`);
  return s;
}

/** Splits a valid digest into its algorithm and hex parts. */
export function splitDigest(s: string): { algorithm: string; hex: string } {
  validateDigest(s);
  const i = s.indexOf(":");
  return { algorithm: s.slice(0, i), hex: s.slice(i + 1) };
}
