#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script):
# provision Docker + base image + PyNaCl, then formatting, lints, docs and every
# test, including the end-to-end ones against real Docker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '\033[1;34m[test]\033[0m %s\n' "$*" >&2; }

./scripts/provision.sh
# Docker-backed tests must never skip here: they fail instead when Docker is missing.
export SEALRUN_REQUIRE_DOCKER=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
say "rustdoc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
say "doctests"
cargo test --workspace --doc --quiet
say "building the binaries the end-to-end tests drive"
cargo build --workspace --bins --quiet
say "building the static sealrun-init shim every run container starts with"
./scripts/build-init.sh >/dev/null
if cargo nextest --version >/dev/null 2>&1; then
  say "cargo nextest run --workspace"
  cargo nextest run --workspace --no-fail-fast
else
  say "cargo test --workspace (cargo-nextest not installed)"
  cargo test --workspace --no-fail-fast
fi
