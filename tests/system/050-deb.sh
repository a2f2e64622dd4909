#!/bin/bash
# Builds the .debs from a copy of the tree with `dpkg-buildpackage -us -uc -b` (the unit tests at
# build time are skipped here with DEB_BUILD_OPTIONS=nocheck because CI has just run them; set
# RPYC_DEB_CHECK=1 to run them), gates on `lintian --fail-on error,warning`, and checks what the
# packages hold: files, conffiles under /etc, dependencies, and the maintainer scripts' policy
# (registryd enabled and started, classicd neither). Leaves the .debs in $RPYC_SYSTEM_OUT/deb
# and the staged install tree (for the rpm test) in $RPYC_SYSTEM_OUT/deb/rpyc-daemons-0.1.0/debian/tmp.
source "$(dirname "$0")/lib.sh"
need_root || { skip "needs root (dpkg-buildpackage as in CI)"; finish; }
for c in dpkg-buildpackage dh lintian; do
  need_cmd "$c" || { bad "$c missing (apt-get install debhelper lintian)"; finish; }
done
out=$RPYC_SYSTEM_OUT/deb
src=$out/rpyc-daemons-0.1.0
if [[ -n ${RPYC_DEB_REUSE:-} ]] && compgen -G "$out/rpyc-registryd_*.deb" >/dev/null; then
  skip "RPYC_DEB_REUSE: not rebuilt, checking the .debs already in $out"
else
rm -rf "$out"
mkdir -p "$src"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | grep -zv '^build/' |
  xargs -0 cp --parents -t "$src") || { bad "copying the tree"; finish; }
opts="parallel=$(nproc)"
[[ -n ${RPYC_DEB_CHECK:-} ]] || opts="nocheck $opts"
t0=$SECONDS
if (cd "$src" && DEB_BUILD_OPTIONS="$opts" dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1; then
  ok "dpkg-buildpackage -us -uc -b (DEB_BUILD_OPTIONS=$opts) in $((SECONDS - t0)) s"
else
  bad "dpkg-buildpackage failed; last lines:"
  tail -n 40 "$out/build.log"
  finish
fi
fi
changes=$(ls "$out"/rpyc-daemons_*.changes)
lint=$(lintian --fail-on error,warning "$changes" 2>&1)
rc=$?
echo "$lint" | sed 's/^/    lintian: /'
((rc == 0)) && ok "lintian --fail-on error,warning: exit 0" || bad "lintian: exit $rc"

reg=$(ls "$out"/rpyc-registryd_*.deb) cls=$(ls "$out"/rpyc-classicd_*.deb)
has() {  # has DEB PATH
  dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\.||' | grep -qxF "$2"
}
for f in /usr/sbin/rpyc-registryd /etc/rpyc/rpyc-registryd.toml /lib/systemd/system/rpyc-registryd.service \
  /lib/systemd/system/rpyc-registryd.socket /usr/share/man/man8/rpyc-registryd.8.gz \
  /usr/share/man/man5/rpyc-registryd.toml.5.gz /etc/logrotate.d/rpyc-registryd; do
  has "$reg" "$f" || bad "rpyc-registryd lacks $f"
done
for f in /usr/sbin/rpyc-classicd /etc/rpyc/rpyc-classicd.toml /etc/xinetd.d/rpyc-classicd \
  /lib/systemd/system/rpyc-classicd.service /lib/systemd/system/rpyc-classicd.socket \
  /lib/systemd/system/rpyc-classicd-inetd.socket /lib/systemd/system/rpyc-classicd-inetd@.service \
  /usr/share/man/man8/rpyc-classicd.8.gz /usr/share/man/man5/rpyc-classicd.toml.5.gz \
  /etc/logrotate.d/rpyc-classicd /usr/share/doc/rpyc-classicd/README.Debian \
  /lib/systemd/system/rpyc-classicd@.service /lib/systemd/system/rpyc-classicd@.socket \
  /usr/share/doc/rpyc-classicd/examples/example.toml /usr/share/doc/rpyc-classicd/examples/calculator.py; do
  has "$cls" "$f" || bad "rpyc-classicd lacks $f"
done
ok "package contents checked"
conff() { dpkg-deb -f "$1" >/dev/null; dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles 2>/dev/null; }
[[ $(conff "$reg" | sort | tr '\n' ' ') == "/etc/logrotate.d/rpyc-registryd /etc/rpyc/rpyc-registryd.toml " ]] &&
  ok "rpyc-registryd conffiles: $(conff "$reg" | tr '\n' ' ')" || bad "rpyc-registryd conffiles: $(conff "$reg")"
[[ $(conff "$cls" | sort | tr '\n' ' ') == "/etc/logrotate.d/rpyc-classicd /etc/rpyc/rpyc-classicd.toml /etc/xinetd.d/rpyc-classicd " ]] &&
  ok "rpyc-classicd conffiles: $(conff "$cls" | tr '\n' ' ')" || bad "rpyc-classicd conffiles: $(conff "$cls")"
dep=$(dpkg-deb -f "$cls" Depends)
[[ $dep == *libpython3.11* ]] && ok "rpyc-classicd Depends (shlibs) has libpython3.11" || bad "classicd Depends: $dep"
[[ $(dpkg-deb -f "$cls" Recommends) == *python3-rpyc* ]] && ok "rpyc-classicd Recommends python3-rpyc" ||
  bad "classicd Recommends: $(dpkg-deb -f "$cls" Recommends)"
dep=$(dpkg-deb -f "$reg" Depends)
[[ $dep == *libsystemd0* ]] && ok "rpyc-registryd Depends (shlibs) has libsystemd0" || bad "registryd Depends: $dep"
script() { dpkg-deb --ctrl-tarfile "$1" | tar -xO "./$2" 2>/dev/null; }
# dh_installsystemd: an enabled unit gets an unconditional `enable` and a deb-systemd-invoke
# start; a --no-enable one only keeps an admin's earlier choice (`debian-installed` guard).
pi_reg=$(script "$reg" postinst) pi_cls=$(script "$cls" postinst)
grep -q "deb-systemd-helper enable 'rpyc-registryd.service'" <<<"$pi_reg" &&
  grep -q "deb-systemd-invoke \$_dh_action 'rpyc-registryd.service'" <<<"$pi_reg" &&
  ok "rpyc-registryd postinst enables and starts rpyc-registryd.service" || bad "registryd postinst: $pi_reg"
grep -q "debian-installed 'rpyc-registryd.socket'" <<<"$pi_reg" &&
  ! grep -q "deb-systemd-invoke.*rpyc-registryd.socket" <<<"$pi_reg" &&
  ok "rpyc-registryd.socket: installed, not enabled or started" || bad "registryd socket in postinst"
n=0
for u in rpyc-classicd.service rpyc-classicd.socket rpyc-classicd-inetd.socket; do
  grep -q "debian-installed '$u'" <<<"$pi_cls" && n=$((n + 1))
done
((n == 3)) && ! grep -q deb-systemd-invoke <<<"$pi_cls" &&
  ok "rpyc-classicd postinst neither enables nor starts any unit" || bad "classicd postinst: $pi_cls"
# Hardening flags reached the binaries (PIE + BIND_NOW).
for b in rpyc-registryd rpyc-classicd; do
  f=$src/debian/$b/usr/sbin/$b
  readelf -d "$f" | grep -q 'FLAGS.*BIND_NOW' && readelf -h "$f" | grep -q 'DYN' &&
    ok "$b: PIE with BIND_NOW" || bad "$b: hardening flags missing"
done
ls "$out"/*.deb | sed 's|^|    built: |'
finish
