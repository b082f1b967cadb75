#!/usr/bin/env bash
# Runs the whole test suite against a throwaway PostgreSQL server that this
# script starts and removes: cargo test (unit and HTTP tests), the
# Schemathesis run against the OpenAPI document (scripts/fuzz.sh), then the
# log hygiene check over everything the suite printed or logged. Extra
# arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

dir=$(mktemp -d /tmp/amplifier-test-pg.XXXXXX)
chmod 755 "$dir"
cleanup() { scripts/local-pg.sh stop "$dir" || true; rm -rf "$dir"; }
trap cleanup EXIT

port=$(scripts/local-pg.sh free-port 55432)
scripts/local-pg.sh start "$dir" "$port" --fast
export TEST_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:$port/postgres"

rm -rf target/test-logs
mkdir -p target/test-logs
cargo test "$@" 2>&1 | tee target/test-logs/suite.log
scripts/fuzz.sh
scripts/check-log-hygiene.sh target/test-logs/*.log
