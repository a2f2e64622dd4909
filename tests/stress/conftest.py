"""Fixtures and the end-of-run figures of the stress suite (see stress_support.py)."""
import json
import os

import pytest

import stress_support as ss


@pytest.fixture
def classicd(tmp_path):
    """Starts rpyc-classicd in a given mode; stops every daemon started (exit 0 expected)."""
    started = []

    def start(mode, *args):
        # All clients come from 127.0.0.1: the per-peer cap (64 by default) is not under test.
        d = ss.classic_support.Daemon(
            tmp_path, extra_args=("-m", mode, "--max-connections-per-peer", "0", *args))
        started.append(d)
        return d

    yield start
    for d in started:
        rc = d.stop()
        assert rc == 0, f"daemon exit status {rc} after SIGTERM\n{d.log()[-5000:]}"


def pytest_report_header(config):
    return (f"stress form: {ss.FORM} (RPYC_STRESS=long for the long form); "
            f"rpyc-classicd: {ss.classic_support.CLASSICD}")


def pytest_terminal_summary(terminalreporter):
    if not ss.FIGURES:
        return
    tr = terminalreporter
    tr.section(f"stress figures ({ss.FORM} form)")
    for f in ss.FIGURES:
        tr.write_line(f["test"] + ": " + ", ".join(f"{k}={v}" for k, v in f.items()
                                                    if k not in ("test", "form")))
    path = os.environ.get("RPYC_STRESS_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump(ss.FIGURES, out, indent=1)
        tr.write_line(f"figures written to {path}")
