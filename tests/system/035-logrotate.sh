#!/bin/bash
# The shipped etc/logrotate.d files, on the layout systemd makes for a DynamicUser= unit's
# LogsDirectory=: /var/log/NAME a symbolic link to /var/log/private/NAME (mode 0700 root), the
# directory owned by a uid with no passwd entry (the dynamic user, gone while the unit is
# stopped), mode 0755. Built in a private mount namespace with a tmpfs on /var/log, so the host's
# logs are untouched. Checks: `logrotate -d` parses each file with no error and considers the
# log; `logrotate -f` rotates it (NAME.log.1 holds the old lines). A "su" naming the dynamic user
# fails both (unknown user; stat: Permission denied): see the comment in the files.
# The container test (070) rotates a live rpyc-registryd's log and checks the SIGHUP reopen.
source "$(dirname "$0")/lib.sh"
need_root || { skip "needs root (unshare --mount)"; finish; }
need_cmd logrotate || { bad "logrotate missing (apt-get install logrotate; .ci/setup installs it)"; finish; }
for name in rpyc-registryd rpyc-classicd; do
  conf=$ROOT/etc/logrotate.d/$name
  out=$(unshare --mount --propagation private bash -s "$conf" "$name" <<'SH' 2>&1
set -u
conf=$1 name=$2 uid=64999
mount -t tmpfs -o mode=0755 tmpfs /var/log
mkdir -m 0700 /var/log/private
install -d -m 0755 -o $uid -g $uid /var/log/private/$name
ln -s private/$name /var/log/$name
echo "old line" >/var/log/$name/$name.log
chown $uid:$uid /var/log/$name/$name.log
state=$(mktemp)
logrotate -d -s "$state" "$conf" >/tmp/lr-d.$$ 2>&1
echo "debug-rc $?"
grep -i 'error\|skipping\|unknown' /tmp/lr-d.$$ | head -n3
grep -c "considering log /var/log/$name/$name.log" /tmp/lr-d.$$ | sed 's/^/considered /'
logrotate -f -s "$state" "$conf" 2>&1 | head -n3
echo "force-rc ${PIPESTATUS[0]}"
grep -q "old line" /var/log/$name/$name.log.1 && echo "rotated" || ls -ln /var/log/private/$name
rm -f "$state" /tmp/lr-d.$$
SH
  )
  if grep -q '^debug-rc 0$' <<<"$out" && grep -q '^considered 1$' <<<"$out" &&
    ! grep -qi 'error\|skipping\|unknown' <<<"$out"; then
    ok "$name: logrotate -d on the shipped file: exit 0, no error, the log considered"
  else
    bad "$name: logrotate -d: $(tr '\n' ' ' <<<"$out")"
  fi
  grep -q '^force-rc 0$' <<<"$out" && grep -q '^rotated$' <<<"$out" &&
    ok "$name: logrotate -f rotated $name.log under /var/log/private (uid without passwd entry)" ||
    bad "$name: logrotate -f: $(tr '\n' ' ' <<<"$out")"
  grep -Eq '^[[:space:]]*postrotate' "$conf" && grep -q "kill --kill-whom=main --signal=HUP $name.service" "$conf" &&
    ok "$name: postrotate sends SIGHUP to the main process (it reopens its log file)" ||
    bad "$name: postrotate does not SIGHUP $name.service"
done
finish
