"""A hosted service's log lines in the journal: RPYC_LOGGER is named after the service and port,
as rpyc's server names its logger (CALCULATOR/PORT), and every line carries RPYC_SERVICE."""

import os
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hosting_support import CLASSICD, PYTHON, SERVICES, free_port  # noqa: E402
from journal_support import run_with_journald  # noqa: E402

JOURNAL_SCRIPT = textwrap.dedent("""\
    PYTHONPATH="$SERVICES" "$CLASSICD" -p "$PORT" --log journal --service "$SERVICE" & CPID=$!
    for i in $(seq 100); do "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $PORT)).close()" 2>/dev/null && break; sleep 0.1; done
    "$PYTHON" -c "import rpyc; c = rpyc.connect('127.0.0.1', $PORT); assert c.root.get_service_name() == '$NAME'; c.close()" || { kill $CPID; exit 1; }
    sleep 0.5
    kill -TERM $CPID; wait $CPID
    journalctl --no-pager -o json SYSLOG_IDENTIFIER=rpyc-classicd
""")


@pytest.mark.parametrize("service,name", [("calc_service:CalculatorService", "CALCULATOR"),
                                          ("classic", "SLAVE")])
def test_journal_names_the_service(service, name):
    port = free_port()
    env = dict(os.environ, CLASSICD=str(CLASSICD), PORT=str(port), PYTHON=PYTHON,
               SERVICES=str(SERVICES), SERVICE=service, NAME=name)
    env.pop("PYTHONPATH", None)
    _, entries = run_with_journald(JOURNAL_SCRIPT, env)
    welcome = [e for e in entries if e.get("MESSAGE", "").startswith("welcome ")]
    assert welcome, entries
    assert welcome[-1]["RPYC_LOGGER"] == f"{name}/{port}"
    ours = [e for e in entries if e.get("RPYC_LOGGER", "").startswith(f"{name}/")]
    assert ours and all(e.get("RPYC_SERVICE") == name for e in ours), ours
    assert any("server has terminated" in e["MESSAGE"] for e in ours), ours
