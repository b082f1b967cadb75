#!/usr/bin/env bash
# A throwaway PostgreSQL server from the locally installed binaries, for
# development and tests on machines without Docker.
#
#   local-pg.sh start DIR PORT [--ssl] [--fast] [--conf NAME=VALUE]...
#                                                 create (if new) and start a cluster in DIR
#   local-pg.sh stop DIR                          stop it (DIR is kept)
#   local-pg.sh free-port [FROM]                  print a free TCP port on 127.0.0.1
#
# The superuser is `postgres` with password `postgres`; TCP connections use
# scram-sha-256. --ssl turns TLS on with a fresh CA (DIR/tls/ca.crt) and a
# server certificate for localhost/127.0.0.1. --fast turns durability off
# (tests only). Works as root too: the server then runs as user postgres,
# since initdb refuses to run as root.
set -euo pipefail

die() { echo "local-pg: $*" >&2; exit 1; }

pg_bin() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] || die "$1 not found: install PostgreSQL (Debian: apt-get install postgresql)"
  echo "$found"
}

# Runs a command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local dir=$1 port=$2; shift 2
  local ssl=false fast=false extra=""
  while [ $# -gt 0 ]; do
    case $1 in
      --ssl) ssl=true ;;
      --fast) fast=true ;;
      --conf) [ $# -ge 2 ] || die "--conf needs NAME=VALUE"; extra="$extra -c $2"; shift ;;
      *) die "unknown option $1" ;;
    esac
    shift
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    mkdir -p "$dir/data"
    printf 'postgres\n' > "$dir/pwfile"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
    as_owner "$(pg_bin initdb)" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  local opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=300"
  if $ssl; then
    [ -f "$dir/tls/server.crt" ] || "$(dirname "$0")/make-test-certs.sh" "$dir/tls"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir/tls"
    opts="$opts -c ssl=on -c ssl_cert_file=$dir/tls/server.crt -c ssl_key_file=$dir/tls/server.key"
  fi
  if $fast; then
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  opts="$opts$extra"
  as_owner "$(pg_bin pg_ctl)" -D "$dir/data" -l "$dir/postgres.log" -o "$opts" -w -t 60 start >/dev/null \
    || { tail -n 20 "$dir/postgres.log" >&2; die "server did not start"; }
}

stop() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_owner "$(pg_bin pg_ctl)" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
}

free_port() {
  local port=${1:-55432}
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

case ${1:-} in
  start) [ $# -ge 3 ] || die "usage: local-pg.sh start DIR PORT [--ssl] [--fast]"; shift; start "$@" ;;
  stop) [ $# -eq 2 ] || die "usage: local-pg.sh stop DIR"; stop "$2" ;;
  free-port) free_port "${2:-}" ;;
  *) die "usage: local-pg.sh start|stop|free-port ..." ;;
esac
