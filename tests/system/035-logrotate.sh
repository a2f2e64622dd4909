#!/bin/bash
# The shipped etc/logrotate.d files, on the layout systemd makes for a DynamicUser= unit's
# LogsDirectory=: /var/log/NAME a symbolic link to /var/log/private/NAME (mode 0700 root), the
# directory owned by a uid with no passwd entry (the dynamic user, gone while the unit is
# stopped), mode 0755. Built in a private mount namespace with a tmpfs on /var/log, so the host's
# logs are untouched. The daemon runs for real, as that uid, logging into the directory.
# Checks: `logrotate -d` parses each file with no error and considers the log; `logrotate -f`
# rotates it (NAME.log.1 holds the old lines) and its postrotate reopens the daemon's log: the
# daemon's next lines land in the new NAME.log, and it did not reload its configuration. There
# is no systemd here, so the postrotate line is run with `systemctl` replaced by a shell
# function that sends the same signal to the daemon's pid (the container test 070 runs the
# real systemctl). A "su" naming the dynamic user fails both (unknown user; stat: Permission
# denied): see the comment in the files.
source "$(dirname "$0")/lib.sh"
need_root || { skip "needs root (unshare --mount)"; finish; }
need_cmd logrotate || { bad "logrotate missing (apt-get install logrotate; .ci/setup installs it)"; finish; }
need_cmd setpriv || { skip "setpriv missing (util-linux)"; finish; }
for name in rpyc-registryd rpyc-classicd; do
  conf=$ROOT/etc/logrotate.d/$name
  grep -Eq '^[[:space:]]*postrotate' "$conf" &&
    grep -q "systemctl kill --kill-whom=main --signal=USR2 $name.service" "$conf" &&
    ok "$name: postrotate sends SIGUSR2 (reopen the log, no reload) to the main process" ||
    bad "$name: postrotate does not send SIGUSR2 to $name.service"
  bin=$RPYC_REGISTRYD args=(-m TCP)
  [[ $name == rpyc-classicd ]] && bin=$RPYC_CLASSICD args=()
  [[ -x $bin ]] || { bad "$name: $bin not built"; continue; }
  out=$(unshare --mount --propagation private bash -s "$conf" "$name" "$bin" "$(free_port)" \
    "${args[@]}" <<'SH' 2>&1
set -u
conf=$1 name=$2 bin=$3 port=$4
shift 4
uid=64999
mount -t tmpfs -o mode=0755 tmpfs /var/log
mkdir -m 0700 /var/log/private
install -d -m 0755 -o $uid -g $uid /var/log/private/$name
ln -s private/$name /var/log/$name
log=/var/log/$name/$name.log
# The daemon's own mount namespace, as systemd makes it for the unit: /var/log/private is
# reachable there (a 0755 tmpfs with the real directory bind-mounted in); outside, logrotate
# sees the root-only layout.
keep=$(mktemp -d)
unshare --mount --propagation private sh -c '
  name=$1 uid=$2 keep=$3; shift 3
  mount --bind /var/log/private/$name "$keep"
  mount -t tmpfs -o mode=0755 tmpfs /var/log/private
  mkdir /var/log/private/$name; mount --bind "$keep" /var/log/private/$name
  exec env -u JOURNAL_STREAM setpriv --reuid=$uid --regid=$uid --clear-groups "$@"' \
  sh "$name" $uid "$keep" "$bin" -p "$port" --logfile "$log" "$@" </dev/null >/tmp/lr-out.$$ 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q . "$log" 2>/dev/null && break; sleep 0.1; done
kill -USR1 $pid
for _ in $(seq 50); do grep -q ':status: ' "$log" 2>/dev/null && break; sleep 0.1; done
grep -q ':status: ' "$log" && echo "daemon logging"
# The postrotate line as shipped, with systemctl standing for systemd: the signal it names
# goes to the daemon's pid.
sed "s|^\([[:space:]]*\)systemctl kill --kill-whom=main --signal=\([A-Z0-9]*\) $name.service|\1kill -\2 $pid|" \
  "$conf" >/tmp/lr-conf.$$
grep -q "kill -USR2 $pid" /tmp/lr-conf.$$ || echo "postrotate not rewritten"
state=$(mktemp)
logrotate -d -s "$state" "$conf" >/tmp/lr-d.$$ 2>&1
echo "debug-rc $?"
grep -i 'error\|skipping\|unknown' /tmp/lr-d.$$ | head -n3
grep -c "considering log $log" /tmp/lr-d.$$ | sed 's/^/considered /'
logrotate -f -s "$state" /tmp/lr-conf.$$ 2>&1 | head -n3
echo "force-rc ${PIPESTATUS[0]}"
for _ in $(seq 50); do [[ -s $log ]] && break; sleep 0.1; done
kill -USR1 $pid
for _ in $(seq 50); do grep -q ':status: ' "$log" 2>/dev/null && break; sleep 0.1; done
grep -q ':status: ' "$log.1" && grep -q ':status: ' "$log" && ! grep -q 'SIGUSR2' "$log.1" &&
  echo "rotated, logging into the new file" || { ls -ln /var/log/private/$name; tail -n3 "$log"*; }
grep -q 'reload' "$log" "$log.1" && echo "reloaded"
kill -0 $pid 2>/dev/null && echo "daemon alive"
kill -TERM $pid
wait $pid
echo "daemon-rc $?"
grep -v '^ *$' /tmp/lr-out.$$ | head -n3
rm -f "$state" /tmp/lr-d.$$ /tmp/lr-conf.$$ /tmp/lr-out.$$
rmdir "$keep"
SH
  )
  grep -q '^daemon logging$' <<<"$out" && ok "$name runs as uid 64999 logging into its LogsDirectory" ||
    bad "$name did not log: $(tr '\n' ' ' <<<"$out")"
  if grep -q '^debug-rc 0$' <<<"$out" && grep -q '^considered 1$' <<<"$out" &&
    ! grep -qi 'error\|skipping\|unknown' <<<"$out"; then
    ok "$name: logrotate -d on the shipped file: exit 0, no error, the log considered"
  else
    bad "$name: logrotate -d: $(tr '\n' ' ' <<<"$out")"
  fi
  grep -q '^force-rc 0$' <<<"$out" && grep -q '^rotated, logging into the new file$' <<<"$out" &&
    ! grep -q '^reloaded$' <<<"$out" && grep -q '^daemon alive$' <<<"$out" &&
    grep -q '^daemon-rc 0$' <<<"$out" &&
    ok "$name: logrotate -f rotated $name.log; the daemon reopened it (SIGUSR2, no reload) and logs into the new file" ||
    bad "$name: logrotate -f: $(tr '\n' ' ' <<<"$out")"
done
finish
