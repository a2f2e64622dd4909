#!/bin/bash
# Builds both binary RPMs from packaging/rpm/rpyc-daemons.spec with `rpmbuild -bb --nodeps` (Debian's
# rpm: no BuildRequires database, fallback macros in the spec). To stay within the CI budget it
# packages the install tree that 050-deb staged (--define rpyc_prebuilt); RPYC_RPM_FULL=1 makes
# the spec compile from its source tarball instead. Checks the file lists, config files, the
# %systemd_* scriptlets and the automatic library requirements. Leaves the .rpms in
# $RPYC_SYSTEM_OUT/rpm for the container test.
source "$(dirname "$0")/lib.sh"
need_root || { skip "needs root"; finish; }
need_cmd rpmbuild || { bad "rpmbuild missing (apt-get install rpm)"; finish; }
out=$RPYC_SYSTEM_OUT/rpm
stage=$RPYC_SYSTEM_OUT/deb/rpyc-daemons-0.1.0/debian/tmp
rm -rf "$out"
mkdir -p "$out/src/rpyc-daemons-0.1.0"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | grep -zv '^build/' |
  xargs -0 cp --parents -t "$out/src/rpyc-daemons-0.1.0")
tar -C "$out/src" -czf "$out/src/rpyc-daemons-0.1.0.tar.gz" rpyc-daemons-0.1.0
defs=(--define "_topdir $out/rpmbuild" --define "_sourcedir $out/src")
if [[ -z ${RPYC_RPM_FULL:-} ]]; then
  [[ -x $stage/usr/sbin/rpyc-registryd ]] || { bad "no staged tree at $stage (run 050-deb first)"; finish; }
  defs+=(--define "rpyc_prebuilt $stage")
fi
t0=$SECONDS
if rpmbuild -bb --nodeps "${defs[@]}" "$ROOT/packaging/rpm/rpyc-daemons.spec" >"$out/build.log" 2>&1; then
  ok "rpmbuild -bb --nodeps ($([[ -z ${RPYC_RPM_FULL:-} ]] && echo "staged tree" || echo "full build")) in $((SECONDS - t0)) s"
else
  bad "rpmbuild failed:"
  tail -n 30 "$out/build.log"
  finish
fi
find "$out/rpmbuild/RPMS" -name '*.rpm' -exec cp -t "$out" {} +
reg=$(ls "$out"/rpyc-registryd-0*.rpm) cls=$(ls "$out"/rpyc-classicd-0*.rpm)
for f in /usr/sbin/rpyc-registryd /etc/rpyc/rpyc-registryd.toml /usr/lib/systemd/system/rpyc-registryd.service \
  /usr/lib/systemd/system/rpyc-registryd.socket /usr/share/man/man8/rpyc-registryd.8; do
  rpm -qpl "$reg" 2>/dev/null | grep -q "^$f" || bad "registryd rpm lacks $f"
done
for f in /usr/sbin/rpyc-classicd /etc/rpyc/rpyc-classicd.toml /etc/xinetd.d/rpyc-classicd \
  /usr/lib/systemd/system/rpyc-classicd-inetd@.service /usr/share/man/man5/rpyc-classicd.toml.5 \
  /usr/lib/systemd/system/rpyc-classicd@.service /usr/lib/systemd/system/rpyc-classicd@.socket \
  /usr/share/doc/rpyc-classicd/examples/example.toml /usr/share/doc/rpyc-classicd/examples/calculator.py; do
  rpm -qpl "$cls" 2>/dev/null | grep -q "^$f" || bad "classicd rpm lacks $f"
done
ok "rpm file lists checked"
[[ $(rpm -qpc "$cls" 2>/dev/null | grep -c '^/etc/') == 3 ]] && ok "classicd rpm: 3 config files" ||
  bad "classicd config files: $(rpm -qpc "$cls")"
rpm -qp --scripts "$reg" 2>/dev/null | grep -q 'systemctl --no-reload preset rpyc-registryd.service\|systemd_post' &&
  rpm -qp --scripts "$reg" 2>/dev/null | grep -q 'disable --now\|systemd_preun' &&
  ok "registryd rpm has %systemd_post/%systemd_preun scriptlets" || bad "registryd scriptlets: $(rpm -qp --scripts "$reg")"
rpm -qpR "$cls" 2>/dev/null | grep -q 'libpython3.11' && ok "classicd rpm requires libpython3.11 (automatic)" ||
  bad "classicd requires: $(rpm -qpR "$cls" | tr '\n' ' ')"
ls "$out"/*.rpm | sed 's|^|    built: |'
finish
