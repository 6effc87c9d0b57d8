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
# esbuild gives CommonJS packages (grpc-js) a `require` made by node:module's
# createRequire, in a chunk that every mode imports, so every CLI call and
# every shim would load Deno's node compatibility layer (~30 ms, ~5 MB) for
# a `require` that only the daemon calls. Make it on first call instead.
lazy='var __require = ((r) => (id) => (r ??= globalThis.process.getBuiltinModule("node:module").createRequire(import.meta.url))(id))();'
for f in "$NEW"/*.js; do
  grep -q '^import { createRequire as __deno_internal_createRequire } from "node:module";$' "$f" || continue
  sed -i -e '/^import { createRequire as __deno_internal_createRequire } from "node:module";$/d' \
    -e "s|^var __require = __deno_internal_createRequire(import.meta.url);\$|$lazy|" "$f"
  if grep -q '__deno_internal_createRequire\|from "node:module"' "$f"; then
    echo "bundle: $f: esbuild's require helper changed shape; update scripts/bundle.sh" >&2
    exit 1
  fi
done
rm -rf "$OUT.old.$$"
[[ -e $OUT ]] && mv "$OUT" "$OUT.old.$$"
mv "$NEW" "$OUT"
rm -rf "$OUT.old.$$"
