#!/usr/bin/env bash
# Quick start, command 1:  sudo bash scripts/setup.sh
#
# Installs what berth needs (Deno from npm, the Debian packages, the npm deps),
# builds the bundle (scripts/bundle.sh) and installs it as
# /usr/local/lib/berth/BUILD/main.js with a `berth` command in /usr/local/bin, then starts `berth daemon` with its
# built-in defaults:
#   root /var/lib/berth, state /run/berth, socket /run/berth/berth.sock
# under systemd (packaging/berth.service) when systemd runs the machine, or else
# in the background (log /var/log/berth.log, pid file /run/berth/daemon.pid).
# It waits until the socket answers. Running it again is safe: a daemon that is
# already running is left alone (the new build is installed for its next start).
#
# Environment:
#   BERTH_ENTRY=bundle|source  run the bundle (default) or the source tree's main.ts
#   BERTH_V8_FLAGS             V8 flags of the daemon (default: see DEFAULT_V8_FLAGS)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=/var/lib/berth
STATE=/run/berth
SOCK=$STATE/berth.sock
LOG=/var/log/berth.log
PIDFILE=$STATE/daemon.pid
LIBDIR=/usr/local/lib/berth
BIN=/usr/local/bin/berth
UNIT=/etc/systemd/system/berth.service
# Measured with `deno task bench` (README, "Memory"): a 1 MB young generation and
# an old-space limit (any limit up to 256 MB acts the same) keep V8 from growing
# the heap under load: about half the memory after a burst of calls, and no more
# CPU per call. 256 MB is far above what the daemon's heap needs.
DEFAULT_V8_FLAGS="--max-old-space-size=256,--max-semi-space-size=1"
ENTRY_MODE=${BERTH_ENTRY:-bundle}

say() { printf 'setup: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

[[ $EUID -eq 0 ]] || die "must run as root: sudo bash scripts/setup.sh"
[[ $ENTRY_MODE == bundle || $ENTRY_MODE == source ]] ||
  die "BERTH_ENTRY must be bundle or source, not '$ENTRY_MODE'"

# shellcheck source=install-deps.sh
source "$REPO/scripts/install-deps.sh"

# ---- 1. dependencies -------------------------------------------------------
berth_install_deno || die "cannot install Deno $BERTH_DENO_VERSION"
DENO=$(command -v deno)
berth_install_debian_packages || die "cannot install the Debian packages"
berth_install_npm_deps "$REPO" || die "cannot install the npm dependencies"

# ---- 2. the program --------------------------------------------------------
if [[ $ENTRY_MODE == bundle ]]; then
  # Each build goes into a directory of its own, named by its content: a daemon
  # or shim still running an older build loads that build's chunks lazily, so
  # a build is removed only when no process runs it any more.
  say "bundling $REPO/main.ts"
  export DENO
  berth_quiet bash "$REPO/scripts/bundle.sh" "$REPO/dist/berth" ||
    die "the bundle failed; BERTH_ENTRY=source runs the source tree instead"
  build=$(cd "$REPO/dist/berth" && find . -type f -print0 | sort -z | xargs -0 sha256sum |
    sha256sum | cut -c1-12)
  mkdir -p "$LIBDIR"
  if [[ ! -s $LIBDIR/$build/main.js ]]; then
    rm -rf "$LIBDIR/$build.tmp"
    cp -r "$REPO/dist/berth" "$LIBDIR/$build.tmp"
    chmod -R a+rX "$LIBDIR/$build.tmp"
    mv "$LIBDIR/$build.tmp" "$LIBDIR/$build"
  fi
  ENTRY=$LIBDIR/$build/main.js
  for old in "$LIBDIR"/*; do
    [[ $old == "$LIBDIR/$build" ]] && continue
    if ! grep -qsF -- "$old/" /proc/[0-9]*/cmdline; then rm -rf "$old"; fi
  done
else
  ENTRY=$REPO/main.ts
fi

# The `berth` command. The daemon gets the V8 memory flags; CLI calls start
# with Deno's defaults (they live for milliseconds).
cat >"$BIN.tmp" <<EOF
#!/bin/sh
# berth, installed by $REPO/scripts/setup.sh (entry: $ENTRY_MODE).
# BERTH_V8_FLAGS overrides the daemon's V8 flags; empty means Deno's defaults.
export DENO_NO_UPDATE_CHECK=1
# Load a dynamically imported chunk only when it is imported (deno.json's
# "unstable" setting, which a bundle has no deno.json to carry): otherwise
# every call parses the daemon's and the shim's chunks too. Shims inherit it.
export DENO_UNSTABLE_LAZY_DYNAMIC_IMPORTS=1
if [ "\${1:-}" = daemon ]; then
  flags=\${BERTH_V8_FLAGS-$DEFAULT_V8_FLAGS}
  if [ -n "\$flags" ]; then
    exec "$DENO" run -A --v8-flags="\$flags" "$ENTRY" "\$@"
  fi
fi
exec "$DENO" run -A "$ENTRY" "\$@"
EOF
chmod 0755 "$BIN.tmp"
mv -f "$BIN.tmp" "$BIN"
say "installed $BIN ($ENTRY_MODE: $ENTRY)"

# ---- 3. the daemon ---------------------------------------------------------
answers() { ctr -a "$SOCK" version >/dev/null 2>&1; }

wait_for_socket() {
  local alive=$1
  for _ in $(seq 1 300); do
    answers && return 0
    $alive || return 1
    sleep 0.1
  done
  return 1
}

if [[ -d /run/systemd/system ]]; then
  # systemd runs this machine: berth.service owns the daemon.
  install -D -m 0644 "$REPO/packaging/berth.service" "$UNIT"
  systemctl daemon-reload
  if systemctl is-active --quiet berth.service; then
    say "berth.service is already running; 'systemctl restart berth' runs the new build"
  else
    systemctl enable --now berth.service
  fi
  systemd_alive() { ! systemctl is-failed --quiet berth.service; }
  wait_for_socket systemd_alive || {
    journalctl -u berth.service -n 30 --no-pager >&2 || true
    die "berth.service did not serve $SOCK"
  }
  say "berth daemon serving on $SOCK (systemd: berth.service, journalctl -u berth)"
  exit 0
fi

pid=""
if [[ -s $PIDFILE ]]; then
  pid=$(<"$PIDFILE")
  # Only trust the pid file if that process is still a berth daemon.
  if ! { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q ' daemon'; then
    pid=""
  fi
fi
if [[ -n $pid ]] || answers; then
  say "a berth daemon is already serving on $SOCK${pid:+ (pid $pid)}; stop it to run the new build"
  exit 0
fi

mkdir -p "$STATE"
chmod 0711 "$STATE"
say "starting berth daemon (log $LOG)"
# setsid: its own session, so it outlives this shell and its terminal.
setsid "$BIN" daemon </dev/null >>"$LOG" 2>&1 &
pid=$!
echo "$pid" >"$PIDFILE"
daemon_alive() { kill -0 "$pid" 2>/dev/null; }
if ! wait_for_socket daemon_alive; then
  tail -n 30 "$LOG" >&2 || true
  rm -f "$PIDFILE"
  die "the daemon did not serve $SOCK"
fi
say "berth daemon serving on $SOCK (pid $pid, root $ROOT, log $LOG)"
