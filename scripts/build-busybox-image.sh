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
exec "${CARGO:-cargo}" run --quiet -p sealrun-agent --example build-base-image -- \
  ${SEALRUN_BUSYBOX_IMAGE:+"$SEALRUN_BUSYBOX_IMAGE"}
