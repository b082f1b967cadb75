#!/usr/bin/env bash
# Fails if any file given contains something that looks like a secret: an
# application key, a stream ticket, a JWT, a PostgreSQL URL with a password, or one of the
# test suite's fixed keys. Prints where, never what.
set -euo pipefail
patterns=(
  'amp_[A-Za-z0-9_-]{43}'
  'amt_[A-Za-z0-9_-]{43}'
  'eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+'
  'postgres(ql)?(\+asyncpg)?://[^:@/[:space:]]+:[^@/[:space:]]+@'
  'test-admin-key-not-secure-but-32-bytes-long'
  'test-secret-key-not-secure-but-32-bytes-long'
)
found=0
for pattern in "${patterns[@]}"; do
  if grep -EnHo "$pattern" "$@" >/dev/null 2>&1; then
    grep -EnHo "$pattern" "$@" | cut -d: -f1,2 | sort -u | sed "s/^/log hygiene: secret-like text at /" >&2
    found=1
  fi
done
[ "$found" = 0 ] && echo "log hygiene: no secrets in $# file(s)"
exit "$found"
