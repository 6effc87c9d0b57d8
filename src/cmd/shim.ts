/**
 * `berth shim`: containerd's shim v2 binary protocol.
 *
 * ```
 * berth shim -namespace NS -id ID -address DAEMON_SOCK -publish-binary BIN [-debug] [-bundle DIR] start|delete
 * ```
 *
 * Flags are Go `flag` style, as containerd passes them: one or two dashes,
 * `-name value` or `-name=value`, and they stop at the first argument that
 * is not a flag. The daemon's ttrpc address for events comes from the
 * TTRPC_ADDRESS environment variable (else `<address>.ttrpc`).
 */
import type { ShimFlags } from "../runtime/shim/binary.ts";

const USAGE =
  "usage: berth shim -namespace NS -id ID -address SOCK [-publish-binary BIN] [-bundle DIR] [-debug] start|delete";

class UsageError extends Error {}

const STRING_FLAGS: Record<string, keyof ShimFlags> = {
  namespace: "namespace",
  id: "id",
  address: "address",
  "publish-binary": "publishBinary",
  bundle: "bundle",
  socket: "socket",
  linger: "linger",
};

/** Parses the shim's flags and its action; throws a usage error on bad input. */
export function parseShimArgs(args: string[]): { flags: ShimFlags; action: string } {
  const flags: ShimFlags = {
    namespace: "",
    id: "",
    address: "",
    publishBinary: "",
    bundle: "",
    debug: false,
    socket: "",
  };
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("-") || a === "-") break;
    const body = a.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (name === "debug" || name === "v") {
      if (name === "debug") flags.debug = eq < 0 || body.slice(eq + 1) !== "false";
      continue;
    }
    const key = STRING_FLAGS[name];
    if (!key) throw new UsageError(`flag provided but not defined: -${name}`);
    let value: string;
    if (eq >= 0) value = body.slice(eq + 1);
    else {
      const next = args[++i];
      if (next === undefined) throw new UsageError(`flag needs an argument: -${name}`);
      value = next;
    }
    (flags as unknown as Record<string, string>)[key] = value;
  }
  const action = args[i];
  if (!action) throw new UsageError("missing action: want start, delete or serve");
  if (!flags.namespace) throw new UsageError("shim namespace cannot be empty (-namespace)");
  if (!flags.id) throw new UsageError("shim id cannot be empty (-id)");
  return { flags, action };
}

/** Runs `berth shim …`; returns the exit code. */
export async function shimMain(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseShimArgs(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`berth shim: ${err.message}\n${USAGE}`);
    return 2;
  }
  const { flags, action } = parsed;
  switch (action) {
    case "start": {
      const { startShim } = await import("../runtime/shim/binary.ts");
      const address = await startShim(flags);
      await writeAll(new TextEncoder().encode(address));
      return 0;
    }
    case "delete": {
      const { deleteShim } = await import("../runtime/shim/binary.ts");
      await writeAll(await deleteShim(flags));
      return 0;
    }
    case "serve": {
      const { serveShim } = await import("../runtime/shim/server.ts");
      return await serveShim(flags);
    }
    default:
      console.error(`berth shim: unknown action "${action}": want start or delete\n${USAGE}`);
      return 2;
  }
}

async function writeAll(bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await Deno.stdout.write(bytes.subarray(off));
}
