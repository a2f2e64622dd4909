#!/bin/bash
# Runs the system tests (tests/system/NNN-*.sh) in order; each prints what it checks and exits
# 0 (pass, possibly with skips) or 1. Usage: tests/system/run.sh [PATTERN...]
#   e.g. tests/system/run.sh 010 020   runs only those. Needs root for 050+ (packaging, nspawn).
# Environment: see lib.sh (RPYC_REGISTRYD, RPYC_CLASSICD, RPYC_SYSTEM_OUT, RPYC6_PATH).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
failed=() passed=0 skipped=()
start=$SECONDS
for t in "$here"/[0-9][0-9][0-9]-*.sh; do
  name=$(basename "$t" .sh)
  if (($#)); then
    match=0
    for p in "$@"; do [[ $name == *"$p"* ]] && match=1; done
    ((match)) || continue
  fi
  echo "=== $name"
  t0=$SECONDS
  log=$(mktemp)
  bash "$t" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if ((rc == 0)); then
    passed=$((passed + 1))
    grep -q '^  SKIP:' "$log" && skipped+=("$name")
    echo "=== $name: ok ($((SECONDS - t0)) s)"
  else
    failed+=("$name")
    echo "=== $name: FAILED ($((SECONDS - t0)) s)"
  fi
  rm -f "$log"
done
echo
echo "system tests: $passed passed, ${#failed[@]} failed, in $((SECONDS - start)) s"
((${#skipped[@]})) && echo "with skips: ${skipped[*]}"
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
exit 0
