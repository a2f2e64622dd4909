#!/bin/bash
# The shipped systemd units, rendered from systemd/*.in exactly as CMake installs them (with
# /usr/sbin and /etc), pass `systemd-analyze verify` with EMPTY output (it exits 0 on warnings),
# checked against a stage holding the standard units and the built binaries; and
# `systemd-analyze security --offline=true` scores each service at most THRESHOLD (default 20, i.e. 2.0 on the 0-10 scale shown).
source "$(dirname "$0")/lib.sh"
threshold=${RPYC_SECURITY_THRESHOLD:-20}
need_cmd systemd-analyze || { skip "systemd-analyze missing"; finish; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/usr/{lib/systemd,sbin,bin} "$stage/etc"
for d in lib sbin bin; do ln -s "usr/$d" "$stage/$d"; done
cp -a /lib/systemd/system "$stage/usr/lib/systemd/"
cp /bin/kill "$stage/usr/bin/"
cp "$RPYC_REGISTRYD" "$RPYC_CLASSICD" "$stage/usr/sbin/"
units=$stage/lib/systemd/system
cmake -DOUT="$units" -DSBINDIR=/usr/sbin -DSYSCONFDIR=/etc -P "$ROOT/systemd/render-units.cmake"
names=(rpyc-registryd.service rpyc-registryd.socket rpyc-classicd.service rpyc-classicd.socket
       rpyc-classicd-inetd.socket rpyc-classicd-inetd@.service)
for u in "${names[@]}"; do
  out=$(systemd-analyze verify --root="$stage" --man=no "$u" 2>&1)
  rc=$?
  if [[ $rc -eq 0 && -z $out ]]; then ok "verify $u: no output"; else bad "verify $u (rc $rc): $out"; fi
done
# The lint can fail: a broken copy must be reported.
sed 's/^Type=notify/Type=notifyy/' "$units/rpyc-registryd.service" >"$units/rpyc-broken.service"
out=$(systemd-analyze verify --root="$stage" --man=no rpyc-broken.service 2>&1)
[[ -n $out ]] && ok "verify reports a broken unit" || bad "verify accepted Type=notifyy"
rm -f "$units/rpyc-broken.service"

for u in rpyc-registryd.service rpyc-classicd.service rpyc-classicd-inetd@.service; do
  out=$(cd "$units" && systemd-analyze security --offline=true --threshold="$threshold" "./$u" 2>&1)
  rc=$?
  line=$(grep 'Overall exposure' <<<"$out")
  if ((rc == 0)) && [[ -n $line ]]; then ok "security $u: ${line#*: } (threshold $threshold)"
  else bad "security $u: ${line:-$out} (threshold $threshold)"; fi
done
# Every classicd unit carries the same sandbox (one template fragment).
for u in rpyc-classicd.service rpyc-classicd-inetd@.service; do
  check "$u has MemoryDenyWriteExecute=no with its reason" \
    grep -B2 -q '^MemoryDenyWriteExecute=no' "$units/$u"
done
finish
