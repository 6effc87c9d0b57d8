/**
 * berth: one program, three modes. `berth daemon` serves the API, `berth shim`
 * is the per-container shim the daemon starts, anything else is a CLI verb.
 */
import { formatError } from "./src/util/errors.ts";

async function main(args: string[]): Promise<number> {
  switch (args[0]) {
    case "daemon": {
      const { daemonMain } = await import("./src/cmd/daemon.ts");
      return await daemonMain(args.slice(1));
    }
    case "shim": {
      const { shimMain } = await import("./src/cmd/shim.ts");
      return await shimMain(args.slice(1));
    }
    default: {
      const { cliMain } = await import("./src/cmd/cli/mod.ts");
      return await cliMain(args);
    }
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    console.error(formatError(e));
    Deno.exit(1);
  }
}
