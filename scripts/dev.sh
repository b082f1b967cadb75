#!/usr/bin/env bash
# Runs the service locally on http://localhost:7071/api with a development
# database:
#   - DATABASE_URL set in the environment: use it as is;
#   - a Docker engine running: docker-compose.dev.yml;
#   - otherwise: a local PostgreSQL from the installed binaries, its data
#     kept in ${AMPLIFIER_DEV_PG:-/tmp/amplifier-dev-pg} between runs and
#     the server stopped on exit.
#
#   scripts/dev.sh                   database + the service (bare binary)
#   scripts/dev.sh --database-only   database + the function app (a release
#                                    build) assembled in target/functionapp
#                                    with this database in its
#                                    local.settings.json; then run `func start`
#                                    there (Azure Functions Core Tools) in
#                                    another terminal. Ctrl-C stops.
# Other arguments go to the binary (default: serve).
set -euo pipefail
cd "$(dirname "$0")/.."
export ENVIRONMENT=${ENVIRONMENT:-development}
database_only=false
local_pg=false # a server this script started, and stops on exit
if [ "${1:-}" = "--database-only" ]; then
  database_only=true
  shift
fi

if [ -n "${DATABASE_URL:-}" ]; then
  echo "dev: using DATABASE_URL from the environment"
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "dev: starting PostgreSQL with docker compose"
  docker compose -f docker-compose.dev.yml up -d --wait postgres
  export DATABASE_URL="postgresql://amplifier_dev:dev_password@127.0.0.1:5432/amplifier_dev"
else
  dir=${AMPLIFIER_DEV_PG:-/tmp/amplifier-dev-pg}
  port=$(scripts/local-pg.sh free-port 5432)
  echo "dev: no Docker engine; starting a local PostgreSQL in $dir on port $port"
  scripts/local-pg.sh start "$dir" "$port"
  trap 'scripts/local-pg.sh stop "$dir"' EXIT
  local_pg=true
  export PGPASSWORD=postgres
  psql_admin() { psql -q -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 "$@"; }
  if [ -z "$(psql_admin -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'amplifier_dev'")" ]; then
    psql_admin -d postgres -c "CREATE ROLE amplifier_dev LOGIN PASSWORD 'dev_password'"
    psql_admin -d postgres -c "CREATE DATABASE amplifier_dev OWNER amplifier_dev"
    psql_admin -d amplifier_dev -f scripts/init-dev-db.sql
  fi
  unset PGPASSWORD
  export DATABASE_URL="postgresql://amplifier_dev:dev_password@127.0.0.1:$port/amplifier_dev"
fi

if $database_only; then
  # The function app runs the release binary; its local.settings.json gets
  # this database, whatever port it is on.
  echo "dev: building the release binary for the function app (first time: several minutes)"
  scripts/assemble.sh target/functionapp
  echo "dev: database ready at ${DATABASE_URL%%\?*}"
  echo "dev: now, in another terminal: cd target/functionapp && func start"
  command -v func >/dev/null 2>&1 || echo "dev: Core Tools are not installed: npm install -g azure-functions-core-tools@4"
  if $local_pg; then
    echo "dev: Ctrl-C stops the database"
  else
    echo "dev: Ctrl-C ends this script; the database keeps running"
  fi
  while true; do sleep 3600; done
fi

echo "dev: building (first time: a few minutes)"
cargo build --locked
exec_args=("$@")
[ ${#exec_args[@]} -gt 0 ] || exec_args=(serve)
# Not `exec`: the EXIT trap must stop the throwaway server afterwards.
target/debug/amplifier-sessions "${exec_args[@]}" &
service=$!
# A background job ignores Ctrl-C in a script: pass it on (graceful stop).
trap 'kill -TERM "$service" 2>/dev/null || true' INT TERM
if [ "${exec_args[0]}" = serve ]; then
  # The port as the binary reads it (src/settings/http.rs); a .env file
  # that sets another shows in its "listening" line.
  port=${FUNCTIONS_CUSTOMHANDLER_PORT:-7071}
  for _ in $(seq 600); do
    if curl -fs -o /dev/null "http://127.0.0.1:$port/"; then
      echo "dev: ready at http://localhost:$port/api (docs: http://localhost:$port/api/docs; Ctrl-C stops)"
      break
    fi
    kill -0 "$service" 2>/dev/null || break
    sleep 0.1
  done
fi
status=0
wait "$service" || status=$?
# Interrupted by Ctrl-C: wait for the service to finish shutting down.
kill -0 "$service" 2>/dev/null && { wait "$service" || status=$?; }
exit "$status"
