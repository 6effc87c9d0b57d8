/**
 * Linux capabilities by name and number, and the sets containerd gives a
 * container. Numbers are the kernel's (include/uapi/linux/capability.h).
 *
 * @module
 */

/** Capability names indexed by their kernel number, up to CAP_CHECKPOINT_RESTORE (40, Linux 5.9). */
export const CAPABILITY_NAMES: readonly string[] = [
  "CAP_CHOWN", // 0
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL", // 5
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE", // 10
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER", // 15
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT", // 20
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME", // 25
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL", // 30
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM", // 35
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE", // 40
];

/**
 * containerd's default capability set for a container (the same as Docker's),
 * in containerd's order. containerd puts it in the bounding, effective and
 * permitted sets and leaves inheritable and ambient empty.
 */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

/** The number of a capability name (`CAP_` prefix optional, any case), or undefined. */
export function capabilityNumber(name: string): number | undefined {
  let n = name.toUpperCase();
  if (!n.startsWith("CAP_")) n = "CAP_" + n;
  const i = CAPABILITY_NAMES.indexOf(n);
  return i < 0 ? undefined : i;
}

/**
 * Normalizes a capability name to `CAP_X` form, throwing for unknown names
 * so a typo in `--cap-add` is not silently ignored.
 */
export function normalizeCapability(name: string): string {
  const i = capabilityNumber(name);
  if (i === undefined) throw new Error(`Unknown capability: ${JSON.stringify(name)}`);
  return CAPABILITY_NAMES[i]!;
}

/**
 * Names of the bits set in a capability bitmap (the hex of /proc/PID/status
 * `CapEff:` lines). Bits the table does not know are left out, as containerd
 * does: a runtime rejects names it cannot map.
 */
export function capabilitiesFromBitmap(hex: string): string[] {
  const v = BigInt("0x" + hex.trim());
  const out: string[] = [];
  for (let i = 0; i < 64; i++) {
    if ((v >> BigInt(i)) & 1n) {
      const name = CAPABILITY_NAMES[i];
      if (name) out.push(name);
    }
  }
  return out;
}

/** The bitmap (as lowercase hex, 16 digits like /proc) of a set of names. */
export function capabilitiesToBitmap(names: readonly string[]): string {
  let v = 0n;
  for (const n of names) {
    const i = capabilityNumber(n);
    if (i === undefined) throw new Error(`Unknown capability: ${JSON.stringify(n)}`);
    v |= 1n << BigInt(i);
  }
  return v.toString(16).padStart(16, "0");
}

/**
 * Parses the `Cap*:` lines of a /proc/PID/status text into names per set.
 * Keys are `CapInh`, `CapPrm`, `CapEff`, `CapBnd`, `CapAmb`.
 */
export function parseStatusCapabilities(status: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const line of status.split("\n")) {
    const m = /^(Cap(?:Inh|Prm|Eff|Bnd|Amb)):\s*([0-9a-fA-F]+)\s*$/.exec(line);
    if (m) out[m[1]!] = capabilitiesFromBitmap(m[2]!);
  }
  return out;
}

/**
 * The effective capabilities of this process, read from /proc/self/status.
 * This is what containerd's `WithPrivileged` gives a privileged container
 * (`WithAllCurrentCapabilities`): a process can only grant what it holds, so
 * a daemon without CAP_SYS_RESOURCE (as on this project's VMs) gives a
 * privileged container everything but that.
 */
export function currentCapabilities(): string[] {
  const status = Deno.readTextFileSync("/proc/self/status");
  return parseStatusCapabilities(status)["CapEff"] ?? [];
}

/**
 * All capabilities the running kernel knows: numbers 0 to
 * /proc/sys/kernel/cap_last_cap, limited to the names in {@link CAPABILITY_NAMES}
 * (containerd's `WithAllKnownCapabilities`).
 */
export function knownCapabilities(capLastCap?: number): string[] {
  let last = capLastCap;
  if (last === undefined) {
    try {
      last = Number(Deno.readTextFileSync("/proc/sys/kernel/cap_last_cap").trim());
    } catch {
      last = CAPABILITY_NAMES.length - 1;
    }
  }
  return CAPABILITY_NAMES.slice(0, Math.min(last, CAPABILITY_NAMES.length - 1) + 1);
}
