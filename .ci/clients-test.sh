#!/usr/bin/env bash
# The API's clients against live `cifix serve` instances (SQLite, temp dirs): the TypeScript
# client (generated types up to date, tsc --strict, a run against the server), the Python
# package (installed into a throwaway venv, mypy --strict, its tests), the Streamlit assessment
# example (AppTest) and clients/round-trip.sh. Builds nothing: it uses target/debug/cifix as
# `cargo test` leaves it, or $CIFIX_BIN. Everything temporary is under one mktemp dir; npm's
# cache, a wheelhouse of the Python packages and mypy's cache live in .cache/clients (gitignored),
# so a second run downloads no package and rechecks only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BIN="${CIFIX_BIN:-$ROOT/target/debug/cifix}"
CACHE="$ROOT/.cache/clients"

die() { echo "clients-test: $*" >&2; exit 1; }
step() { echo; echo "--- $* --- (${SECONDS}s)"; }
for tool in node npm python3 curl jq openssl sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is not installed (it is needed by the client tests)"
done
[ -x "$BIN" ] || die "no cifix binary at $BIN: run cargo test (or cargo build) first, or set CIFIX_BIN"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || die "Node 20 or newer is needed, found $(node --version)"

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  local status=$? pid log
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  if [ "$status" != 0 ]; then
    for log in "$TMP"/*/server.log; do [ -f "$log" ] && { echo "--- $log (last lines)"; tail -n 20 "$log"; }; done >&2
    echo "clients-test: FAILED" >&2
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
untracked_before="$(git status --porcelain --untracked-files=all)"

# The first free port of 18100-18199: a range of its own, so runs beside other servers don't collide.
free_port() {
  python3 -c 'import socket
for port in range(18100, 18200):
    try:
        socket.create_server(("127.0.0.1", port)).close()
    except OSError:
        continue
    print(port)
    break
else:
    raise SystemExit("no free port in 18100-18199")'
}

# start_server NAME [VAR=VALUE...]: a server with its own data dir, the README's admin and
# the demo catalog; sets NAME_URL.
ADMIN_EMAIL=admin@example.com ADMIN_PASSWORD='a long unique passphrase'
export ADMIN_EMAIL ADMIN_PASSWORD
start_server() {
  local name=$1 dir="$TMP/$1" port url
  shift
  mkdir "$dir"
  port="$(free_port)"
  url="http://127.0.0.1:$port"
  # Fast hashes, and room for the students every test registers from this one address.
  local env=(CIFIX_DATA_DIR="$dir" CIFIX_BIND="127.0.0.1:$port" CIFIX_BCRYPT_COST=4 RUST_LOG=warn
    CIFIX_JWT_SECRET="clients-test-secret-0123456789abcdefghij" CIFIX_AUTH_RATE_LIMIT_PER_MINUTE=200 "$@")
  echo "$ADMIN_PASSWORD" | env "${env[@]}" "$BIN" create-user --email "$ADMIN_EMAIL" --role admin >/dev/null
  env "${env[@]}" "$BIN" seed-demo >/dev/null
  env "${env[@]}" "$BIN" serve >"$dir/server.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -fsS "$url/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "$url/health/ready" >/dev/null || { cat "$dir/server.log" >&2; die "server $name did not become ready"; }
  printf -v "${name}_URL" %s "$url"
  echo "server $name on $url"
}

step "typescript: install, generated types up to date, tsc --strict"
(cd clients/typescript && npm ci --no-audit --no-fund --cache "$CACHE/npm" --loglevel=error)
CIFIX_BIN="$BIN" clients/typescript/check.sh

step "python: the package and the example's requirements into a throwaway venv"
python3 -m venv "$TMP/venv"
PY="$TMP/venv/bin/python"
# pip's own cache keeps nothing from this registry, so the wheels are kept in a wheelhouse;
# the install itself is offline, which also proves the wheelhouse has everything.
REQS=(-c .ci/clients-constraints.txt -r examples/streamlit-assessment/requirements.txt mypy)
# --no-compile: byte-compiling pandas and friends took four times as long as the install.
offline_install() { "$PY" -m pip install --quiet --no-compile --no-index --find-links "$CACHE/wheels" "${REQS[@]}" ./clients/python; }
if ! offline_install 2>/dev/null; then
  "$PY" -m pip download --quiet --dest "$CACHE/wheels" "${REQS[@]}" hatchling
  offline_install
fi
"$PY" -m pip show --files cifix-client | grep -q 'cifix_client/py.typed' || die "the installed package has no py.typed"

step "python: mypy --strict"
"$PY" -m mypy --strict --cache-dir "$CACHE/mypy" clients/python/src clients/python/tests clients/python/example.py \
  examples/streamlit-assessment/app.py examples/streamlit-assessment/test_app.py .ci/clients-provision.py

step "servers"
start_server MAIN
# Launches that expire after one second, for the example's "expired link" test.
start_server SHORT CIFIX_ASSESSMENT_LAUNCH_TTL_SECS=1

step "clients/round-trip.sh (twice on one server: every run picks fresh names)"
BASE="$MAIN_URL" clients/round-trip.sh
BASE="$MAIN_URL" clients/round-trip.sh | tail -n 1

# Assigned first: a failure inside eval's argument would not stop the script.
main_env="$(CIFIX_URL="$MAIN_URL" "$PY" .ci/clients-provision.py CIFIX_)"
short_env="$(CIFIX_URL="$SHORT_URL" "$PY" .ci/clients-provision.py CIFIX_SHORT_)"
eval "$main_env" "$short_env"
[ -n "$CIFIX_COURSE_ID" ] || die "seed-demo did not create python-first-steps"

step "typescript: usage.ts against the server"
TMPDIR="$TMP" node clients/typescript/smoke.mjs

step "python client tests (the installed package, not the source tree)"
(cd clients/python/tests && "$PY" -m unittest -v test_client)

step "streamlit example (AppTest)"
(cd examples/streamlit-assessment && "$PY" -m unittest -v test_app)

step "nothing left in the work tree"
[ "$(git status --porcelain --untracked-files=all)" = "$untracked_before" ] || {
  git status --porcelain --untracked-files=all >&2; die "the client tests left files in the repository"
}
echo "clients-test: passed"
