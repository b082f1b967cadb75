#!/usr/bin/env bash
# Runs the whole test suite against a throwaway PostgreSQL server that this
# script starts and removes: cargo test (unit, HTTP and process tests), the
# Schemathesis run against the OpenAPI document (scripts/fuzz.sh), the
# offline infrastructure checks (scripts/check-infra.sh), then the log
# hygiene check over everything the suite printed or logged. Extra
# arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# A server given by the caller (e.g. a CI service container) is used as is.
if [ -z "${TEST_DATABASE_URL:-}" ]; then
  dir=$(mktemp -d /tmp/amplifier-test-pg.XXXXXX)
  chmod 755 "$dir"
  cleanup() { scripts/local-pg.sh stop "$dir" || true; rm -rf "$dir"; }
  trap cleanup EXIT
  port=$(scripts/local-pg.sh free-port 55432)
  scripts/local-pg.sh start "$dir" "$port" --fast
  export TEST_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:$port/postgres"
fi

rm -rf target/test-logs
mkdir -p target/test-logs
cargo test "$@" 2>&1 | tee target/test-logs/suite.log
scripts/fuzz.sh
scripts/check-infra.sh
scripts/check-log-hygiene.sh target/test-logs/*.log
