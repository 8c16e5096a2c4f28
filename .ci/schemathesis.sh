#!/usr/bin/env bash
# Schemathesis against a live `cifix serve`: every check, every phase, as a student and as an
# admin, on one backend. 0 failures is the bar.
#
#   .ci/schemathesis.sh sqlite|postgres
#
# Uses target/debug/cifix as left by `cargo test` (CIFIX_BIN overrides it). ST_MAX_TIME bounds
# each role's run in seconds (default 150). Installs the pinned Schemathesis into a throwaway venv
# and removes everything it made (the temp dir; on PostgreSQL the database and Redis keys).
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${1:?usage: .ci/schemathesis.sh sqlite|postgres}
BIN=${CIFIX_BIN:-$PWD/target/debug/cifix}
[ -x "$BIN" ] || { echo "$BIN is missing: run cargo test (or cargo build) first" >&2; exit 1; }
MAX_TIME=${ST_MAX_TIME:-150}

TMP="$(mktemp -d)"
SERVER_PID=""
PG_ADMIN_URL="${CIFIX_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432}"
REDIS_BASE="${CIFIX_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
# The prefixes the leftover check in .ci/run looks for.
DB_NAME="cifix_t_schemathesis_$$"
REDIS_PREFIX="cifix-test:schemathesis-$$:"
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ "$BACKEND" = postgres ]; then
    psql "$PG_ADMIN_URL/postgres" -qAtc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null || true
    redis-cli -u "$REDIS_BASE" --scan --pattern "${REDIS_PREFIX}*" | xargs -r -d "\n" redis-cli -u "$REDIS_BASE" del >/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

python3 -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install -q --disable-pip-version-check -r .ci/schemathesis/requirements.txt

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
export CIFIX_DATA_DIR="$TMP/data" CIFIX_BIND="127.0.0.1:$PORT" CIFIX_BCRYPT_COST=4 RUST_LOG=warn
export CIFIX_JWT_SECRET="schemathesis-run-secret-0123456789abcdef"
# One client hammers every endpoint from one address: the per-address budgets would answer most
# of it with 429 and leave the logic untested. The limits have their own tests in the suite.
export CIFIX_RATE_LIMIT_PER_MINUTE=1000000 CIFIX_AUTH_RATE_LIMIT_PER_MINUTE=1000000
export CIFIX_LOGIN_ACCOUNT_RATE_LIMIT_PER_MINUTE=1000000 CIFIX_MAX_FAILED_LOGINS_PER_HOUR=1000000
export CIFIX_AUTH_FAILURES_PER_MINUTE=1000000 CIFIX_REGISTRATIONS_PER_HOUR=1000000
case "$BACKEND" in
  sqlite) ;;
  postgres)
    psql "$PG_ADMIN_URL/postgres" -qAtc "CREATE DATABASE $DB_NAME" >/dev/null
    export DATABASE_URL="$PG_ADMIN_URL/$DB_NAME" REDIS_URL="$REDIS_BASE" CIFIX_REDIS_PREFIX="$REDIS_PREFIX"
    ;;
  *) echo "unknown backend $BACKEND" >&2; exit 2 ;;
esac

ADMIN_EMAIL=admin@example.com STUDENT_EMAIL=student@example.com PASSWORD=correct-horse-battery-9
echo "$PASSWORD" | "$BIN" create-user --email "$ADMIN_EMAIL" --role admin >/dev/null
echo "$PASSWORD" | "$BIN" create-user --email "$STUDENT_EMAIL" --role student >/dev/null
"$BIN" seed-demo >/dev/null
"$BIN" serve >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do curl -fsS "$BASE/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$BASE/health/ready" >/dev/null || { cat "$TMP/server.log"; exit 1; }

# Schemathesis keeps a cache in its working directory: the temp dir, never the repository.
run_in() { local dir=$1; shift; (cd "$dir" && "$@"); }

status=0
for role in student admin; do
  email_var="${role^^}_EMAIL"
  echo "--- schemathesis on $BACKEND as $role (at most ${MAX_TIME}s)"
  if ! CIFIX_ST_BASE="$BASE" CIFIX_ST_EMAIL="${!email_var}" CIFIX_ST_PASSWORD="$PASSWORD" \
    PYTHONPATH="$PWD/.ci/schemathesis" SCHEMATHESIS_HOOKS=hooks \
    run_in "$TMP" "$TMP/venv/bin/schemathesis" --config-file "$PWD/.ci/schemathesis/schemathesis.toml" run "$BASE/api/openapi.json" \
      --max-time "$MAX_TIME" --report junit --report-dir "$TMP/report-$role" --no-color; then
    status=1
  fi
done
if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "the server died during the run" >&2; status=1; fi
if [ "$status" != 0 ]; then echo "--- server log (last 50 lines)"; tail -50 "$TMP/server.log"; fi
exit "$status"
