#!/usr/bin/env bash
# Proves Cargo.toml's rust-version: the crate, its tests and benchmarks
# type-check with exactly that release (rustup installs it, minimal
# profile, if missing). Everything else builds with the release
# rust-toolchain.toml pins. The CI job `msrv` runs this.
set -euo pipefail
cd "$(dirname "$0")/.."

msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$msrv" ] || { echo "check-msrv: no rust-version in Cargo.toml" >&2; exit 1; }
rustup toolchain install "$msrv" --profile minimal --no-self-update
echo "check-msrv: cargo +$msrv check --locked --all-targets"
cargo "+$msrv" check --locked --all-targets
