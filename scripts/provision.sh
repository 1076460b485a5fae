#!/usr/bin/env bash
# Provisions what sealrun's demo and test suite need on a Debian/Ubuntu machine:
#   - a Docker engine (Debian's docker.io), started if its socket does not answer;
#   - the static busybox used to build the local base image, never pulled;
#   - PyNaCl, used by the vault's interop tests against libsodium;
#   - headless Chromium and its WebDriver (Debian's chromium and chromium-driver:
#     /usr/bin/chromium, /usr/bin/chromedriver), which the console's browser tests drive;
#   - PostgreSQL (Debian's postgresql), started, with a role `sealrun` (password `sealrun`,
#     loopback only) that may create databases: the control-plane suite runs against it too;
#   - the local image sealrun/busybox:latest, built FROM scratch.
# It is idempotent and says what it does. Source it or run it.
set -euo pipefail

say() { printf '\033[1;34m[provision]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[provision] error:\033[0m %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: run as root or install sudo"
  SUDO="sudo"
fi

if ! command -v cargo >/dev/null; then
  die "no Rust toolchain found: install one with rustup (https://rustup.rs), then re-run"
fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  say "installing Debian packages: $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
# busybox-static's binary runs in an image with no libc; ldd fails on it.
if ! { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }; then need_pkgs+=(busybox-static); fi
command -v python3 >/dev/null || need_pkgs+=(python3)
# The browser tests (sealrun_testkit::Browser) start these two by their paths.
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
[ -x /usr/bin/chromedriver ] || need_pkgs+=(chromium-driver)
command -v pg_lsclusters >/dev/null || need_pkgs+=(postgresql)
if [ "${#need_pkgs[@]}" -gt 0 ]; then apt_install "${need_pkgs[@]}"; fi

# The Docker engine.
if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    say "starting the Docker engine (systemctl start docker)"
    $SUDO systemctl start docker || true
  fi
fi
if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  say "starting dockerd in the background (log: /tmp/sealrun-dockerd.log)"
  $SUDO sh -c 'nohup dockerd >/tmp/sealrun-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && break
    sleep 0.5
  done
fi
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "the Docker engine did not start; see /tmp/sealrun-dockerd.log"
say "Docker engine $(docker version --format '{{.Server.Version}}') is answering"

# Chromium and chromedriver must be the same build: chromedriver refuses a browser of another major version.
say "browser: $(/usr/bin/chromium --version 2>/dev/null || echo '/usr/bin/chromium does not start'); $(/usr/bin/chromedriver --version 2>/dev/null | cut -d' ' -f1-2 || echo '/usr/bin/chromedriver does not start')"

# PostgreSQL: the first cluster, started if down, and the suite's role.
pg_cluster=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1" "$2}')
[ -n "$pg_cluster" ] || die "postgresql is installed but has no cluster (pg_createcluster)"
if ! pg_lsclusters --no-header | awk 'NR==1 {print $4}' | grep -q online; then
  say "starting PostgreSQL (pg_ctlcluster $pg_cluster start)"
  $SUDO pg_ctlcluster $pg_cluster start
fi
pg_port=$(pg_lsclusters --no-header | awk 'NR==1 {print $3}')
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
if ! as_postgres "psql -p $pg_port -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'sealrun'\"" | grep -q 1; then
  say "creating the PostgreSQL role sealrun (CREATEDB) for the test suite"
  as_postgres "psql -p $pg_port -qc \"CREATE ROLE sealrun LOGIN PASSWORD 'sealrun' CREATEDB\""
fi
# Dropping a test database WITH (FORCE) ends its sessions, autovacuum's included.
as_postgres "PGOPTIONS='-c client_min_messages=warning' psql -p $pg_port -qc 'GRANT pg_signal_backend TO sealrun'" >/dev/null
say "PostgreSQL $(as_postgres "psql -p $pg_port -tAc 'SHOW server_version'" | cut -d' ' -f1) is answering on port $pg_port"
export SEALRUN_PG_PORT="$pg_port"

# PyNaCl, for the vault's libsodium interop tests.
if ! python3 -c 'import nacl' >/dev/null 2>&1; then
  say "installing PyNaCl (pip) for the libsodium interop tests"
  python3 -m pip install -q pynacl 2>/dev/null \
    || python3 -m pip install -q --break-system-packages pynacl 2>/dev/null \
    || apt_install python3-nacl
fi

# The local base image: static busybox on an empty filesystem.
"$(dirname "${BASH_SOURCE[0]}")/build-busybox-image.sh"
