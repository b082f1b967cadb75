#!/usr/bin/env bash
# Offline checks of what deploys: every Bicep file parses and modules and
# parameter files agree (scripts/check_infra.py, with pycep-parser); the
# GitHub workflows validate against the GitHub workflow schema
# (check-jsonschema's vendored copy); and they keep the deploy path's order
# and hardening (scripts/check_workflows.py, with ruamel.yaml; its
# --self-test breaks copies of them and expects each to be caught). None
# needs the network beyond PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/tools-venv
if [ ! -x "$venv/bin/check-jsonschema" ] || [ ! -d "$venv/lib" ] \
    || ! "$venv/bin/python" -c "import pycep, ruamel.yaml" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "pycep-parser==0.7.1" "check-jsonschema>=0.29,<1" "ruamel.yaml>=0.18,<1"
fi
"$venv/bin/python" scripts/check_infra.py
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml
"$venv/bin/python" scripts/check_workflows.py --self-test
