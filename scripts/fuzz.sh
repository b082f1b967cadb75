#!/usr/bin/env bash
# Redocly's lint, then Schemathesis, against the service's own
# /api/openapi.json. Schemathesis runs with valid
# credentials: every operation gets generated valid and invalid requests, and
# every response must be no 5xx, a documented status, content type, headers
# and body schema, and invalid input must be refused with a 4xx.
# Needs TEST_DATABASE_URL (a server superuser URL; scripts/test.sh sets it).
# FUZZ_EXAMPLES (per operation, default 40) and FUZZ_SEED tune the run.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TEST_DATABASE_URL:?run through scripts/test.sh, or set a server URL}"

venv=target/fuzz-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  # Pinned: a new release must not turn CI red on its own.
  "$venv/bin/pip" install -q "schemathesis==4.32.5" "hypothesis==6.170.17"
fi
cargo build --locked --quiet
mkdir -p target/test-logs

db="fuzz_$(date +%s%N)"
psql -X -q "$TEST_DATABASE_URL" -c "CREATE DATABASE $db"
admin_key=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
port=$(scripts/local-pg.sh free-port 7500)
workdir=$(mktemp -d)
export ENVIRONMENT=test DATABASE_URL="${TEST_DATABASE_URL%/*}/$db" AUTH_REQUIRED=true \
  SECRET_KEY="fuzz-secret-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" \
  ADMIN_API_KEY="$admin_key" FUNCTIONS_CUSTOMHANDLER_PORT="$port" LOG_LEVEL=info \
  RATE_LIMIT_REQUESTS_PER_MINUTE=0 RATE_LIMIT_WRITES_PER_MINUTE=0 \
  RATE_LIMIT_APP_REQUESTS_PER_MINUTE=0 RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE=0 \
  EVENTS_MAX_STREAM_SECONDS=5
# (Limits off: the fuzzer's thousands of requests a minute are one user's,
# many with wrong credentials; each must reach its handler.)
bin=$PWD/target/debug/amplifier-sessions
(cd "$workdir" && exec "$bin" serve) >target/test-logs/fuzz-service.log 2>&1 &
service=$!
trap 'kill $service 2>/dev/null || true; rm -rf "$workdir"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -fs "$base/api/health" >/dev/null && break; sleep 0.1; done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
key=$(curl -fs -X POST "$base/api/applications" -H "X-API-Key: $admin_key" \
  -H 'Content-Type: application/json' -d '{"app_id": "fuzz-app", "app_name": "Fuzz"}' | json '["api_key"]')
token=$(cd "$workdir" && "$bin" dev-token --user 7d4f0a3e-1c2b-4d5e-8f90-a1b2c3d4e5f6)
auth=(-H "X-API-Key: $key" -H "Authorization: Bearer $token")
config=$(curl -fs -X POST "$base/api/configs" "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"name": "fuzz", "yaml_content": "model: fuzz\n"}' | json '["config_id"]')
curl -fs -X POST "$base/api/sessions" "${auth[@]}" -H 'Content-Type: application/json' \
  -d "{\"config_id\": \"$config\"}" >/dev/null

# Redocly's recommended rules (redocly.yaml) over the served document:
# what generated clients and docs tools expect of it.
redocly=target/redocly/node_modules/.bin/redocly
if [ ! -x "$redocly" ]; then
  # Pinned: a new release must not turn CI red on its own.
  npm install --prefix target/redocly --no-audit --no-fund --silent "@redocly/cli@2.77.0"
fi
curl -fs "$base/api/openapi.json" > target/openapi.json
"$redocly" lint target/openapi.json 2>&1 | tee target/test-logs/redocly.log

checks=not_a_server_error,status_code_conformance,content_type_conformance
checks=$checks,response_headers_conformance,response_schema_conformance,negative_data_rejection
run() {
  "$venv/bin/schemathesis" run "$base/api/openapi.json" --checks "$checks" \
    --max-examples "${FUZZ_EXAMPLES:-40}" --seed "${FUZZ_SEED:-20261125}" --workers 1 \
    --suppress-health-check all --no-color --request-timeout 40 "$@"
}
# (40 s: a long-poll of list-messages may wait its longest, 30 s, before it
# answers; streams end by themselves after EVENTS_MAX_STREAM_SECONDS.)
# Application and user functions with an application key and a user token,
# then the admin's functions with the admin key.
run "${auth[@]}" --exclude-path-regex '^/api/applications' 2>&1 | tee target/test-logs/fuzz.log
run -H "X-API-Key: $admin_key" --include-path-regex '^/api/applications' 2>&1 | tee -a target/test-logs/fuzz.log
