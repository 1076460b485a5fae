#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script):
# provision Docker + base image + PyNaCl + Chromium, then formatting, lints, docs and every
# test, including the end-to-end ones against real Docker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '\033[1;34m[test]\033[0m %s\n' "$*" >&2; }

# One build, run once: incremental caches (a copy of each workspace crate's
# objects per target) would only cost disk, several GB of it, and a CI machine
# ran out of disk with them. Export CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

./scripts/provision.sh
# Docker-backed tests must never skip here: they fail instead when Docker is missing.
export SEALRUN_REQUIRE_DOCKER=1
# Browser tests likewise: they fail when chromium or chromedriver is missing.
export SEALRUN_REQUIRE_BROWSER=1
# PostgreSQL tests (replicas, migrate-store) likewise, on the cluster provision.sh started.
export SEALRUN_REQUIRE_POSTGRES=1
export SEALRUN_TEST_DATABASE_URL="postgres://sealrun:sealrun@127.0.0.1:$(pg_lsclusters --no-header | awk 'NR==1 {print $3}')/postgres"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
say "rustdoc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
say "doctests"
cargo test --workspace --doc --quiet
# The shim first, the workspace after: the order in which a workspace build
# used to leave `sealrun dev` with cargo's dynamic sealrun-init (the agent now
# looks where build-init.sh installs it, target/lib/sealrun/, where cargo never
# writes; tests/dev_shim.rs checks that `sealrun dev` starts after this).
say "building the static sealrun-init shim every run container starts with"
./scripts/build-init.sh >/dev/null
say "building the binaries the end-to-end tests drive"
cargo build --workspace --bins --quiet
# sealrun containers already on the engine (another agent's runs, a killed
# earlier run of this script) are not this run's: only new ones count below.
# Every container an agent makes carries `sealrun.agent` (a run's also
# `sealrun.run`, a warm pool member's `sealrun.pool`).
sealrun_containers() {
  { docker ps -aq --no-trunc --filter label=sealrun.agent
    docker ps -aq --no-trunc --filter label=sealrun.run; } | sort -u
}
before=$(sealrun_containers)
status=0
if cargo nextest --version >/dev/null 2>&1; then
  say "cargo nextest run --workspace"
  cargo nextest run --workspace --no-fail-fast || status=$?
else
  say "cargo test --workspace (cargo-nextest not installed)"
  cargo test --workspace --no-fail-fast || status=$?
fi
# Every test removes what it created: a sealrun container that appeared
# during the run and is still on the engine is a leak, and fails the run.
after=$(sealrun_containers)
left=$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d')
if [ -n "$left" ]; then
  say "FAILED: the test suite left sealrun containers behind:"
  for id in $left; do
    docker ps -a --no-trunc --filter "id=$id" --format '  {{.ID}} {{.Status}} {{.Labels}}' >&2
  done
  docker rm -f $left >/dev/null
  exit 1
fi
say "no sealrun container left on the engine"

# The control-plane suite again, every server on a PostgreSQL database of its
# own (testkit/src/postgres.rs): the same tests, the other backend.
pg_url="$SEALRUN_TEST_DATABASE_URL"
say "the control-plane suite (api/tests) again, on PostgreSQL"
if cargo nextest --version >/dev/null 2>&1; then
  # --workspace with a filter, not -p: the binaries built above, as built
  # (-p resolves the dependencies' features for one package and builds them
  # all again).
  SEALRUN_TEST_STORE=postgres cargo nextest run --workspace -E 'package(sealrun-api)' --no-fail-fast || status=$?
else
  SEALRUN_TEST_STORE=postgres cargo test -p sealrun-api --no-fail-fast || status=$?
fi
# Servers in a caller's directory may leave their database: drop them all.
left_dbs=$(psql "$pg_url" -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'sealrun\_t\_%'")
for db in $left_dbs; do psql "$pg_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done
say "no test database left on PostgreSQL"
exit "$status"
