#!/bin/bash
# The real thing: boots systemd as PID 1 in a throw-away nspawn container over a tmpfs overlay of
# the host root (tests/system/systemd-ct.sh), installs the .debs built by 050 with apt, and runs
# ct/inside.sh there: postinst state, verify with man pages, rpyc-registryd queried with rpyc's
# registry clients, STATUS=, journalctl -u and journal fields, reload, clean stop, socket
# activation via the shipped .socket, the classicd units (when its binary has the issue-5
# runtime), purge, then the .rpms from 060 with rpm -ivh --nodeps.
source "$(dirname "$0")/lib.sh"
need_root || { skip "needs root (systemd-nspawn)"; finish; }
need_cmd systemd-nspawn || { bad "systemd-nspawn missing (apt-get install --no-install-recommends systemd-container)"; finish; }
compgen -G "$RPYC_SYSTEM_OUT/deb/rpyc-registryd_*.deb" >/dev/null || { bad "no .debs (run 050-deb first)"; finish; }
args=(--bind-ro="$RPYC_SYSTEM_OUT:/ship")
env="SHIP=/ship"
if [[ -d $RPYC6_PATH/rpyc ]]; then
  args+=(--bind-ro="$(cd "$RPYC6_PATH" && pwd -P):/rpyc6")
  env+=" RPYC6=/rpyc6"
fi
if [[ -n ${RPYC_SYSTEM_FAKE_CLASSICD:-} ]]; then  # harness dry run only, see ct/fake-classicd.py
  cp "$ROOT/tests/system/ct/fake-classicd.py" "$RPYC_SYSTEM_OUT/fake-classicd"
  env+=" FAKE_CLASSICD=/ship/fake-classicd"
  skip "RPYC_SYSTEM_FAKE_CLASSICD: rpyc-classicd replaced by a Python stand-in inside the container"
fi
t0=$SECONDS
CT_ENV=$env timeout 300 bash "$ROOT/tests/system/systemd-ct.sh" "$ROOT/tests/system/ct/inside.sh" "${args[@]}"
rc=$?
echo "  container run: $((SECONDS - t0)) s"
((rc == 0)) || bad "checks inside the container failed (exit $rc)"
finish
