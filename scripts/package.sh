#!/usr/bin/env bash
# Builds the deployment zip for Azure Functions (Linux, x86-64):
#   host.json, <function>/function.json for each of functions/, and the
#   binary amplifier-sessions at the root. Nothing else.
# Usage: scripts/package.sh [OUT.zip] [--binary PATH]
# Default OUT: target/amplifier-sessions.zip; default binary: a release
# build that runs on any x86-64 Linux with glibc >= 2.28 (Debian 10, Ubuntu
# 20.04, RHEL 8 and later, which every Functions Linux image is): linked
# against glibc 2.28 with cargo-zigbuild (zig from PyPI, pinned with hashes
# in scripts/package-requirements.txt) and with OpenSSL
# built in (feature vendored-openssl), so no libssl is needed on the host.
# The script checks both properties of the binary it packages.
# CARGO_TARGET_DIR is honoured (a copy of the tree can share one build).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}

out=target/amplifier-sessions.zip
binary=
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    *) out=$1; shift ;;
  esac
done
glibc_floor=2.28
if [ -z "$binary" ]; then
  # zig and cargo-zigbuild at the exact versions and file hashes of
  # scripts/package-requirements.txt; a venv made from another list is
  # made again.
  venv=$target/package-venv
  requirements=scripts/package-requirements.txt
  if [ ! -x "$venv/bin/cargo-zigbuild" ] || ! cmp -s "$requirements" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --require-hashes --only-binary :all: -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
  fi
  PATH="$(cd "$venv" && pwd)/bin:$PATH" cargo zigbuild --release --locked --quiet \
    --target "x86_64-unknown-linux-gnu.$glibc_floor" --features vendored-openssl
  binary=$target/x86_64-unknown-linux-gnu/release/amplifier-sessions
  needs=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
  if [ "$(printf '%s\n%s\n' "$needs" "$glibc_floor" | sort -V | tail -n 1)" != "$glibc_floor" ]; then
    echo "package: the binary needs glibc $needs, more than $glibc_floor" >&2
    exit 1
  fi
  if readelf -d "$binary" | grep -Eq 'NEEDED.*lib(ssl|crypto)'; then
    echo "package: the binary links libssl/libcrypto dynamically" >&2
    exit 1
  fi
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
