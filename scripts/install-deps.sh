# shellcheck shell=bash
# Installs what berth needs on a Debian 12 machine that has Node.js and npm:
# Deno (from npm), the Debian packages the daemon and the tests use, and the
# project's npm dependencies. Sourced by .ci/run and scripts/setup.sh so the
# logic exists once; each step does nothing when its part is already there.
#
#   source scripts/install-deps.sh
#   berth_install_all /path/to/repo
#
# Run as root. Quiet unless something fails (then the step's output is shown).

BERTH_DENO_VERSION=${BERTH_DENO_VERSION:-2.9.6}

# The Debian packages the tests and the runtime use. containerd is here for its
# `ctr` client (the reference client of the tests) and for the benchmark's
# reference daemon; the tests never start it as a daemon.
BERTH_DEBIAN_PACKAGES=(
  containerd runc crun docker-registry skopeo umoci busybox-static
  containernetworking-plugins jq zstd curl protobuf-compiler apache2-utils
)

berth_log() { printf '%s\n' "$*" >&2; }

# Runs a command with its output captured; prints the output only on failure.
berth_quiet() {
  local out rc=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || rc=$?
  if ((rc != 0)); then
    berth_log "command failed ($rc): $*"
    tail -n 40 "$out" >&2
  fi
  rm -f "$out"
  return "$rc"
}

# Deno from npm (JSR and dl.deno.land are not reachable here; npm is).
berth_install_deno() {
  local have=""
  if command -v deno >/dev/null 2>&1; then
    have=$(deno --version 2>/dev/null | awk 'NR == 1 { print $2 }')
  fi
  if [[ $have == "$BERTH_DENO_VERSION" ]]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || {
    berth_log "install-deps: npm is needed to install Deno $BERTH_DENO_VERSION"
    return 1
  }
  berth_log "install-deps: installing Deno $BERTH_DENO_VERSION from npm${have:+ (found $have)}"
  berth_quiet npm install -g --no-fund --no-audit "deno@$BERTH_DENO_VERSION" || return 1
  # npm's global bin first: it may be missing from PATH, or an older deno may
  # come earlier on it.
  PATH="$(npm prefix -g)/bin:$PATH"
  export PATH
  hash -r
  have=$(deno --version 2>/dev/null | awk 'NR == 1 { print $2 }')
  if [[ $have != "$BERTH_DENO_VERSION" ]]; then
    berth_log "install-deps: deno on PATH is '${have:-none}' after installing $BERTH_DENO_VERSION"
    return 1
  fi
}

# Prints the packages of BERTH_DEBIAN_PACKAGES that are not installed.
berth_missing_packages() {
  local p
  for p in "${BERTH_DEBIAN_PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) != installed ]]; then
      printf '%s\n' "$p"
    fi
  done
}

# apt-get update + install, only when something is missing. Package scripts
# must not start services (docker-registry's would take port 5000, containerd's
# would start a daemon), so a policy-rc.d refuses every start while we install.
berth_install_debian_packages() {
  local missing
  mapfile -t missing < <(berth_missing_packages)
  ((${#missing[@]} == 0)) && return 0
  berth_log "install-deps: installing Debian packages: ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# written by berth install-deps.sh while installing packages\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  berth_quiet apt-get update -qq || rc=$?
  if ((rc == 0)); then
    berth_quiet apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${missing[@]}" || rc=$?
  fi
  ((made_policy)) && rm -f "$policy"
  ((rc == 0)) || return "$rc"
  mapfile -t missing < <(berth_missing_packages)
  if ((${#missing[@]} > 0)); then
    berth_log "install-deps: still missing after apt-get install: ${missing[*]}"
    return 1
  fi
}

# npm packages pinned in deno.json, into the repo's node_modules, plus the type
# check cache of the entry point and tests (so the first test run is not slow).
berth_install_npm_deps() {
  local repo=$1
  (cd "$repo" && berth_quiet deno install) || return 1
}

# Everything, in order. $1 is the repo.
berth_install_all() {
  local repo=$1
  berth_install_deno || return 1
  berth_install_debian_packages || return 1
  berth_install_npm_deps "$repo" || return 1
}
