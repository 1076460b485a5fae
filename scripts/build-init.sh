#!/usr/bin/env bash
# Builds the static sealrun-init shim, installs it where the agent looks for
# it, and prints the installed path.
#
#   path="$(scripts/build-init.sh)"
#
# Installed as $CARGO_TARGET_DIR/lib/sealrun/sealrun-init (default
# target/lib/sealrun/sealrun-init): beside target/debug/ and target/release/,
# in the lib/sealrun/ that `sealrun agent` and `sealrun dev` look for next to
# their bin directory when --init-binary is not given (as /usr/local/bin/sealrun
# finds /usr/local/lib/sealrun/sealrun-init). Cargo never writes there: a
# `cargo build` of the workspace writes its own, dynamically linked,
# target/debug/sealrun-init, which the agent does not look at, so no build order
# breaks `sealrun dev`. The file and its directories are mode 0755 (the agent
# refuses a shim, or a directory of it, that others can write).
#
# The binary runs in any Linux container, including FROM scratch images with no
# shell and no libc: glibc is linked statically (-C target-feature=+crt-static;
# no musl toolchain needed). It is built in its own target directory so that
# its RUSTFLAGS and profile never invalidate the normal build cache, with a
# size-tuned release profile set through Cargo's environment (opt-level "s",
# panic=abort, LTO, stripped) so the workspace's profiles stay untouched.
# Progress goes to stderr; stdout carries only the path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET="$(rustc -vV | sed -n 's/^host: //p')"
case "$TARGET" in
  *-linux-gnu) ;;
  *) echo "build-init: unsupported host target $TARGET (need *-linux-gnu)" >&2; exit 1 ;;
esac
TARGET_DIR="$PWD/target/init-static"

# Cargo prefers CARGO_ENCODED_RUSTFLAGS over RUSTFLAGS; an inherited one (e.g.
# when run from a build script or test) must not replace the flags below.
unset CARGO_ENCODED_RUSTFLAGS
# --target makes RUSTFLAGS apply to the shim and its dependencies only, not to
# build scripts and proc-macros, which cannot be linked statically.
CARGO_TARGET_DIR="$TARGET_DIR" \
RUSTFLAGS="-C target-feature=+crt-static" \
CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
CARGO_PROFILE_RELEASE_PANIC=abort \
CARGO_PROFILE_RELEASE_LTO=true \
CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
CARGO_PROFILE_RELEASE_STRIP=symbols \
CARGO_PROFILE_RELEASE_DEBUG=false \
  "${CARGO:-cargo}" build --quiet --release --target "$TARGET" \
    -p sealrun-init --bin sealrun-init >&2

BIN="$TARGET_DIR/$TARGET/release/sealrun-init"
# A dynamic binary would fail in a container without libc: refuse to hand one out.
linkage="$(ldd "$BIN" 2>&1 || true)"
case "$linkage" in
  *"statically linked"* | *"not a dynamic executable"*) ;;
  *) printf 'build-init: %s is not statically linked:\n%s\n' "$BIN" "$linkage" >&2; exit 1 ;;
esac

# Install it where the agent looks. Copied only when it differs, and renamed
# into place, so a shim that a running container has mounted is never
# rewritten under it.
chmod 0755 "$BIN"
LIB="${CARGO_TARGET_DIR:-$PWD/target}/lib"
mkdir -p "$LIB/sealrun"
chmod 0755 "$LIB" "$LIB/sealrun"
INSTALLED="$LIB/sealrun/sealrun-init"
if ! cmp -s "$BIN" "$INSTALLED"; then
  cp "$BIN" "$LIB/sealrun/.sealrun-init.tmp.$$" && chmod 0755 "$LIB/sealrun/.sealrun-init.tmp.$$" \
    && mv -f "$LIB/sealrun/.sealrun-init.tmp.$$" "$INSTALLED"
  echo "build-init: installed $INSTALLED" >&2
fi
echo "$INSTALLED"
