#!/usr/bin/env bash
# Fails if any process marked with the given test-run mark is still
# running: every process the tests start carries AMPLIFIER_TEST_RUN=<mark>
# in its environment (tests/api/children.rs passes it on), and a test must
# stop what it started however it ends. Leftovers are listed and killed.
#
#   check-leftovers.sh MARK
set -euo pipefail
mark=${1:?usage: check-leftovers.sh MARK}

leftovers() {
  local dir pid
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = $$ ] && continue
    grep -qxzF "AMPLIFIER_TEST_RUN=$mark" "$dir/environ" 2>/dev/null && echo "$pid"
  done
  return 0
}

# A process killed a moment ago may still be on its way out.
deadline=$((SECONDS + 5))
pids=$(leftovers)
while [ -n "$pids" ] && [ $SECONDS -lt $deadline ]; do
  sleep 0.5
  pids=$(leftovers)
done
[ -z "$pids" ] && exit 0
echo "check-leftovers: the tests left these processes running (now killed):" >&2
# shellcheck disable=SC2086
ps -o pid,ppid,etime,args -p "$(echo $pids | tr ' ' ,)" >&2 || true
# shellcheck disable=SC2086
kill -9 $pids 2>/dev/null || true
exit 1
