#!/bin/bash
# Usage: systemd-ct.sh TEST_SCRIPT [extra systemd-nspawn args, e.g. --bind-ro=DIR:/ship]
# Boots a throw-away systemd (PID 1) container whose root is a tmpfs overlay over the host's own
# / (nothing reaches the host), with its own loopback; runs TEST_SCRIPT inside with bash (the
# variables in CT_ENV, "NAME=VALUE ...", are set for it); powers off. Exit: the script's status.
# The recipe of SYSTEM-TESTING.md §1 (flags and pitfalls explained there).
set -euo pipefail
TEST=$1
shift
NAME=rpycct$$
ROOTDIR=$(mktemp -d /tmp/ct-root.XXXXXX)
LOG=$(mktemp /tmp/ct-log.XXXXXX)
NSPID=
cleanup() {
  if [[ -n $NSPID ]]; then kill "$NSPID" 2>/dev/null && wait "$NSPID" 2>/dev/null || true; fi
  umount "$ROOTDIR" 2>/dev/null || true
  rmdir "$ROOTDIR" 2>/dev/null || true
  rm -rf "/run/systemd/nspawn/propagate/$NAME"
  rm -f "$LOG"
}
trap cleanup EXIT
mount --bind / "$ROOTDIR"  # non-recursive: only the root file system
systemd-nspawn -q -D "$ROOTDIR" --volatile=overlay --register=no --keep-unit \
  --link-journal=no --private-network --console=passive -M "$NAME" "$@" -b \
  </dev/null >"$LOG" 2>&1 &
NSPID=$!
LEADER=
# nspawn forks a short-lived intermediate child first: match on comm "systemd".
for _ in $(seq 100); do
  LEADER=$(pgrep -P "$NSPID" -x systemd || true)
  [[ -n $LEADER ]] && break
  sleep 0.1
done
[[ -n $LEADER ]] || { echo "container did not start"; cat "$LOG"; exit 1; }
state=
t0=$SECONDS
for _ in $(seq 600); do
  state=$(nsenter -t "$LEADER" -a systemctl is-system-running 2>/dev/null || true)
  case "$state" in running | degraded) break ;; esac
  sleep 0.2
done
echo "container $NAME up: $state ($((SECONDS - t0)) s)"
rc=0
# shellcheck disable=SC2086
nsenter -t "$LEADER" -a /usr/bin/env ${CT_ENV:-} /bin/bash -s <"$TEST" || rc=$?
nsenter -t "$LEADER" -a systemctl --no-block poweroff || true
wait "$NSPID" || true
NSPID=
exit $rc
