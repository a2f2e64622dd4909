# Runs INSIDE the throw-away systemd container (tests/system/070-container.sh), as root, with
# the built packages under $SHIP (deb/*.deb, rpm/*.rpm) and rpyc 6 under $RPYC6 if present.
# Prints one line per check; exits 1 if any failed.
set -u
fail=0
ok() { echo "  ok: $*"; }
bad() { echo "  FAIL: $*"; fail=1; }
skip() { echo "  SKIP: $*"; }
PY=/usr/bin/python3
export DEBIAN_FRONTEND=noninteractive
wait_state() {  # wait_state UNIT STATE [tenths]: poll systemctl is-active
  for _ in $(seq "${3:-50}"); do
    [[ $(systemctl is-active "$1" 2>/dev/null) == "$2" ]] && return 0
    sleep 0.1
  done
  return 1
}
prop() { systemctl show -p "$2" --value "$1"; }
status_text() {  # status_text UNIT: waits up to 3 s for a STATUS= line
  local s
  for _ in $(seq 30); do s=$(prop "$1" StatusText); [[ -n $s ]] && break; sleep 0.1; done
  echo "$s"
}
journal_has() {  # journal_has PATTERN journalctl-args...: waits up to 3 s
  local pat=$1
  shift
  for _ in $(seq 30); do
    journalctl --no-pager "$@" 2>/dev/null | grep -q -- "$pat" && return 0
    sleep 0.1
  done
  return 1
}
registry() {  # registry udp|tcp register|discover NAME: prints the result
  "$PY" - "$@" <<'PYEOF'
import sys
from rpyc.utils.registry import UDPRegistryClient, TCPRegistryClient
kind, op, name = sys.argv[1:4]
cls = UDPRegistryClient if kind == "udp" else TCPRegistryClient
c = cls(ip="127.0.0.1", port=18811, timeout=3)
print(c.register((name,), 12345) if op == "register" else c.discover(name))
PYEOF
}

# policy-rc.d of the image would stop postinst from starting units, as on a real system it does not.
rm -f /usr/sbin/policy-rc.d
t0=$SECONDS
if apt-get install -y -q "$SHIP"/deb/rpyc-registryd_*.deb "$SHIP"/deb/rpyc-classicd_*.deb >/tmp/apt.log 2>&1; then
  ok "apt-get install ./rpyc-registryd_*.deb ./rpyc-classicd_*.deb ($((SECONDS - t0)) s)"
else
  bad "apt-get install: $(tail -n 20 /tmp/apt.log)"
  exit 1
fi

if [[ -n ${FAKE_CLASSICD:-} ]]; then  # dry run of the harness only (070-container.sh)
  install -m 755 "$FAKE_CLASSICD" /usr/sbin/rpyc-classicd
  echo "  NOTE: /usr/sbin/rpyc-classicd replaced by a Python stand-in (harness dry run)"
fi

# ---- installed state
units=(rpyc-registryd.service rpyc-registryd.socket rpyc-classicd.service rpyc-classicd.socket
       rpyc-classicd-inetd.socket rpyc-classicd-inetd@.service rpyc-classicd@.service
       rpyc-classicd@.socket)
out=$(cd /lib/systemd/system && systemd-analyze verify "${units[@]}" 2>&1)
[[ -z $out ]] && ok "systemd-analyze verify (man pages resolved too) on the installed units: no output" ||
  bad "verify: $out"
for p in rpyc-registryd rpyc-classicd rpyc-registryd.toml rpyc-classicd.toml; do
  man -w "$p" >/dev/null 2>&1 || bad "man $p not found"
done
ok "man pages installed and found by man -w"
wait_state rpyc-registryd.service active && ok "rpyc-registryd.service started by postinst" ||
  bad "rpyc-registryd.service: $(systemctl is-active rpyc-registryd.service)"
[[ $(systemctl is-enabled rpyc-registryd.service) == enabled ]] && ok "rpyc-registryd.service enabled" ||
  bad "rpyc-registryd.service is $(systemctl is-enabled rpyc-registryd.service)"
for u in rpyc-registryd.socket rpyc-classicd.service rpyc-classicd.socket rpyc-classicd-inetd.socket; do
  e=$(systemctl is-enabled "$u" 2>&1) a=$(systemctl is-active "$u" 2>&1)
  [[ $e == disabled && $a == inactive ]] && ok "$u: disabled, inactive" || bad "$u: $e, $a"
done

# ---- issue 12: resource limits and loopback-only IP, as systemd loaded them from the shipped units
for u in rpyc-classicd.service rpyc-classicd-inetd@probe.service; do
  m=$(prop "$u" MemoryMax) t=$(prop "$u" TasksMax)
  [[ $m =~ ^[0-9]+$ && $t =~ ^[0-9]+$ ]] && ok "$u: MemoryMax=$m TasksMax=$t" || bad "$u: MemoryMax=$m TasksMax=$t"
done
for u in rpyc-registryd.service rpyc-registryd.socket rpyc-classicd.service rpyc-classicd.socket \
  rpyc-classicd-inetd.socket rpyc-classicd-inetd@probe.service; do
  a=$(prop "$u" IPAddressAllow) d=$(prop "$u" IPAddressDeny)
  [[ $a == *127.0.0.0/8* && $a == *::1/128* && $d == *0.0.0.0/0* && $d == *::/0* ]] &&
    ok "$u: IPAddressAllow=$a IPAddressDeny=$d" || bad "$u: IPAddressAllow='$a' IPAddressDeny='$d'"
done
# Whether this machine enforces them at all (cgroup BPF; not in this CI's sandbox, with either
# cgroup layout): a transient unit with IPAddressDeny=any connecting to the loopback gets EPERM
# where it is enforced, ECONNREFUSED (nothing listens on port 9) where not. Either way systemd
# starts the units (checked below).
probe_deny=$(systemd-run -q --wait --pipe -p IPAddressDeny=any "$PY" -c '
import errno, socket
try:
    socket.create_connection(("127.0.0.1", 9)); print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))' 2>&1)
if [[ $probe_deny == EPERM ]]; then
  ip_enforced=1
  echo "  NOTE: a transient unit with IPAddressDeny=any gets EPERM: IPAddressDeny= is enforced here"
else
  ip_enforced=0
  echo "  NOTE: IPAddressDeny= is not enforced here (cgroup $(stat -fc %T /sys/fs/cgroup)): a transient unit with IPAddressDeny=any connecting to 127.0.0.1:9 gets $probe_deny"
fi

# ---- rpyc-registryd under systemd
r=$(registry udp register SHIPTEST 2>&1)
[[ $r == True ]] && ok "rpyc 5.3.0 UDPRegistryClient.register -> True" || bad "register: $r"
r=$(registry udp discover SHIPTEST 2>&1)
[[ $r == "(('127.0.0.1', 12345),)" ]] && ok "discover SHIPTEST -> $r" || bad "discover: $r"
for _ in $(seq 30); do  # STATUS= is refreshed each second when the counts change
  s=$(prop rpyc-registryd.service StatusText)
  [[ $s == 1\ service* ]] && break
  sleep 0.1
done
[[ $s == 1\ service* ]] && ok "StatusText follows the registration: $s" || bad "StatusText: '$s'"
journal_has . -u rpyc-registryd.service -o cat && ok "journalctl -u rpyc-registryd: $(journalctl -u rpyc-registryd -o cat --no-pager | wc -l) lines" ||
  bad "journalctl -u rpyc-registryd is empty"
journal_has SHIPTEST -u rpyc-registryd.service RPYC_SERVICE=SHIPTEST -o cat &&
  ok "journal field RPYC_SERVICE=SHIPTEST: $(journalctl -u rpyc-registryd RPYC_SERVICE=SHIPTEST -o cat --no-pager | head -n1)" ||
  bad "no journal entry with RPYC_SERVICE=SHIPTEST"
journal_has RPYC_PEER=127.0.0.1 -u rpyc-registryd.service -o verbose && ok "journal field RPYC_PEER present" ||
  bad "no RPYC_PEER field"
pid=$(prop rpyc-registryd.service MainPID)
user=$(ps -o user= -p "$pid")
[[ $user != root ]] && ok "runs as dynamic user $user" || bad "runs as root"
systemctl reload rpyc-registryd.service && sleep 0.3 &&
  [[ $(prop rpyc-registryd.service MainPID) == "$pid" && $(systemctl is-active rpyc-registryd) == active ]] &&
  journal_has 'reload' -u rpyc-registryd.service -o cat &&
  ok "systemctl reload: same pid, still active, 'reload' logged" || bad "reload"
systemctl stop rpyc-registryd.service
[[ $(systemctl is-active rpyc-registryd.service) == inactive && $(prop rpyc-registryd.service Result) == success ]] &&
  ok "systemctl stop: inactive, Result=success" ||
  bad "stop: $(systemctl is-active rpyc-registryd.service) $(prop rpyc-registryd.service Result)"

# ---- socket activation through the shipped rpyc-registryd.socket
systemctl start rpyc-registryd.socket
[[ $(systemctl is-active rpyc-registryd.service) == inactive ]] && ok "socket up, service not started yet" ||
  bad "service active before the first datagram"
r=$(registry udp register SOCKTEST 2>&1)
[[ $r == True ]] && ok "first datagram started the service; register -> True" || bad "socket-activated register: $r"
r=$(registry tcp discover SOCKTEST 2>&1)
[[ $r == "(('127.0.0.1', 12345),)" ]] && ok "TCP discover over the inherited stream socket -> $r" ||
  bad "TCP discover: $r"
wait_state rpyc-registryd.service active && ok "rpyc-registryd.service active (socket-activated)" || bad "not active"
journal_has inherited -u rpyc-registryd.service -o cat && ok "journal: served the inherited sockets" ||
  bad "no 'inherited' line"
systemctl stop rpyc-registryd.socket rpyc-registryd.service
[[ $(prop rpyc-registryd.service Result) == success ]] && ok "socket-activated stop: Result=success" ||
  bad "socket stop: $(prop rpyc-registryd.service Result)"

# ---- the shipped /etc/logrotate.d/rpyc-registryd on a real log file under LogsDirectory=
if command -v logrotate >/dev/null; then
  cp /etc/rpyc/rpyc-registryd.toml /tmp/registryd.toml.orig
  sed -i 's|^logfile = .*|logfile = "/var/log/rpyc-registryd/registryd.log"|' /etc/rpyc/rpyc-registryd.toml
  systemctl start rpyc-registryd.service && wait_state rpyc-registryd.service active
  log=/var/log/rpyc-registryd/registryd.log
  registry udp register LOGONE >/dev/null 2>&1
  for _ in $(seq 30); do grep -q LOGONE "$log" 2>/dev/null && break; sleep 0.1; done
  out=$(logrotate -d -s /tmp/lr.state /etc/logrotate.d/rpyc-registryd 2>&1)
  rc=$?
  ((rc == 0)) && ! grep -qi 'error\|skipping' <<<"$out" && grep -q "considering log $log" <<<"$out" &&
    ok "logrotate -d /etc/logrotate.d/rpyc-registryd: exit 0, no error, considers $log" ||
    bad "logrotate -d (rc $rc): $(grep -i 'error\|skipping' <<<"$out" | head -n3)"
  out=$(logrotate -f -s /tmp/lr.state /etc/logrotate.d/rpyc-registryd 2>&1)
  rc=$?
  registry udp register LOGTWO >/dev/null 2>&1
  for _ in $(seq 30); do grep -q LOGTWO "$log" 2>/dev/null && break; sleep 0.1; done
  ((rc == 0)) && grep -q LOGONE "$log.1" && ! grep -q LOGTWO "$log.1" && grep -q LOGTWO "$log" &&
    grep -q 'SIGUSR2: log file reopened' "$log" && ! grep -q 'reload' "$log" "$log.1" &&
    ok "logrotate -f: $log.1 holds the old lines, the daemon reopened $log on SIGUSR2 without a reload ($(stat -c %U "$log"))" ||
    bad "logrotate -f (rc $rc: $out): $(ls -l /var/log/rpyc-registryd/ 2>&1 | tr '\n' ' ')"
  systemctl stop rpyc-registryd.service
  cp /tmp/registryd.toml.orig /etc/rpyc/rpyc-registryd.toml
else
  bad "logrotate missing (apt-get install logrotate; .ci/setup installs it)"
fi

# ---- rpyc-classicd (needs the issue-5 runtime: -c, --check-config, notify, stdio)
if /usr/sbin/rpyc-classicd --help 2>&1 | grep -q -- --check-config; then
  client='
import sys, rpyc
c = rpyc.classic.connect("127.0.0.1", 18812)
assert c.eval("6*7") == 42
os = c.modules.os
try:
    c.builtins.open("/etc/rpyc-write-test", "w"); ro = "writable"
except OSError as e:
    ro = "read-only"
print(os.getpid(), os.getuid(), os.getcwd(), ro)
'
  systemctl enable --now rpyc-classicd.service && wait_state rpyc-classicd.service active &&
    ok "systemctl enable --now rpyc-classicd" || bad "classicd start: $(systemctl status rpyc-classicd --no-pager | tail)"
  r=$("$PY" -c "$client" 2>&1)
  nclients=1
  read -r rpid ruid rcwd rro <<<"$r"
  [[ $rpid == "$(prop rpyc-classicd.service MainPID)" && $ruid != 0 && $rcwd == /var/lib/*rpyc-classicd && $rro == read-only ]] &&
    ok "rpyc 5.3.0 client: 6*7, pid $rpid, uid $ruid, cwd $rcwd, /etc $rro" || bad "classicd client: $r"
  if [[ -d ${RPYC6:-/nonexistent}/rpyc && -z ${FAKE_CLASSICD:-} ]]; then  # (the stand-in speaks rpyc 5 only)
    r=$(PYTHONPATH=$RPYC6 "$PY" -c "$client" 2>&1)
    nclients=2
    [[ $r == *read-only ]] && ok "rpyc 6 client: $r" || bad "rpyc 6 client: $r"
  fi
  # IPAddressDeny=any: client code connecting to a non-loopback address of this host. Without the
  # filter the kernel answers ECONNREFUSED (nothing listens); with it, connect() fails EPERM.
  ip addr add 10.199.0.1/32 dev lo 2>/dev/null || true
  r=$("$PY" -c '
import errno, rpyc
c = rpyc.classic.connect("127.0.0.1", 18812)
s = c.modules.socket.socket()
try:
    s.connect(("10.199.0.1", 9)); print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
' 2>&1)
  nclients=$((nclients + 1))
  if ((ip_enforced)); then
    [[ $r == EPERM ]] && ok "IPAddressDeny=any enforced: client code connecting to 10.199.0.1 gets $r" ||
      bad "client code connecting to 10.199.0.1: $r (want EPERM)"
  else
    echo "  NOTE: IPAddressDeny= not enforced here: client code connecting to 10.199.0.1 gets $r"
  fi
  if [[ -z ${FAKE_CLASSICD:-} ]]; then
    want="0 connections, $nclients served, "  # then "<N> requests"
    for _ in $(seq 30); do  # STATUS= is refreshed each second when the counts change
      s=$(prop rpyc-classicd.service StatusText)
      [[ $s == "$want"*" requests" ]] && break
      sleep 0.1
    done
    [[ $s == "$want"*" requests" ]] && ok "StatusText follows the clients: $s" || bad "StatusText: '$s' (want '$want<N> requests')"
  else
    s=$(status_text rpyc-classicd.service)
    [[ -n $s ]] && ok "StatusText: $s" || bad "no STATUS= from rpyc-classicd"
  fi
  journal_has RPYC_PEER=127.0.0.1 -u rpyc-classicd.service -o verbose && ok "journal field RPYC_PEER" ||
    bad "no RPYC_PEER in journalctl -u rpyc-classicd"
  journal_has accepted -u rpyc-classicd.service -o cat && journal_has goodbye -u rpyc-classicd.service -o cat &&
    ok "journal: accepted and goodbye lines" || bad "no accepted/goodbye lines"
  pid=$(prop rpyc-classicd.service MainPID)
  systemctl reload rpyc-classicd.service && sleep 0.3 &&
    [[ $(prop rpyc-classicd.service MainPID) == "$pid" && $(systemctl is-active rpyc-classicd) == active ]] &&
    ok "systemctl reload rpyc-classicd: same pid, active" || bad "classicd reload"
  systemctl disable --now rpyc-classicd.service
  [[ $(prop rpyc-classicd.service Result) == success ]] && ok "systemctl stop rpyc-classicd: Result=success" ||
    bad "classicd stop: $(prop rpyc-classicd.service Result)"
  # --check-config is the unit's ExecStartPre: a broken certificate fails the start (as the
  # service's user), and the journal says why (issue 14).
  cp /etc/rpyc/rpyc-classicd.toml /tmp/rpyc-classicd.toml.orig
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out /etc/rpyc/broken.key 2>/dev/null
  echo "not a certificate" >/etc/rpyc/broken.pem
  chmod 644 /etc/rpyc/broken.key /etc/rpyc/broken.pem
  sed -i -e 's|^ssl-keyfile = ""|ssl-keyfile = "/etc/rpyc/broken.key"|' \
    -e 's|^ssl-certfile = ""|ssl-certfile = "/etc/rpyc/broken.pem"|' /etc/rpyc/rpyc-classicd.toml
  if systemctl start rpyc-classicd.service 2>/dev/null; then
    bad "rpyc-classicd started with a broken certificate"
  else
    journal_has "rpyc-classicd: certificate file /etc/rpyc/broken.pem" -u rpyc-classicd.service -o cat &&
      ok "broken certificate: systemctl start fails, journal: $(journalctl --no-pager -u rpyc-classicd.service -o cat |
        grep -m1 'certificate file /etc/rpyc/broken.pem')" ||
      bad "broken certificate: no reason in the journal: $(journalctl --no-pager -u rpyc-classicd.service -o cat | tail -5)"
  fi
  systemctl stop rpyc-classicd.service
  systemctl reset-failed rpyc-classicd.service 2>/dev/null
  cp /tmp/rpyc-classicd.toml.orig /etc/rpyc/rpyc-classicd.toml
  rm -f /etc/rpyc/broken.key /etc/rpyc/broken.pem
  systemctl start rpyc-classicd.socket
  r=$("$PY" -c "$client" 2>&1)
  [[ $r == *read-only ]] && wait_state rpyc-classicd.service active &&
    ok "socket activation: first connection started rpyc-classicd.service ($r)" || bad "classicd socket activation: $r"
  systemctl stop rpyc-classicd.socket rpyc-classicd.service
  systemctl start rpyc-classicd-inetd.socket
  r=$("$PY" - <<'PYEOF' 2>&1
import threading, rpyc
pids, errs = [], []
def one():
    try:
        c = rpyc.classic.connect("127.0.0.1", 18812)
        assert c.eval("1+1") == 2
        pids.append(c.modules.os.getpid()); c.close()
    except Exception as e:
        errs.append(repr(e))
ts = [threading.Thread(target=one) for _ in range(3)]
[t.start() for t in ts]; [t.join(20) for t in ts]
print(len(set(pids)), errs)
PYEOF
  )
  [[ $r == "3 []" ]] && ok "rpyc-classicd-inetd.socket: 3 concurrent clients, 3 inetd@ instances" ||
    bad "inetd@ units: $r"
  journal_has . -u 'rpyc-classicd-inetd@*' -o cat && ok "inetd@ instances log to the journal" ||
    bad "no journal lines from rpyc-classicd-inetd@"
  systemctl stop rpyc-classicd-inetd.socket
else
  skip "rpyc-classicd: the installed binary has no --check-config/-c yet (issue 5): not started under systemd"
fi

# ---- rpyc-classicd@example: the packaged hosting example, as its example.toml says (issue 13)
ex=/usr/share/doc/rpyc-classicd/examples
if [[ -n ${FAKE_CLASSICD:-} ]]; then
  skip "rpyc-classicd@example: the stand-in does not host services"
elif [[ ! -f $ex/example.toml ]]; then
  bad "no $ex/example.toml in the package"
else
  cp "$ex/example.toml" "$ex/calculator.py" /etc/rpyc/
  systemctl enable --now rpyc-classicd@example && wait_state rpyc-classicd@example.service active &&
    ok "cp example.toml calculator.py /etc/rpyc/ && systemctl enable --now rpyc-classicd@example" ||
    bad "rpyc-classicd@example: $(systemctl status rpyc-classicd@example --no-pager 2>&1 | tail -n 15)"
  calc='
import rpyc
c = rpyc.connect("127.0.0.1", 18861)
c.root.store(7)
try:
    c.root.div(1, 0); z = "no error"
except ZeroDivisionError as e:
    z = type(e).__name__
try:
    c.root.memory; a = "readable"
except AttributeError:
    a = "AttributeError"
print(rpyc.__version__.split(".")[0], c.root.add(1, 2), c.root.get_service_name(), c.root.recall(), z, a)
c.close()
'
  r=$("$PY" -c "$calc" 2>&1)
  [[ $r == "5 3 CALCULATOR 7 ZeroDivisionError AttributeError" ]] &&
    ok "rpyc 5.3.0 client: root.add(1, 2) -> 3, CALCULATOR, per-connection state, refusals ($r)" ||
    bad "rpyc-classicd@example, rpyc 5 client: $r"
  if [[ -d ${RPYC6:-/nonexistent}/rpyc ]]; then
    r=$(PYTHONPATH=$RPYC6 "$PY" -c "$calc" 2>&1)
    [[ $r == "6 3 CALCULATOR 7 ZeroDivisionError AttributeError" ]] && ok "rpyc 6 client: $r" ||
      bad "rpyc-classicd@example, rpyc 6 client: $r"
  fi
  pid=$(prop rpyc-classicd@example.service MainPID)
  user=$(ps -o user= -p "$pid")
  [[ $user != root ]] && ok "rpyc-classicd@example runs as dynamic user $user" || bad "@example runs as root"
  journal_has "hosting service calculator:CalculatorService (CALCULATOR)" -u rpyc-classicd@example.service -o cat &&
    journal_has goodbye -u rpyc-classicd@example.service -o cat &&
    journal_has RPYC_PEER=127.0.0.1 -u rpyc-classicd@example.service -o verbose &&
    ok "journal of rpyc-classicd@example: $(journalctl --no-pager -u rpyc-classicd@example.service -o cat |
      grep -c .) lines: $(journalctl --no-pager -u rpyc-classicd@example.service -o cat |
      grep -m1 'hosting service'); $(journalctl --no-pager -u rpyc-classicd@example.service -o cat | grep -m1 goodbye)" ||
    bad "journal of rpyc-classicd@example: $(journalctl --no-pager -u rpyc-classicd@example.service -o cat | tail -n 8)"
  [[ $(systemctl is-active rpyc-classicd.service) == inactive ]] &&
    ok "the classic rpyc-classicd.service stays inactive beside it" || bad "rpyc-classicd.service started too"
  systemctl disable --now rpyc-classicd@example.service
  [[ $(prop rpyc-classicd@example.service Result) == success ]] && ok "systemctl disable --now rpyc-classicd@example: Result=success" ||
    bad "@example stop: $(prop rpyc-classicd@example.service Result)"
  # Socket activation through rpyc-classicd@.socket (a Unix socket per instance).
  systemctl start rpyc-classicd@example.socket
  r=$("$PY" -c '
import rpyc
from rpyc.utils.factory import unix_connect
c = unix_connect("/run/rpyc-classicd/example.sock")
print(c.root.add(2, 3))' 2>&1)
  [[ $r == 5 ]] && wait_state rpyc-classicd@example.service active &&
    ok "rpyc-classicd@example.socket: the first connection on /run/rpyc-classicd/example.sock started the service, add(2, 3) -> 5" ||
    bad "rpyc-classicd@example.socket: $r; $(journalctl --no-pager -u rpyc-classicd@example.service -o cat | tail -n 5)"
  systemctl stop rpyc-classicd@example.socket rpyc-classicd@example.service
  # A service that fails to import: the start fails and the journal says why, with the file's line.
  printf 'import rpyc\nimport no_such_dependency\n\nclass BrokenService(rpyc.Service):\n    pass\n' \
    >/etc/rpyc/broken_service.py
  printf '# broken on purpose\nservice = "broken_service:BrokenService"\nservice-path = ["."]\nport = 18862\n' \
    >/etc/rpyc/broken.toml
  if systemctl start rpyc-classicd@broken.service 2>/dev/null; then
    bad "rpyc-classicd@broken started with a service that cannot be imported"
  else
    want="/etc/rpyc/broken.toml:2: key 'service': service 'broken_service:BrokenService': importing broken_service failed"
    journal_has "$want" -u rpyc-classicd@broken.service -o cat &&
      journal_has "No module named 'no_such_dependency'" -u rpyc-classicd@broken.service -o cat &&
      ok "a service that fails to import: systemctl start fails, journal: $(journalctl --no-pager -u rpyc-classicd@broken.service -o cat |
        grep -m1 -o "/etc/rpyc/broken.toml:2: key 'service'.*failed") ... $(journalctl --no-pager -u rpyc-classicd@broken.service -o cat |
        grep -m1 -o "ModuleNotFoundError: No module named 'no_such_dependency'")" ||
      bad "broken service: no clear reason in the journal: $(journalctl --no-pager -u rpyc-classicd@broken.service -o cat | tail -n 5)"
  fi
  systemctl stop rpyc-classicd@broken.service
  systemctl reset-failed 'rpyc-classicd@*' 2>/dev/null
  rm -f /etc/rpyc/example.toml /etc/rpyc/calculator.py /etc/rpyc/broken.toml /etc/rpyc/broken_service.py
fi

# ---- purge
apt-get purge -y -q rpyc-registryd rpyc-classicd >/tmp/purge.log 2>&1 && ok "apt-get purge" ||
  bad "purge: $(tail /tmp/purge.log)"
left=$(ls -d /etc/rpyc /lib/systemd/system/rpyc-* /etc/systemd/system/*/rpyc-* /etc/xinetd.d/rpyc-classicd \
  /var/lib/rpyc-* /var/lib/private/rpyc-* /var/log/rpyc-* /usr/sbin/rpyc-* 2>/dev/null)
[[ -z $left ]] && ok "purge left nothing behind (config, units, enablement links, state)" || bad "left: $left"
if pgrep -x rpyc-registryd >/dev/null || pgrep -x rpyc-classicd >/dev/null; then
  bad "daemon processes remain"
else
  ok "no daemon processes remain"
fi

# ---- rpm, installed for real (rpm -ivh --nodeps) and started with systemctl
if compgen -G "$SHIP/rpm/rpyc-registryd-*.rpm" >/dev/null; then
  if rpm -ivh --nodeps "$SHIP"/rpm/rpyc-registryd-*.rpm "$SHIP"/rpm/rpyc-classicd-*.rpm >/tmp/rpm.log 2>&1; then
    ok "rpm -ivh --nodeps rpyc-registryd rpyc-classicd"
  else
    bad "rpm -ivh: $(tail /tmp/rpm.log)"
  fi
  systemctl daemon-reload
  systemctl start rpyc-registryd.service && wait_state rpyc-registryd.service active
  r=$(registry udp register RPMTEST 2>&1)
  [[ $r == True ]] && ok "rpm-installed rpyc-registryd started with systemctl, register -> True" ||
    bad "rpm registryd: $r"
  ex=/usr/share/doc/rpyc-classicd/examples
  if [[ -z ${FAKE_CLASSICD:-} ]]; then  # the hosting example, as the .deb's above
    cp "$ex/example.toml" "$ex/calculator.py" /etc/rpyc/ 2>/dev/null
    systemctl start rpyc-classicd@example.service && wait_state rpyc-classicd@example.service active
    r=$("$PY" -c 'import rpyc; print(rpyc.connect("127.0.0.1", 18861).root.add(1, 2))' 2>&1)
    [[ $r == 3 ]] && ok "rpm-installed rpyc-classicd@example (from $ex): root.add(1, 2) -> 3" ||
      bad "rpm rpyc-classicd@example: $r; $(journalctl --no-pager -u rpyc-classicd@example.service -o cat | tail -n 5)"
    systemctl stop rpyc-classicd@example.service
    rm -f /etc/rpyc/example.toml /etc/rpyc/calculator.py
  fi
  rpm -e --nodeps rpyc-registryd rpyc-classicd >/tmp/rpme.log 2>&1 && ok "rpm -e" || bad "rpm -e: $(tail /tmp/rpme.log)"
  sleep 0.3
  [[ $(systemctl is-active rpyc-registryd.service) != active && ! -e /usr/sbin/rpyc-registryd ]] &&
    ok "rpm -e stopped the service and removed the files" || bad "after rpm -e: $(systemctl is-active rpyc-registryd)"
else
  skip "no .rpm built (060-rpm did not run)"
fi
exit $fail
