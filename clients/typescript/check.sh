#!/usr/bin/env bash
# Checks that src/schema.d.ts is what the server's own OpenAPI document (`cifix openapi`)
# generates, then type-checks the client and usage.ts with tsc --strict.
#   ./check.sh            compare and type-check (CI)
#   ./check.sh --update   rewrite src/schema.d.ts from the document, then type-check
# The binary is $CIFIX_BIN, default target/debug/cifix of this repository. Needs `npm ci` first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${CIFIX_BIN:-$root/target/debug/cifix}"
generator="$here/node_modules/.bin/openapi-typescript"
[ -x "$bin" ] || { echo "check.sh: no cifix binary at $bin (cargo build, or set CIFIX_BIN)" >&2; exit 1; }
[ -x "$generator" ] || { echo "check.sh: openapi-typescript is not installed (run npm ci in clients/typescript)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$bin" openapi >"$tmp/openapi.json"
"$generator" "$tmp/openapi.json" --output "$tmp/schema.d.ts" >"$tmp/generate.log" 2>&1 || { cat "$tmp/generate.log" >&2; exit 1; }

if [ "${1:-}" = "--update" ]; then
  cp "$tmp/schema.d.ts" "$here/src/schema.d.ts"
  echo "check.sh: src/schema.d.ts regenerated"
elif ! diff -u "$here/src/schema.d.ts" "$tmp/schema.d.ts" >"$tmp/schema.diff"; then
  head -n 60 "$tmp/schema.diff" >&2
  echo "check.sh: clients/typescript/src/schema.d.ts differs from what \`cifix openapi\` generates: run clients/typescript/check.sh --update and commit it" >&2
  exit 1
fi
# Incremental, with its state beside CI's other caches (gitignored), since npm ci empties node_modules.
"$here/node_modules/.bin/tsc" -p "$here/tsconfig.json" --incremental --tsBuildInfoFile "$root/.cache/clients/tsc/check.tsbuildinfo"
echo "check.sh: schema up to date, tsc --strict passed"
