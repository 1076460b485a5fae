#!/usr/bin/env bash
# The main job, end to end on this machine: provisions Docker and the base
# image, builds sealrun, starts `sealrun dev` (control plane + agent + demo
# target), seals a secret, runs a real command in a hardened throwaway
# container that prints the secret several ways, and shows that only `***`
# comes back. Leaves nothing running, and nothing behind unless it fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '\n\033[1;32m[demo]\033[0m %s\n' "$*" >&2; }

./scripts/provision.sh
say "building sealrun as users run it (cargo build --release)"
cargo build --release --quiet --bin sealrun
SEALRUN="$PWD/target/release/sealrun"
say "building the static sealrun-init shim: every run container starts with it, and it receives the secrets over stdin, never through Docker's config (scripts/build-init.sh)"
SEALRUN_AGENT_INIT="$(./scripts/build-init.sh)"
export SEALRUN_AGENT_INIT

DIR="$(mktemp -d /tmp/sealrun-demo.XXXXXX)"
PORT="${SEALRUN_DEMO_PORT:-18443}"
say "starting sealrun dev (data in $DIR, log in $DIR/dev.log)"
"$SEALRUN" dev --data-dir "$DIR" --listen "127.0.0.1:$PORT" >"$DIR/dev.log" 2>&1 &
DEV_PID=$!
cleanup() {
  local status=$?
  kill -INT "$DEV_PID" 2>/dev/null || true
  wait "$DEV_PID" 2>/dev/null || true
  # Its data and log are kept only if something went wrong, to look at.
  if [ "$status" -eq 0 ]; then
    rm -rf "$DIR"
  else
    echo "sealrun dev's data and log are kept in $DIR" >&2
  fi
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  [ -f "$DIR/dev.env" ] && break
  kill -0 "$DEV_PID" 2>/dev/null || { cat "$DIR/dev.log" >&2; echo "sealrun dev exited" >&2; exit 1; }
  sleep 0.1
done
[ -f "$DIR/dev.env" ] || { cat "$DIR/dev.log" >&2; echo "sealrun dev did not get ready" >&2; exit 1; }
# shellcheck disable=SC1091
source "$DIR/dev.env"

SECRET="correct-horse-battery-staple"
say "sealing DB_PASSWORD on this machine with the demo target's public key"
printf %s "$SECRET" | "$SEALRUN" secret set --target demo DB_PASSWORD
"$SEALRUN" secret list --target demo

say "running a command that prints the secret raw, base64, hex and split across writes"
set +e
"$SEALRUN" run --target demo --secret DB_PASSWORD -- sh -c '
  echo "raw:    $DB_PASSWORD"
  echo "base64: $(printf %s "$DB_PASSWORD" | base64)"
  echo "hex:    $(printf %s "$DB_PASSWORD" | od -An -tx1 | tr -d " \n")"
  printf "split:  %s" "${DB_PASSWORD%%-*}"; sleep 0.3; echo "-${DB_PASSWORD#*-}"
  echo "on stderr: $DB_PASSWORD" >&2
  echo "whoami: $(id -u), rootfs: $(touch /x 2>&1 || true)"
  exit 3' | tee "$DIR/out.txt"
CODE=${PIPESTATUS[0]}
set -e
say "the command exited 3 and sealrun exited $CODE"
if grep -q "$SECRET" "$DIR/out.txt"; then
  echo "FAIL: the secret appeared in the output" >&2
  exit 1
fi
[ "$CODE" -eq 3 ] || { echo "FAIL: expected exit code 3" >&2; exit 1; }

say "the stored log, as an auditor would read it"
RUN_ID="$("$SEALRUN" runs list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["id"])')"
"$SEALRUN" runs logs "$RUN_ID" 2>&1
say "the run as the control plane records it, checked against the outcome its agent signed (the run itself was signed by you, and the agent checked that before it opened the secret)"
"$SEALRUN" runs show "$RUN_ID"
say "the audit trail"
"$SEALRUN" audit list | tail -n 8
"$SEALRUN" audit verify
say "done: the secret never left the agent unmasked. (sealrun dev is stopped on exit)"
