#!/usr/bin/env bash
# Runs the whole test suite against a throwaway PostgreSQL server that this
# script starts and removes: cargo test (unit, HTTP and process tests), the
# Schemathesis run against the OpenAPI document (scripts/fuzz.sh), the
# offline infrastructure and workflow checks (scripts/check-infra.sh), the
# dependency audit (scripts/check-deps.sh: cargo-deny), then the log
# hygiene check over everything the suite printed or logged, and last a
# check that no process the tests started is still running. Extra
# arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# Every process the tests start carries this mark (scripts/check-leftovers.sh).
mark="test-run-$$-$(date +%s%N)"
dir=""
cleanup() {
  scripts/check-leftovers.sh "$mark" || true
  if [ -n "$dir" ]; then scripts/local-pg.sh stop "$dir" || true; rm -rf "$dir"; fi
}
trap cleanup EXIT

# A server given by the caller (e.g. a CI service container) is used as is.
if [ -z "${TEST_DATABASE_URL:-}" ]; then
  dir=$(mktemp -d /tmp/amplifier-test-pg.XXXXXX)
  chmod 755 "$dir"
  port=$(scripts/local-pg.sh free-port 55432)
  scripts/local-pg.sh start "$dir" "$port" --fast
  export TEST_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:$port/postgres"
fi

rm -rf target/test-logs
mkdir -p target/test-logs
AMPLIFIER_TEST_RUN=$mark cargo test --locked "$@" 2>&1 | tee target/test-logs/suite.log
AMPLIFIER_TEST_RUN=$mark scripts/fuzz.sh
scripts/check-infra.sh
scripts/check-deps.sh
scripts/check-log-hygiene.sh target/test-logs/*.log
scripts/check-leftovers.sh "$mark"
