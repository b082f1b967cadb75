#!/usr/bin/env bash
# Assembles the runnable function-app folder from functions/ (the source):
#   OUT/host.json, OUT/<function>/function.json, OUT/amplifier-sessions,
#   OUT/certs/ (the CA roots the deployment verifies PostgreSQL with),
#   OUT/local.settings.json (local runs only; never deployed; its
#   DATABASE_URL is the environment's when set, as scripts/dev.sh does)
# Usage: scripts/assemble.sh [OUT] [--binary PATH]
# Default OUT: target/functionapp; default binary: a fresh release build.
# Then: cd OUT && func start
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/functionapp
binary=
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    *) out=$1; shift ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release --locked
  binary=target/release/amplifier-sessions
fi

rm -rf "$out"
mkdir -p "$out"
cp host.json "$out/"
python3 - "$out/local.settings.json" <<'PY'
import json, os, sys
settings = json.load(open("local.settings.json"))
if os.environ.get("DATABASE_URL"):
    settings["Values"]["DATABASE_URL"] = os.environ["DATABASE_URL"]
with open(sys.argv[1], "w") as f:
    json.dump(settings, f, indent=2)
PY
for dir in functions/*/; do
  name=$(basename "$dir")
  mkdir -p "$out/$name"
  cp "$dir/function.json" "$out/$name/"
done
# The roots OpenSSL reads at start in Azure (SSL_CERT_FILE, infra/main.bicep).
cp -r certs "$out/"
cp "$binary" "$out/amplifier-sessions"
chmod +x "$out/amplifier-sessions"
echo "assembled $out"
