"""Native journald logging with structured fields, against a private systemd-journald
(SYSTEM-TESTING.md §2: journald in its own mount namespace, no PID-1 systemd needed)."""
import os
import textwrap

from journal_support import run_with_journald
from registry_support import PYTHON, REGISTRYD, free_port, require_binary

SCRIPT = textwrap.dedent("""\
    "$REGISTRYD" -p "$PORT" --log journal & RPID=$!
    sleep 0.5
    "$PYTHON" -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1], flush=True); s.sendto(b'garbage', ('127.0.0.1', $PORT))"
    sleep 0.5
    kill -TERM $RPID; wait $RPID
    journalctl --no-pager -o json SYSLOG_IDENTIFIER=rpyc-registryd
""")


def test_journal_fields():
    require_binary(REGISTRYD)
    port = free_port()
    lines, entries = run_with_journald(
        SCRIPT, dict(os.environ, REGISTRYD=str(REGISTRYD), PORT=str(port), PYTHON=PYTHON), 30)
    client_port = lines[0]
    warnings = [e for e in entries if e.get("PRIORITY") == "4"]
    assert len(warnings) == 1, entries
    w = warnings[0]
    assert w["RPYC_PEER"] == f"127.0.0.1:{client_port}"
    assert w["RPYC_LOGGER"] == f"REGSRV/UDP/{port}"
    assert w["MESSAGE"].startswith(f"bad request from 127.0.0.1:{client_port}: undecodable")
    started = [e for e in entries if "server started" in e.get("MESSAGE", "")]
    assert started and started[0]["PRIORITY"] == "7"
    assert any("SIGTERM: stopping" in e.get("MESSAGE", "") and e["PRIORITY"] == "6" for e in entries)
