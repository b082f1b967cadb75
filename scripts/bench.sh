#!/usr/bin/env bash
# The benchmark (see docs/benchmarks.md): builds the release binary, starts a
# throwaway PostgreSQL (TLS on) with pg_stat_statements and CSV statement
# logs, runs scripts/bench.py (wrk against the service, pgbench against the
# same SQL, round trips of every function, cold start, memory, transcript
# growth, scale) and writes docs/benchmarks.md; then scripts/bench_attacks.py
# (issue 15's attacks on one instance), scripts/bench_shares.py (issue 16:
# one application's flood of slow requests against another's reads) and
# scripts/bench_limits.py (issue 16's rate limits) and scripts/bench_events.py
# (issue 17's live sessions: streams over two instances),
# scripts/bench_purge.py (issue 18's retention purge of 1,000,000 expired
# sessions under load) and scripts/bench_telemetry.py (issue 19: the cost of
# traces and metrics) add their sections.
# Environment: BENCH_DURATION (s per run, default 10), BENCH_CONNECTIONS
# (default 8), BENCH_USERS (default 200), BENCH_GROWTH_MESSAGES (default
# 100000), BENCH_SCALE_SESSIONS (default 1000000), BENCH_PURGE_SESSIONS
# (default 1000000), BENCH_ONLY=attacks, shares, limits, events, purge,
# telemetry or cold (only that section; cold: the cold starts of
# scripts/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
only=${BENCH_ONLY:-}
case "$only" in
  ""|attacks|shares|limits|events|purge|telemetry|cold) ;;
  *) echo "bench: BENCH_ONLY must be attacks, shares, limits, events, purge, telemetry or cold" >&2; exit 1 ;;
esac

scripts/install-deps.sh
# wrk drives the load; valgrind's callgrind counts instructions
# (scripts/bench_limits.py).
for tool in wrk valgrind; do
  command -v "$tool" >/dev/null 2>&1 && continue
  [ "$(id -u)" = 0 ] || { echo "bench: install $tool (apt-get install $tool)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
done
cargo build --release --locked --quiet

dir=$(mktemp -d /tmp/amplifier-bench-pg.XXXXXX)
chmod 755 "$dir"
cleanup() { scripts/local-pg.sh stop "$dir" || true; rm -rf "$dir"; }
trap cleanup EXIT
port=$(scripts/local-pg.sh free-port 56432)
scripts/local-pg.sh start "$dir" "$port" --fast --ssl \
  --conf shared_preload_libraries=pg_stat_statements \
  --conf pg_stat_statements.track=top \
  --conf logging_collector=on --conf log_destination=csvlog \
  --conf log_directory=log --conf log_parameter_max_length=-1 \
  --conf max_wal_size=4GB

if [ -z "$only" ]; then
  python3 scripts/bench.py --pg-port "$port" --log-dir "$dir/data/log" --ca-file "$dir/tls/ca.crt" \
    --duration "${BENCH_DURATION:-10}" --connections "${BENCH_CONNECTIONS:-8}" \
    --users "${BENCH_USERS:-200}" --growth-messages "${BENCH_GROWTH_MESSAGES:-100000}" \
    --scale-sessions "${BENCH_SCALE_SESSIONS:-1000000}"
fi
if [ "$only" = cold ]; then
  python3 scripts/bench.py --pg-port "$port" --log-dir "$dir/data/log" --ca-file "$dir/tls/ca.crt" --only cold
fi
# Issue 15's attacks, issue 16's pool shares and rate limits, issue 17's
# live sessions; each replaces its section of docs/benchmarks.md.
if [ -z "$only" ] || [ "$only" = attacks ]; then
  python3 scripts/bench_attacks.py --pg-port "$port" --log-dir "$dir/data/log" --ca-file "$dir/tls/ca.crt"
fi
if [ -z "$only" ] || [ "$only" = shares ]; then
  python3 scripts/bench_shares.py --pg-port "$port" --log-dir "$dir/data/log" --ca-file "$dir/tls/ca.crt"
fi
if [ -z "$only" ] || [ "$only" = limits ]; then
  python3 scripts/bench_limits.py --pg-port "$port" --log-dir "$dir/data/log" --ca-file "$dir/tls/ca.crt"
fi
if [ -z "$only" ] || [ "$only" = events ]; then
  python3 scripts/bench_events.py --pg-port "$port" --log-dir "$dir/data/log" --ca-file "$dir/tls/ca.crt"
fi
if [ -z "$only" ] || [ "$only" = purge ]; then
  python3 scripts/bench_purge.py --pg-port "$port" --log-dir "$dir/data/log" --ca-file "$dir/tls/ca.crt" \
    --sessions "${BENCH_PURGE_SESSIONS:-1000000}"
fi
if [ -z "$only" ] || [ "$only" = telemetry ]; then
  python3 scripts/bench_telemetry.py --pg-port "$port" --log-dir "$dir/data/log" --ca-file "$dir/tls/ca.crt"
fi
