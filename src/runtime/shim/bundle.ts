/**
 * What a shim keeps in a container's bundle, and the helpers both the shim
 * and `shim delete` use on it (kept apart from the service so `start` and
 * `delete` load little).
 *
 * Files: `address` (the shim's ttrpc address, written by `start`),
 * `shim.pid`, `options.json` (the runtime options given to Create),
 * `init.pid` (runc's pid file of the init process).
 */
import { Runc } from "../runc.ts";
import type { Logger } from "../../util/log.ts";
import { runcRoot } from "./paths.ts";

/** What `options.json` in a bundle holds: the runtime options, for `shim delete`. */
export interface BundleOptions {
  binaryName?: string;
  /** Base of the runc root; the namespace is appended, as containerd does. */
  root?: string;
  systemdCgroup?: boolean;
  noPivotRoot?: boolean;
  noNewKeyring?: boolean;
}

/** Reads `<bundle>/options.json`; empty options when absent. */
export async function readBundleOptions(bundle: string): Promise<BundleOptions> {
  try {
    return JSON.parse(await Deno.readTextFile(`${bundle}/options.json`)) as BundleOptions;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return {};
    throw err;
  }
}

/** The runc of a container with these options. */
export function runcFor(
  opts: BundleOptions,
  stateDir: string,
  namespace: string,
  log?: Logger,
): Runc {
  return new Runc({
    binary: opts.binaryName || "runc",
    root: opts.root ? `${opts.root}/${namespace}` : runcRoot(stateDir, namespace),
    systemdCgroup: opts.systemdCgroup ?? false,
    ...(log ? { log } : {}),
  });
}

/** Unmounts everything stacked on `<bundle>/rootfs`. */
export async function unmountRootfs(bundle: string): Promise<void> {
  const { unmountAll } = await import("../../mount/mount.ts");
  await unmountAll(`${bundle}/rootfs`);
}
