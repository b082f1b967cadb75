#!/usr/bin/env bash
# The dependency audit: cargo-deny with deny.toml. Always: licenses (an
# allow-list), bans (duplicate versions reported, wildcard versions
# refused) and sources (crates.io only). RustSec advisories need the
# advisory database, a git repository on github.com, so they run when
# DENY_ADVISORIES says:
#   auto (default)  when github.com answers; otherwise the script says it
#                   skipped them
#   required        always; no network is a failure (CI sets this)
#   skip            never
# cargo-deny is installed into target/cargo-tools at the version below the
# first time (cargo install --locked: a few minutes of compiling).
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.20.2
root=target/cargo-tools
deny=$root/bin/cargo-deny
if [ ! -x "$deny" ] || [ "$("$deny" --version)" != "cargo-deny $version" ]; then
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  echo "check-deps: installing cargo-deny $version into $root"
  cargo install --quiet --locked --version "$version" --root "$root" --target-dir "$build" cargo-deny
fi

checks=(licenses bans sources)
case ${DENY_ADVISORIES:-auto} in
  required) checks+=(advisories) ;;
  auto)
    if GIT_TERMINAL_PROMPT=0 timeout 20 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
      checks+=(advisories)
    else
      echo "check-deps: github.com is unreachable, so RustSec advisories are NOT checked here (CI checks them)"
    fi ;;
  skip) ;;
  *) echo "check-deps: DENY_ADVISORIES must be auto, required or skip" >&2; exit 2 ;;
esac
echo "check-deps: cargo deny check ${checks[*]}"
# (--hide-inclusion-graph: "cargo deny check bans" without it says which
# crates pull each duplicate in.)
"$deny" --locked check --hide-inclusion-graph "${checks[@]}"
