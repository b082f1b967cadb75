#!/usr/bin/env bash
# Smoke test of a deployed instance, with no credentials, so it can run
# against any environment (the deploy workflow runs it after each deploy;
# the test environment's run gates production):
#   - /api/health answers 200 {"status": "ok", "database": "ok"}: the app
#     runs, reaches PostgreSQL as its own role and can read the schema
#   - /api/openapi.json is the API's document
#   - a call without credentials is refused with 401 application/problem+json:
#     authentication is on and the host passes the service's answer through
# Usage: scripts/smoke.sh BASE_URL (e.g. https://<app>.azurewebsites.net)
set -euo pipefail
base=${1:?usage: scripts/smoke.sh BASE_URL}
base=${base%/}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
check() { # NAME PATH EXPECTED_STATUS PYTHON_CHECK (reads the body as `body`, headers as `ctype`)
  local name=$1 path=$2 want=$3 test=$4 status
  status=$(curl -sS --retry 3 --retry-all-errors --max-time 30 -o "$work/body" -D "$work/headers" \
    -w '%{http_code}' "$base$path") || status=000
  if [ "$status" = "$want" ] && python3 - "$work/body" "$work/headers" "$test" <<'PY'
import json, sys
body_path, headers_path, test = sys.argv[1:]
raw = open(body_path, "rb").read()
ctype = ""
for line in open(headers_path, encoding="latin-1"):
    if line.lower().startswith("content-type:"):
        ctype = line.split(":", 1)[1].strip().lower()
try:
    body = json.loads(raw)
except ValueError:
    body = None
sys.exit(0 if eval(test, {"body": body, "ctype": ctype}) else 1)
PY
  then
    echo "smoke: ok: $name"
  else
    echo "smoke: FAILED: $name: GET $path answered $status: $(head -c 300 "$work/body" 2>/dev/null)" >&2
    failed=1
  fi
}
check "health" /api/health 200 \
  'body == {"status": "ok", "database": "ok"}'
check "OpenAPI document" /api/openapi.json 200 \
  'isinstance(body, dict) and "openapi" in body and "/api/sessions" in body.get("paths", {})'
check "no credentials: 401 problem" /api/configs 401 \
  'ctype.startswith("application/problem+json") and body.get("status") == 401'
exit $failed
