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
       rpyc-classicd-inetd.socket rpyc-classicd-inetd@.service rpyc-classicd@.service
       rpyc-classicd@.socket)
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

for u in rpyc-registryd.service rpyc-classicd.service rpyc-classicd-inetd@.service rpyc-classicd@.service; do
  out=$(cd "$units" && systemd-analyze security --offline=true --threshold="$threshold" "./$u" 2>&1)
  rc=$?
  line=$(grep 'Overall exposure' <<<"$out")
  if ((rc == 0)) && [[ -n $line ]]; then ok "security $u: ${line#*: } (threshold $threshold)"
  else bad "security $u: ${line:-$out} (threshold $threshold)"; fi
done
# Every classicd unit carries the same sandbox (one template fragment).
for u in rpyc-classicd.service rpyc-classicd-inetd@.service rpyc-classicd@.service; do
  check "$u has MemoryDenyWriteExecute=no with its reason" \
    grep -B2 -q '^MemoryDenyWriteExecute=no' "$units/$u"
done

# Issue 12: resource limits on every classicd service unit (client code may fork and allocate
# at will), a per-connection inetd@ instance bounded tighter than the whole daemon.
bytes() {  # bytes 2G -> 2147483648 (systemd's K/M/G/T suffixes, base 1024)
  local v=$1 m=1
  case $v in *K) m=1024 ;; *M) m=$((1024 ** 2)) ;; *G) m=$((1024 ** 3)) ;; *T) m=$((1024 ** 4)) ;; esac
  [[ ${v%[KMGT]} =~ ^[0-9]+$ ]] && echo $((${v%[KMGT]} * m))
}
unit_val() { sed -n "s/^$2=//p" "$units/$1" | tail -n1; }
declare -A mem tasks
for u in rpyc-classicd.service rpyc-classicd-inetd@.service rpyc-classicd@.service; do
  mem[$u]=$(bytes "$(unit_val "$u" MemoryMax)") tasks[$u]=$(unit_val "$u" TasksMax)
  if [[ -n ${mem[$u]} && ${tasks[$u]} =~ ^[0-9]+$ ]] && ((mem[$u] > 0 && tasks[$u] > 0)) &&
    grep -B12 '^MemoryMax=' "$units/$u" | grep -q '^# Resource limits'; then
    ok "$u: MemoryMax=$(unit_val "$u" MemoryMax) TasksMax=${tasks[$u]}, with their reason"
  else
    bad "$u: MemoryMax='$(unit_val "$u" MemoryMax)' TasksMax='${tasks[$u]}' (want finite values and a '# Resource limits' comment)"
  fi
done
s=rpyc-classicd.service i=rpyc-classicd-inetd@.service
if [[ -n ${mem[$s]} && -n ${mem[$i]} && -n ${tasks[$s]} && -n ${tasks[$i]} ]] &&
  ((mem[$i] < mem[$s] && tasks[$i] < tasks[$s])); then
  ok "a per-connection inetd@ instance is bounded tighter than rpyc-classicd.service"
else
  bad "inetd@ limits not below the service's"
fi
# rpyc-classicd@.service (a hosted service per instance): the classic service's limits and sandbox,
# and the same command line with the instance's configuration, checked before the start.
t=rpyc-classicd@.service
[[ ${mem[$t]} == "${mem[$s]}" && ${tasks[$t]} == "${tasks[$s]}" ]] &&
  ok "$t has rpyc-classicd.service's limits" || bad "$t limits: ${mem[$t]} ${tasks[$t]}"
strip_unit() { grep -v '^#' "$units/$1" | sed -n '/^DynamicUser=/,/^SystemCallErrorNumber=/p'; }
[[ -n $(strip_unit "$t") && $(strip_unit "$t") == "$(strip_unit "$s")" ]] &&
  ok "$t has rpyc-classicd.service's sandbox, setting for setting" || bad "$t: sandbox differs from $s"
grep -qx 'ExecStart=/usr/sbin/rpyc-classicd -c /etc/rpyc/%i.toml' "$units/$t" &&
  grep -qx 'ExecStartPre=/usr/sbin/rpyc-classicd -c /etc/rpyc/%i.toml --check-config' "$units/$t" &&
  ok "$t runs rpyc-classicd -c /etc/rpyc/%i.toml, checked first" || bad "$t ExecStart/ExecStartPre"
grep -qx 'ListenStream=/run/rpyc-classicd/%i.sock' "$units/rpyc-classicd@.socket" &&
  ok "rpyc-classicd@.socket: ListenStream=/run/rpyc-classicd/%i.sock" || bad "rpyc-classicd@.socket ListenStream"
# TasksMax must not undercut the shipped max-connections (one thread or child each): the
# daemon's own limit should refuse a connection with a warning before clone() fails.
maxc=$(sed -n 's/^max-connections = //p' "$ROOT/etc/rpyc/rpyc-classicd.toml")
[[ -n ${tasks[$s]} && -n $maxc ]] && ((tasks[$s] > maxc)) &&
  ok "TasksMax=${tasks[$s]} above the shipped max-connections = $maxc" ||
  bad "TasksMax='${tasks[$s]}' not above max-connections = '$maxc'"
sed 's/\\-/-/g' "$ROOT/man/rpyc-classicd.8" | grep -q "MemoryMax=$(unit_val "$s" MemoryMax)" &&
  sed 's/\\-/-/g' "$ROOT/man/rpyc-classicd.8" | grep -q "TasksMax=${tasks[$s]}" &&
  ok "rpyc-classicd.8 states the limits" || bad "rpyc-classicd.8 does not state MemoryMax=/TasksMax="
# Issue 12: while the shipped configurations and socket units listen on the loopback, every unit
# confines IP traffic to it, with a comment (unit) and docs (man page, sample config) saying how
# to open it with a drop-in.
loopback_conf() {  # loopback_conf FILE: host is 127.0.0.1/::1, or unset (default 127.0.0.1)
  local h
  h=$(sed -n 's/^host = "\(.*\)"/\1/p' "$1")
  [[ -z $h || $h == 127.0.0.1 || $h == ::1 ]]
}
check "shipped rpyc-registryd.toml listens on the loopback" loopback_conf "$ROOT/etc/rpyc-registryd.toml"
check "shipped rpyc-classicd.toml listens on the loopback" loopback_conf "$ROOT/etc/rpyc/rpyc-classicd.toml"
for u in "${names[@]}"; do
  # A Unix socket path (rpyc-classicd@.socket) is local too.
  if [[ $u == *.socket ]] && grep -E '^Listen(Stream|Datagram)=' "$units/$u" | grep -Eqv '=(127\.0\.0\.1:|/)'; then
    bad "$u listens beyond the loopback: $(grep -E '^Listen' "$units/$u" | tr '\n' ' ')"
  fi
  if grep -qx 'IPAddressAllow=localhost' "$units/$u" && grep -qx 'IPAddressDeny=any' "$units/$u" &&
    grep -B12 '^IPAddressAllow=localhost' "$units/$u" | grep -Eq '^#.*(IPAddressAllow=|see IPAddressDeny=)'; then
    ok "$u: IPAddressAllow=localhost IPAddressDeny=any, with how to open it"
  else
    bad "$u: no IPAddressAllow=localhost + IPAddressDeny=any with a comment on opening it"
  fi
done
for f in man/rpyc-classicd.8 man/rpyc-registryd.8 etc/rpyc/rpyc-classicd.toml etc/rpyc-registryd.toml; do
  sed 's/\\-/-/g' "$ROOT/$f" | grep -q 'IPAddressAllow=' && ok "$f says how to open IPAddressAllow=" ||
    bad "$f does not mention IPAddressAllow="
done
finish
