# Shared by the system tests (sourced). Paths, the classicd capability probe, small helpers.
# Environment:
#   RPYC_REGISTRYD, RPYC_CLASSICD  built binaries (default build/dev/daemons/...)
#   RPYC_SYSTEM_OUT                work and artifact dir (default build/system); the deb test
#                                  leaves the .debs and .rpms there for the container test
#   RPYC6_PATH                     the rpyc 6 client lib (default <repo>/../shared/clients/rpyc6)
set -u  # no pipefail: the tests pipe into grep -q, which may SIGPIPE the writer
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export RPYC_REGISTRYD=${RPYC_REGISTRYD:-$ROOT/build/dev/daemons/registryd/rpyc-registryd}
export RPYC_CLASSICD=${RPYC_CLASSICD:-$ROOT/build/dev/daemons/classicd/rpyc-classicd}
export RPYC_SYSTEM_OUT=${RPYC_SYSTEM_OUT:-$ROOT/build/system}
export RPYC6_PATH=${RPYC6_PATH:-$ROOT/../shared/clients/rpyc6}
PY=/usr/bin/python3  # Debian's interpreter with python3-rpyc 5.3.0; never the pyenv one
mkdir -p "$RPYC_SYSTEM_OUT"

FAILED=0
SKIPPED=0
ok() { echo "  ok: $*"; }
bad() { echo "  FAIL: $*"; FAILED=1; }
skip() { echo "  SKIP: $*"; SKIPPED=1; }
check() {  # check "what" CMD...: runs CMD, reports
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
finish() {  # the exit status of a test script
  if ((FAILED)); then echo "RESULT: FAIL"; exit 1; fi
  if ((SKIPPED)); then echo "RESULT: PASS (with skips)"; else echo "RESULT: PASS"; fi
  exit 0
}
need_root() { [[ $(id -u) -eq 0 ]]; }
need_cmd() { command -v "$1" >/dev/null 2>&1; }

# The classicd capability probe: issue 5 (the full runtime) adds -c/--config, --check-config
# and the stdio mode. Until a built binary has them, the tests that need them skip.
classicd_help() { "$RPYC_CLASSICD" --help 2>&1; }
classicd_has_config() { classicd_help | grep -q -- '--check-config'; }
classicd_has_stdio() { classicd_has_config && classicd_help | grep -q 'stdio'; }

# Switches listed by a binary's --help: every -x / --long-name that starts an option line.
help_switches() {  # help_switches BINARY
  "$1" --help 2>&1 | grep -E '^[[:space:]]+-' |
    sed -E 's/^[[:space:]]+//; s/[[:space:]].*//' | tr ',' '\n' | grep -E '^--?[A-Za-z]' |
    sed -E 's/[=[].*$//' | sort -u
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_listen() {  # wait_listen PORT: up to 5 s for a TCP listener (ss, so nothing is spawned)
  for _ in $(seq 50); do
    [[ -n $(ss -Hltn "sport = :$1") ]] && return 0
    sleep 0.1
  done
  return 1
}
