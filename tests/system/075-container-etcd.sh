#!/bin/bash
# rpyc-registryd sharing through etcd under systemd (issue 15): boots the throw-away systemd
# container of 070 (tests/system/systemd-ct.sh), installs the rpyc-registryd .deb built by 050,
# and runs ct/etcd-inside.sh there: a throw-away etcd on the container's loopback (a transient
# unit), the shipped config pointed at it, the shipped unit started, a registration written to
# etcd and answered by a second registry, UNREGISTER, etcd stopped and started again, clean stop.
source "$(dirname "$0")/lib.sh"
need_root || { skip "needs root (systemd-nspawn)"; finish; }
need_cmd systemd-nspawn || { bad "systemd-nspawn missing (apt-get install --no-install-recommends systemd-container)"; finish; }
for c in etcd etcdctl; do
  need_cmd "$c" || { bad "$c missing (apt-get install etcd-server etcd-client)"; finish; }
done
compgen -G "$RPYC_SYSTEM_OUT/deb/rpyc-registryd_*.deb" >/dev/null || { bad "no .debs (run 050-deb first)"; finish; }
t0=$SECONDS
CT_ENV="SHIP=/ship" timeout 300 bash "$ROOT/tests/system/systemd-ct.sh" "$ROOT/tests/system/ct/etcd-inside.sh" \
  --bind-ro="$RPYC_SYSTEM_OUT:/ship"
rc=$?
echo "  container run: $((SECONDS - t0)) s"
((rc == 0)) || bad "checks inside the container failed (exit $rc)"
finish
