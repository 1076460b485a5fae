#!/usr/bin/env bash
# Builds sealrun/busybox:latest (or $SEALRUN_BUSYBOX_IMAGE) FROM scratch with
# the host's static busybox, so that nothing is ever pulled from a registry.
# Does nothing if the image exists.
#
# The Dockerfile, where busybox is looked for and the check that it is static
# live in one place, sealrun_agent::image (agent/src/image.rs): the code
# `sealrun dev` and the test kit use. This script runs it through the
# `build-base-image` example of the agent crate.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo="${CARGO:-cargo}"
# `--workspace --examples`, not `run -p sealrun-agent`: the dependencies are
# built with the features the workspace's tests resolve, so the test build
# uses them as they are (with -p, a part of them would be built twice).
# The path of the executable is cargo's to say (a target directory or triple
# set elsewhere moves it).
example=$("$cargo" build --quiet --workspace --examples --message-format=json-render-diagnostics |
  { grep '"name":"build-base-image"' || true; } |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
: "${example:?cargo built no build-base-image example}"
exec "$example" ${SEALRUN_BUSYBOX_IMAGE:+"$SEALRUN_BUSYBOX_IMAGE"}
