#!/usr/bin/env bash
# One full round trip with curl, openssl and jq against a running `cifix serve` that has an admin
# admin@example.com / correct-horse-battery-9 (cifix create-user). BASE defaults to http://127.0.0.1:8080.
set -euo pipefail
BASE=${BASE:-http://127.0.0.1:8080}
API=$BASE/api/v1
json() { curl -sS -H 'content-type: application/json' "$@"; }

# 1. Admin signs in and creates the tool's client (the secret is shown once).
ADMIN=$(json -X POST $API/auth/login -d '{"email":"admin@example.com","password":"correct-horse-battery-9"}' | jq -r .access_token)
CLIENT=$(json -X POST $API/admin/integrations/clients -H "authorization: Bearer $ADMIN" -d '{"name":"Streamlit tool"}')
echo "$CLIENT"
CLIENT_ID=$(echo "$CLIENT" | jq -r .client_id); SECRET=$(echo "$CLIENT" | jq -r .client_secret)

# A course the bundled rules recommend for a weak python score.
COURSE=$(json -X POST $API/courses -H "authorization: Bearer $ADMIN" -d '{"slug":"python-first-steps","title":"Python First Steps","summary":"Start here","level":"beginner"}' | jq -r .id)
json -X PATCH $API/courses/$COURSE -H "authorization: Bearer $ADMIN" -d '{"published":true}' >/dev/null

# 2. A student starts an assessment.
STUDENT=$(json -X POST $API/auth/register -d '{"email":"ada@example.com","password":"another-stapler-battery-7","display_name":"Ada"}' | jq -r .access_token)
START=$(json -X POST $API/me/assessments -H "authorization: Bearer $STUDENT")
echo "$START"
TOKEN=$(echo "$START" | jq -r .launch_token)

# 3. The tool posts results, signed.
signed_post() { # path body
  local path=$1 body=$2 ts nonce key msg sig
  ts=$(date +%s); nonce=$(openssl rand -hex 16)
  key=$(printf %s "$SECRET" | sha256sum | cut -d' ' -f1)
  msg=$(printf '%s\n%s\nPOST\n%s\n%s' "$ts" "$nonce" "$path" "$(printf %s "$body" | sha256sum | cut -d' ' -f1)")
  sig=$(printf %s "$msg" | openssl dgst -sha256 -mac HMAC -macopt hexkey:$key | awk '{print $NF}')
  curl -sS -w ' -> HTTP %{http_code}\n' -X POST "$BASE$path" -H 'content-type: application/json' \
    -H "x-cifix-client: $CLIENT_ID" -H "x-cifix-timestamp: $ts" -H "x-cifix-nonce: $nonce" \
    -H "x-cifix-signature: v1=$sig" --data-binary "$body"
}
BODY='{"launch_token":"'$TOKEN'","external_id":"run-0001","completed_at":"2026-11-25T17:00:00Z","overall_score":41,"skills":[{"skill":"python","score":35},{"skill":"ai","score":48}],"details":{"answers":[3,1,4]}}'
signed_post /api/v1/integrations/assessments/results "$BODY"   # 201
signed_post /api/v1/integrations/assessments/results "$BODY"   # retry: 200, nothing changes

# 4. The student reads the learning path.
curl -sS $API/me/learning-path -H "authorization: Bearer $STUDENT"; echo
