"""A private systemd-journald for the journal tests (SYSTEM-TESTING.md §2: journald in its own
mount namespace, no PID-1 systemd needed)."""

import json
import os
import shutil
import subprocess
import textwrap

import pytest

PRELUDE = textwrap.dedent("""\
    set -e
    mount -t tmpfs tmpfs /run/systemd; mkdir -p /run/log; mount -t tmpfs tmpfs /run/log
    /lib/systemd/systemd-journald & JPID=$!
    trap "kill $JPID" EXIT
    for i in $(seq 50); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
""")


def require_journald():
    if os.geteuid() != 0 or not shutil.which("unshare") or \
            not os.path.exists("/lib/systemd/systemd-journald"):
        pytest.skip("needs root, unshare and systemd-journald")


def run_with_journald(script, env, timeout=60):
    """Runs the bash `script` in a mount namespace of its own, with a private journald started
    first (skips without root); returns its stdout lines and the journal entries among them
    (the lines of `journalctl -o json`)."""
    require_journald()
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                          PRELUDE + textwrap.dedent(script)],
                         env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    return lines, [json.loads(line) for line in lines if line.startswith("{")]
