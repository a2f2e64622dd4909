#!/bin/bash
# A private xinetd (never the system one) with the shipped etc/xinetd.d/rpyc-classicd, changed
# only where a test must: disable = no, a free port, the built binary and the repo's sample
# config, and user = the current user. Checks: the shipped file is disabled; 3 concurrent
# /usr/bin/python3 rpyc 5.3.0 clients (and one rpyc 6 client) each get their own server process
# and evaluate code; xinetd logs START and EXIT. Skipped for rpyc-classicd until it has stdio
# mode (issue 5); until then the same file is exercised with the reference rpyc_classic.
source "$(dirname "$0")/lib.sh"
need_cmd xinetd || { bad "xinetd missing (apt-get install xinetd)"; finish; }
shipped=$ROOT/etc/xinetd.d/rpyc-classicd
check "shipped entry is disabled" grep -Eq '^[[:space:]]*disable[[:space:]]*=[[:space:]]*yes' "$shipped"
check "shipped entry binds the loopback" grep -Eq '^[[:space:]]*bind[[:space:]]*=[[:space:]]*127\.0\.0\.1' "$shipped"

run_xinetd() {  # run_xinetd LABEL SERVER SERVER_ARGS [rpyc6]
  local label=$1 server=$2 args=$3 want6=${4:-} dir port xp
  dir=$(mktemp -d)
  port=$(free_port)
  mkdir -p "$dir/xinetd.d"
  sed -E -e "s|^([[:space:]]*disable[[:space:]]*=).*|\1 no|" \
    -e "s|^([[:space:]]*port[[:space:]]*=).*|\1 $port|" \
    -e "s|^([[:space:]]*server[[:space:]]*=).*|\1 $server|" \
    -e "s|^([[:space:]]*server_args[[:space:]]*=).*|\1 $args|" \
    -e "s|^([[:space:]]*user[[:space:]]*=).*|\1 $(id -un)|" "$shipped" >"$dir/xinetd.d/rpyc-classicd"
  cat >"$dir/xinetd.conf" <<CONF
defaults
{
	log_type	= FILE $dir/xinetd.log
	instances	= 20
}
includedir $dir/xinetd.d
CONF
  xinetd -f "$dir/xinetd.conf" -dontfork -stayalive -pidfile "$dir/xinetd.pid" </dev/null \
    >"$dir/out" 2>&1 &
  xp=$!
  if ! wait_listen "$port"; then
    bad "$label: xinetd did not listen on $port: $(cat "$dir/out")"
    kill "$xp" 2>/dev/null; wait "$xp" 2>/dev/null; rm -rf "$dir"; return
  fi
  ok "$label: xinetd listens on 127.0.0.1:$port"
  local out
  out=$(timeout 30 "$PY" - "$port" <<'PYEOF' 2>&1
import sys, threading, rpyc
port = int(sys.argv[1])
pids, errors = [], []
def client():
    try:
        c = rpyc.classic.connect("127.0.0.1", port)
        assert c.eval("6*7") == 42
        pids.append(c.modules.os.getpid())
        c.close()
    except Exception as e:
        errors.append(repr(e))
ts = [threading.Thread(target=client) for _ in range(3)]
[t.start() for t in ts]; [t.join(20) for t in ts]
print("pids", len(set(pids)), "errors", errors)
sys.exit(0 if len(set(pids)) == 3 and not errors else 1)
PYEOF
  )
  [[ $? -eq 0 ]] && ok "$label: 3 concurrent rpyc 5.3.0 clients, 3 server processes ($out)" ||
    bad "$label: rpyc 5.3.0 clients: $out"
  if [[ -z $want6 ]]; then
    :  # the reference rpyc_classic 5.3.0 speaks only the rpyc 5 wire protocol
  elif [[ -d $RPYC6_PATH/rpyc ]]; then
    out=$(PYTHONPATH=$RPYC6_PATH timeout 20 "$PY" -c "
import sys, rpyc
c = rpyc.classic.connect('127.0.0.1', $port); print(rpyc.__version__, c.eval('1+1'))" 2>&1)
    [[ $out == *" 2" ]] && ok "$label: rpyc 6 client ($out)" || bad "$label: rpyc 6 client: $out"
  else
    skip "$label: rpyc 6 client lib not found at $RPYC6_PATH"
  fi
  sleep 0.3
  grep -q 'START: rpyc-classicd' "$dir/xinetd.log" && grep -q 'EXIT: rpyc-classicd' "$dir/xinetd.log" &&
    ok "$label: xinetd log has START and EXIT" || bad "$label: xinetd log: $(cat "$dir/xinetd.log")"
  kill "$xp" 2>/dev/null
  wait "$xp" 2>/dev/null
  rm -rf "$dir"
}

if classicd_has_stdio; then
  run_xinetd rpyc-classicd "$RPYC_CLASSICD" "-c $ROOT/etc/rpyc/rpyc-classicd.toml -m stdio" rpyc6
else
  skip "rpyc-classicd: no stdio mode / --config in its --help yet (issue 5)"
  if [[ -x /usr/bin/rpyc_classic ]]; then
    run_xinetd "shipped file with reference rpyc_classic" /usr/bin/rpyc_classic "-m stdio -q"
  fi
fi
finish
