#!/usr/bin/env bash
# Builds the deployment zip for Azure Functions (Linux, x86-64):
#   host.json, <function>/function.json for each of functions/, and the
#   binary amplifier-sessions at the root. Nothing else.
# Usage: scripts/package.sh [OUT.zip] [--binary PATH]
# Default OUT: target/amplifier-sessions.zip; default binary: a fresh
# release build. Prints the highest glibc symbol version the binary needs,
# which the Functions Linux image must provide (see docs/deploy.md).
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/amplifier-sessions.zip
binary=
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    *) out=$1; shift ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release --locked --quiet
  binary=target/release/amplifier-sessions
fi

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
scripts/assemble.sh "$staging/app" --binary "$binary" >/dev/null
rm "$staging/app/local.settings.json" # local development only; never deployed

mkdir -p "$(dirname "$out")"
python3 - "$staging/app" "$out" <<'PY'
import os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for folder, _, files in sorted(os.walk(src)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            arcname = os.path.relpath(path, src)
            info = zipfile.ZipInfo.from_file(path, arcname)
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read())  # keeps the executable bit
PY
glibc=$(objdump -T "$binary" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1 || true)
echo "package: $out ($(du -h "$out" | cut -f1)); needs ${glibc:-unknown glibc}"
