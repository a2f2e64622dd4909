# Runs INSIDE the throw-away systemd container (tests/system/075-container-etcd.sh), as root,
# with the built packages under $SHIP/deb. Prints one line per check; exits 1 if any failed.
set -u
fail=0
ok() { echo "  ok: $*"; }
bad() { echo "  FAIL: $*"; fail=1; }
PY=/usr/bin/python3
export DEBIAN_FRONTEND=noninteractive
C=23790 P=23800  # etcd's client and peer ports (the container has its own loopback)
EP=http://127.0.0.1:$C
CONF=/etc/rpyc/rpyc-registryd.toml
prop() { systemctl show -p "$2" --value "$1"; }
until_true() {  # until_true TENTHS CMD...: polls CMD every 0.1 s
  local n=$1
  shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}
status_has() { [[ $(prop rpyc-registryd.service StatusText) == *"$1"* ]]; }
registry() {  # registry PORT register|unregister|discover NAME: prints the result (rpyc 5.3.0)
  "$PY" - "$@" <<'PYEOF'
import sys
from rpyc.utils.registry import UDPRegistryClient
port, op, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = UDPRegistryClient(ip="127.0.0.1", port=port, timeout=3)
if op == "register":
    print(c.register((name,), 12345))
elif op == "unregister":
    print(c.unregister(12345))
else:
    print(c.discover(name))
PYEOF
}
discovers() { [[ $(registry "$1" discover "$2") == "$3" ]]; }
keys() { ETCDCTL_API=3 etcdctl --endpoints="$EP" get --prefix /rpyc/svc/ --keys-only 2>/dev/null | grep -v '^$'; }
start_etcd() {  # a transient unit: gone once stopped, started again with its data dir kept
  systemd-run -q --unit=ct-etcd /usr/bin/etcd --name ct --data-dir /var/tmp/ct-etcd --unsafe-no-fsync \
    --listen-client-urls "$EP" --advertise-client-urls "$EP" \
    --listen-peer-urls "http://127.0.0.1:$P" --initial-advertise-peer-urls "http://127.0.0.1:$P" \
    --initial-cluster "ct=http://127.0.0.1:$P" &&
    until_true 150 env ETCDCTL_API=3 etcdctl --endpoints="$EP" endpoint health
}

rm -f /usr/sbin/policy-rc.d  # as on a real system, postinst starts the service
t0=$SECONDS
if apt-get install -y -q "$SHIP"/deb/rpyc-registryd_*.deb >/tmp/apt.log 2>&1; then
  ok "apt-get install ./rpyc-registryd_*.deb ($((SECONDS - t0)) s)"
else
  bad "apt-get install: $(tail -n 20 /tmp/apt.log)"
  exit 1
fi
start_etcd && ok "etcd $(etcd --version | head -n1 | awk '{print $3}') on $EP (transient unit ct-etcd)" ||
  { bad "etcd did not start: $(journalctl -u ct-etcd -o cat --no-pager | tail -n 5)"; exit 1; }

# ---- the shipped config, pointed at it; the shipped unit
grep -q '^etcd-endpoints = ""' "$CONF" && ok "shipped config: etcd off (etcd-endpoints = \"\")" ||
  bad "shipped config: $(grep -n '^etcd-endpoints' "$CONF")"
sed -i -E -e "s|^etcd-endpoints = .*|etcd-endpoints = \"$EP\"|" -e 's|^registry-id = .*|registry-id = "ct-a"|' \
  -e 's|^site = .*|site = "ct"|' "$CONF"
out=$(rpyc-registryd -c "$CONF" --check-config 2>&1) && ok "--check-config: $out" || bad "--check-config: $out"
systemctl restart rpyc-registryd.service
until_true 50 status_has "etcd up" && ok "StatusText: $(prop rpyc-registryd.service StatusText)" ||
  bad "StatusText: '$(prop rpyc-registryd.service StatusText)'"
journalctl -u rpyc-registryd.service -o cat --no-pager | grep -q "etcd: connected to $EP" &&
  ok "journal: etcd: connected to $EP" || bad "journal: no 'etcd: connected to'"

# ---- a registration reaches etcd and a second registry answers for it
r=$(registry 18811 register SHIPETCD 2>&1)
[[ $r == True ]] && ok "rpyc 5.3.0 UDPRegistryClient.register at the unit's registry -> True" || bad "register: $r"
key=/rpyc/svc/SHIPETCD/127.0.0.1:12345/ct-a
until_true 30 eval '[[ $(keys) == "$key" ]]' && ok "etcdctl get --prefix /rpyc/svc/: $key" || bad "keys: $(keys)"
value=$(ETCDCTL_API=3 etcdctl --endpoints="$EP" get "$key" --print-value-only)
"$PY" -c 'import json, sys; assert json.loads(sys.argv[1]) == {"host": "127.0.0.1", "port": 12345,
    "aliases": ["SHIPETCD"], "site": "ct", "registry-id": "ct-a"}' "$value" && ok "value: $value" ||
  bad "value: $value"
lease=$(ETCDCTL_API=3 etcdctl --endpoints="$EP" get "$key" -w json | "$PY" -c 'import json,sys; print(format(json.load(sys.stdin)["kvs"][0]["lease"], "x"))')
ttl=$(ETCDCTL_API=3 etcdctl --endpoints="$EP" lease timetolive "$lease")
[[ $ttl == *"granted with TTL(255s)"* ]] && ok "lease: $ttl (timeout 240 s + W 15 s)" || bad "lease: $ttl"
rpyc-registryd -m UDP -p 18899 --host 127.0.0.1 --etcd-endpoints "$EP" --registry-id ct-b --site ct -q \
  >/tmp/registryd-b.log 2>&1 &
b=$!
until_true 50 discovers 18899 SHIPETCD "(('127.0.0.1', 12345),)" &&
  ok "a second rpyc-registryd on the same etcd answers discover SHIPETCD -> (('127.0.0.1', 12345),)" ||
  bad "second registry: $(registry 18899 discover SHIPETCD 2>&1) $(tail -n 5 /tmp/registryd-b.log)"
registry 18811 unregister SHIPETCD >/dev/null 2>&1
until_true 20 discovers 18899 SHIPETCD "()" && ok "UNREGISTER at the unit's registry: gone at the second within 2 s" ||
  bad "after UNREGISTER: $(registry 18899 discover SHIPETCD 2>&1)"
until_true 20 eval '[[ -z $(keys) ]]' && ok "its key deleted" || bad "keys left: $(keys)"

# ---- etcd away and back: the registry keeps answering, and writes again what it took meanwhile
systemctl stop ct-etcd
until_true 100 status_has "etcd unreachable" && ok "etcd stopped: StatusText: $(prop rpyc-registryd.service StatusText)" ||
  bad "StatusText: '$(prop rpyc-registryd.service StatusText)'"
r=$(registry 18811 register DURING 2>&1)
[[ $r == True ]] && discovers 18811 DURING "(('127.0.0.1', 12345),)" &&
  ok "REGISTER and discover answered while etcd is away" || bad "while away: $r"
start_etcd || bad "etcd did not start again"
until_true 100 status_has "etcd up" && ok "etcd back: StatusText: $(prop rpyc-registryd.service StatusText)" ||
  bad "StatusText: '$(prop rpyc-registryd.service StatusText)'"
until_true 50 discovers 18899 DURING "(('127.0.0.1', 12345),)" &&
  ok "the registration made while etcd was away reaches the second registry" ||
  bad "DURING at the second: $(registry 18899 discover DURING 2>&1)"
n=$(journalctl -u rpyc-registryd.service -o cat --no-pager | grep -c "etcd: unreachable")
((n == 1)) && ok "journal: 'etcd: unreachable' logged once" || bad "journal: 'etcd: unreachable' $n times"

kill "$b" && wait "$b"
systemctl stop rpyc-registryd.service
[[ $(prop rpyc-registryd.service Result) == success ]] && ok "stop: Result=success" ||
  bad "stop: $(prop rpyc-registryd.service Result)"
systemctl stop ct-etcd
exit $fail
