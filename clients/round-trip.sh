#!/usr/bin/env bash
# One full assessment round trip with curl, openssl and jq: an admin creates the tool's client
# and a course, a student starts an assessment, the tool resolves the launch token and posts
# signed results, the student reads the completed assessment and the learning path.
#
# Prerequisites (the README's first steps):
#   cargo run --release                      # a running `cifix serve`, on BASE
#   echo 'a long unique passphrase' | cargo run --release -- create-user --email admin@example.com --role admin
#   curl, jq and openssl on PATH
# Optional: `cargo run --release -- seed-demo` first, so the learning path has courses in it.
# Every run uses fresh names (course slug, student, external_id), so it can be run again.
#
# Environment: BASE (http://127.0.0.1:8080), ADMIN_EMAIL (admin@example.com),
# ADMIN_PASSWORD (a long unique passphrase). Exits non-zero naming the first step that did not
# answer the expected status.
set -euo pipefail
BASE=${BASE:-http://127.0.0.1:8080}
ADMIN_EMAIL=${ADMIN_EMAIL:-admin@example.com}
ADMIN_PASSWORD=${ADMIN_PASSWORD:-a long unique passphrase}
API_PATH=/api/v1
RUN="$(date +%s)-$(openssl rand -hex 4)"
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
STEPS=0

fail() { echo "round-trip: FAILED at step '$1': $2" >&2; [ -s "$OUT" ] && { cat "$OUT" >&2; echo >&2; }; exit 1; }

# check STEP EXPECTED_STATUS CURL_ARGS... ; leaves the body in $BODY
check() {
  local step=$1 expected=$2 status
  shift 2
  status=$(curl -sS -o "$OUT" -w '%{http_code}' "$@") || fail "$step" "curl could not reach $BASE"
  [ "$status" = "$expected" ] || fail "$step" "expected HTTP $expected, got $status"
  BODY=$(cat "$OUT")
  STEPS=$((STEPS + 1))
  echo "ok  $step -> $status"
}
# as TOKEN STEP EXPECTED METHOD PATH [JSON]
as() {
  local token=$1 step=$2 expected=$3 method=$4 path=$5 data=${6:-}
  local args=(-X "$method" "$BASE$API_PATH$path" -H 'content-type: application/json')
  [ -n "$token" ] && args+=(-H "authorization: Bearer $token")
  [ -n "$data" ] && args+=(--data-binary "$data")
  check "$step" "$expected" "${args[@]}"
}
field() { jq -er "$1" <<<"$BODY" || fail "$2" "no $1 in the answer"; }

# 1. The admin signs in and creates the tool's client (the secret is shown once).
as "" "admin signs in" 200 POST /auth/login "$(jq -nc --arg e "$ADMIN_EMAIL" --arg p "$ADMIN_PASSWORD" '{email:$e,password:$p}')"
ADMIN=$(field .access_token "admin signs in")
as "$ADMIN" "admin creates the tool's client" 201 POST /admin/integrations/clients '{"name":"round-trip '"$RUN"'"}'
CLIENT_ID=$(field .client_id "create client"); SECRET=$(field .client_secret "create client")

# A course of its own, under a slug no other run or `seed-demo` has taken.
as "$ADMIN" "admin creates a course" 201 POST /courses \
  '{"slug":"round-trip-'"$RUN"'","title":"Round trip '"$RUN"'","summary":"Made by clients/round-trip.sh","level":"beginner"}'
COURSE=$(field .id "create course")
as "$ADMIN" "admin adds a module" 201 POST "/courses/$COURSE/modules" '{"title":"Start"}'
MODULE=$(field .id "add module")
as "$ADMIN" "admin adds a lesson" 201 POST "/modules/$MODULE/lessons" '{"title":"Hello","kind":"reading"}'
as "$ADMIN" "admin publishes the course" 200 PATCH "/courses/$COURSE" '{"published":true}'

# 2. A student registers and starts an assessment.
as "" "student registers" 201 POST /auth/register \
  '{"email":"ada-'"$RUN"'@example.com","password":"another-stapler-battery-7","display_name":"Ada"}'
STUDENT=$(field .access_token "register")
as "$STUDENT" "student starts an assessment" 201 POST /me/assessments
ASSESSMENT=$(field .id "start assessment"); TOKEN=$(field .launch_token "start assessment")

# 3. The tool's calls, signed as the README's "Signing every request" says.
signed() { # STEP EXPECTED PATH BODY [NONCE]
  local step=$1 expected=$2 path=$3 body=$4 nonce=${5:-$(openssl rand -hex 16)} ts key msg sig
  ts=$(date +%s)
  key=$(printf %s "$SECRET" | sha256sum | cut -d' ' -f1)
  msg=$(printf '%s\n%s\nPOST\n%s\n%s' "$ts" "$nonce" "$path" "$(printf %s "$body" | sha256sum | cut -d' ' -f1)")
  sig=$(printf %s "$msg" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" | awk '{print $NF}')
  check "$step" "$expected" -X POST "$BASE$path" -H 'content-type: application/json' \
    -H "x-cifix-client: $CLIENT_ID" -H "x-cifix-timestamp: $ts" -H "x-cifix-nonce: $nonce" \
    -H "x-cifix-signature: v1=$sig" --data-binary "$body"
}
NONCE=$(openssl rand -hex 16)
signed "tool resolves the launch token" 200 $API_PATH/integrations/assessments/launch '{"launch_token":"'"$TOKEN"'"}' "$NONCE"
[ "$(field .assessment_id launch)" = "$ASSESSMENT" ] || fail "tool resolves the launch token" "another assessment"
signed "the same nonce again is refused" 401 $API_PATH/integrations/assessments/launch '{"launch_token":"'"$TOKEN"'"}' "$NONCE"
RESULTS='{"launch_token":"'"$TOKEN"'","external_id":"run-'"$RUN"'","completed_at":"'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"'","overall_score":41,"skills":[{"skill":"python","score":35},{"skill":"ai","score":48}],"details":{"answers":[3,1,4]}}'
signed "tool posts results" 201 $API_PATH/integrations/assessments/results "$RESULTS"
signed "tool retries the same results" 200 $API_PATH/integrations/assessments/results "$RESULTS"

# 4. The student sees the completed assessment and the learning path built from it.
as "$STUDENT" "student reads the assessment" 200 GET "/assessments/$ASSESSMENT"
[ "$(field .status "read assessment")" = completed ] || fail "student reads the assessment" "status is not completed"
as "$STUDENT" "student reads the learning path" 200 GET /me/learning-path
[ "$(field .based_on_assessment_id "learning path")" = "$ASSESSMENT" ] || fail "student reads the learning path" "not based on this assessment"
echo "$BODY" | jq -c '.steps[] | {position, course_id, reason}'
echo "round-trip: all $STEPS steps passed"
