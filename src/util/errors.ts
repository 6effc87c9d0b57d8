/** Formats an error for a person: the message, then each cause not already in it. */
export function formatError(e: unknown): string {
  let out = "berth: " + (e instanceof Error ? e.message : String(e));
  for (let c = e instanceof Error ? e.cause : undefined; c instanceof Error; c = c.cause) {
    // gRPC errors repeat the message behind a "<code> <NAME>: " prefix.
    const msg = c.message.replace(/^\d+ [A-Z_]+: /, "");
    if (!out.includes(msg)) out += `\n  caused by: ${msg}`;
  }
  return out;
}
