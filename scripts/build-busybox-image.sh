#!/usr/bin/env bash
# Builds sealrun/busybox:latest FROM scratch with the host's static busybox, so
# that nothing is ever pulled from a registry. Does nothing if the image exists.
set -euo pipefail
IMAGE="${SEALRUN_BUSYBOX_IMAGE:-sealrun/busybox:latest}"
say() { printf '\033[1;34m[provision]\033[0m %s\n' "$*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "image $IMAGE is present"
  exit 0
fi
BUSYBOX="$(command -v busybox || true)"
[ -x /bin/busybox ] && BUSYBOX=/bin/busybox
if [ -z "$BUSYBOX" ] || ldd "$BUSYBOX" >/dev/null 2>&1; then
  echo "[provision] error: need a static busybox (apt-get install busybox-static)" >&2
  exit 1
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$BUSYBOX" "$ctx/busybox"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
CMD ["/bin/sh"]
DOCKERFILE
say "building $IMAGE FROM scratch with $BUSYBOX"
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" >/dev/null
say "built $IMAGE"
