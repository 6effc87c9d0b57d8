/**
 * sha256 for the CLI, on WebCrypto (built into Deno) rather than node:crypto,
 * and OCI chain ids (image-spec "ChainID") computed with it. The CLI needs
 * them only to name an image's top snapshot; loading node:crypto or the
 * daemon's unpacker for that would cost a `berth run` far more than hashing.
 */

/** Lowercase hex sha256 of `data` (a string is hashed as UTF-8). */
export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  let hex = "";
  for (const b of sum) hex += b.toString(16).padStart(2, "0");
  return hex;
}

/** The chain ids of layers with these diff ids, bottom first. */
export async function chainIds(diffIds: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out.at(-1);
    out.push(prev === undefined ? d : `sha256:${await sha256Hex(`${prev} ${d}`)}`);
  }
  return out;
}
