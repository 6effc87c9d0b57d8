#!/usr/bin/env bash
# Regenerates src/gen/ from proto/ with protoc (Debian's protobuf-compiler) and
# protoc-gen-es (npm, run by Deno). Generated files are committed; never edit them.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "gen: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
plugin=$(mktemp)
out=$(mktemp -d -p src .gen.XXXXXX)
trap 'rm -f "$plugin"; rm -rf "$out"' EXIT
printf '#!/bin/sh\nexec deno run -A --quiet npm:@bufbuild/protoc-gen-es@2.17.0 "$@"\n' >"$plugin"
chmod +x "$plugin"
# protoc's own include dir supplies google/protobuf/*.proto.
protoc -I proto -I /usr/include \
  --plugin=protoc-gen-es="$plugin" \
  --es_out="$out" --es_opt=target=ts,import_extension=ts \
  $(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
# Swap the new tree in at once: other processes may be importing src/gen.
rm -rf src/gen.old
[ -d src/gen ] && mv src/gen src/gen.old
mv "$out" src/gen
rm -rf src/gen.old
echo "gen: wrote $(find src/gen -name '*.ts' | wc -l) files to src/gen"
