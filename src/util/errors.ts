/** Formats an error for a person: the message, then each cause not already in it. */
export function formatError(e: unknown): string {
  let out = "berth: " + (e instanceof Error ? e.message : String(e));
  for (let c = e instanceof Error ? e.cause : undefined; c instanceof Error; c = c.cause) {
    if (!out.includes(c.message)) out += `\n  caused by: ${c.message}`;
  }
  return out;
}
