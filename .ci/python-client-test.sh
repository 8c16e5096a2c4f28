#!/usr/bin/env bash
# Runs clients/python/test_client.py against a live `cifix serve` on SQLite in a temp dir.
# Builds nothing: uses target/debug/cifix as left by `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/target/debug/cifix"
[ -x "$BIN" ] || { echo "target/debug/cifix is missing: run cargo test first" >&2; exit 1; }

TMP="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export CIFIX_DATA_DIR="$TMP" CIFIX_BIND="127.0.0.1:$PORT" CIFIX_BCRYPT_COST=4 CIFIX_LOG_FORMAT=text RUST_LOG=warn
export CIFIX_JWT_SECRET="python-client-test-secret-0123456789abcdef"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

echo "correct-horse-battery-9" | "$BIN" create-user --email admin@example.com --role admin >/dev/null
"$BIN" serve >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 50); do curl -fsS "$URL/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$URL/health/ready" >/dev/null || { cat "$TMP/server.log"; exit 1; }

# Through the API: the admin signs in, creates the tool's client and a course the bundled
# rules recommend; a student registers.
eval "$(CIFIX_URL="$URL" python3 - <<'PY'
import json, os, urllib.request
base = os.environ["CIFIX_URL"] + "/api/v1"
def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, data=json.dumps(body or {}).encode(), method=method,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": "Bearer " + token} if token else {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")
admin = call("POST", "/auth/login", {"email": "admin@example.com", "password": "correct-horse-battery-9"})["access_token"]
client = call("POST", "/admin/integrations/clients", {"name": "python client test"}, admin)
course = call("POST", "/courses", {"slug": "python-first-steps", "title": "Python First Steps",
                                   "summary": "Start here", "level": "beginner"}, admin)
module = call("POST", "/courses/%s/modules" % course["id"], {"title": "Hello"}, admin)
call("POST", "/modules/%s/lessons" % module["id"], {"title": "First program", "kind": "reading"}, admin)
call("PATCH", "/courses/%s" % course["id"], {"published": True}, admin)
student = call("POST", "/auth/register", {"email": "student@example.com", "password": "another-stapler-battery-7",
                                          "display_name": "Student"})["access_token"]
print("export CIFIX_CLIENT_ID=%s CIFIX_CLIENT_SECRET=%s CIFIX_STUDENT_TOKEN=%s CIFIX_COURSE_ID=%s"
      % (client["client_id"], client["client_secret"], student, course["id"]))
PY
)"
export CIFIX_URL="$URL"
cd clients/python
python3 -m unittest -v test_client
