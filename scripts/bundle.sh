#!/usr/bin/env bash
# Builds berth for installation: `bash scripts/bundle.sh [OUTDIR]` (default
# dist/berth) writes OUTDIR/main.js and the chunks it loads. Run it with
# `deno run -A OUTDIR/main.js ...`; it needs no source tree, node_modules or
# network.
#
# Code splitting, not one file: each mode loads only its own chunks. A CLI
# call then never loads the daemon's graph (grpc-js, node:http2, node:sqlite,
# node:zlib: Deno's node compatibility layer alone costs ~50 ms per process),
# and each shim holds only the shim's code. One file would hoist every
# `node:` import of every mode to its top, so every `berth` call and every
# shim would pay for all of them.
#
# The build is written beside OUTDIR and then swapped in, so OUTDIR is never a
# mix of two builds.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$REPO/dist/berth}
DENO=${DENO:-$(command -v deno)}
NEW=$OUT.new.$$
rm -rf "$NEW"
"$DENO" bundle --quiet --platform deno --code-splitting --outdir "$NEW" "$REPO/main.ts"
[[ -s $NEW/main.js ]] || {
  echo "bundle: $NEW/main.js was not written" >&2
  exit 1
}
rm -rf "$OUT.old.$$"
[[ -e $OUT ]] && mv "$OUT" "$OUT.old.$$"
mv "$NEW" "$OUT"
rm -rf "$OUT.old.$$"
