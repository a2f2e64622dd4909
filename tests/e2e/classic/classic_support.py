"""Support for the rpyc-classicd end-to-end tests: the daemon under test and the client runner.

Each test starts the built daemon ($RPYC_CLASSICD, default build/dev/daemons/classicd/rpyc-classicd)
on a free loopback port and runs client snippets under the real rpyc client of each generation:
Debian's python3-rpyc 5.3.0 and the 6.x library in $RPYC6_PATH (default <repo>/../shared/clients/rpyc6).

RPYC_CLASSICD_ARGS="-m threadpool" (for example) appends switches to every daemon started here, to
run the whole suite in another serving mode.

RPYC_E2E_REFERENCE=1 runs the same tests against the Python reference server (/usr/bin/rpyc_classic,
5.3.0 clients only), to check the tests themselves.
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parents[3]
CLASSICD = Path(os.environ.get("RPYC_CLASSICD", REPO / "build/dev/daemons/classicd/rpyc-classicd"))
RPYC6_PATH = Path(os.environ.get("RPYC6_PATH", REPO.parent / "shared/clients/rpyc6"))
REFERENCE = os.environ.get("RPYC_E2E_REFERENCE") == "1"
EXTRA_ARGS = os.environ.get("RPYC_CLASSICD_ARGS", "").split()
GENERATIONS = ["rpyc5", "rpyc6"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid):
    """[(child pid, state letter)] of `pid`'s children."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append((int(d.name), fields[0]))
    return out


def zombies_of(pid):
    return [c for c, state in children_of(pid) if state == "Z"]


class Daemon:
    """One running rpyc-classicd (or the reference server), logging to a file."""

    def __init__(self, tmp_path, extra_args=(), host="127.0.0.1"):
        self.host = host
        self.port = free_port()
        self.logfile = tmp_path / "classicd.log"
        if REFERENCE:
            cmd = [PYTHON, "/usr/bin/rpyc_classic", "-p", str(self.port), "--logfile", str(self.logfile)]
        else:
            if not CLASSICD.exists():
                pytest.fail(f"daemon binary not found: {CLASSICD} (build it or set RPYC_CLASSICD)")
            # Every line, the daemon's own per-connection ones included (the default is info).
            cmd = [str(CLASSICD), "--host", host, "-p", str(self.port),
                   "--logfile", str(self.logfile), "--log-level", "debug",
                   *([] if "-m" in extra_args else EXTRA_ARGS), *extra_args]
        # stdout and stderr go to a file, not a pipe nobody reads: a daemon that writes more than
        # a pipe holds would block on it.
        self.outfile = tmp_path / "classicd.out"
        with open(self.outfile, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                out = self.outfile.read_text(errors="replace")
                pytest.fail(f"daemon exited with {self.proc.returncode} before listening:\n{out}\n{self.log()}")
            try:
                socket.create_connection((host, self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    pytest.fail("daemon did not listen within 20 s")
                time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle, timeout=10):
        deadline = time.monotonic() + timeout
        while needle not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not logged within {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("daemon did not stop within 15 s of SIGTERM")
        return self.proc.returncode


PRELUDE = """\
import os, sys, textwrap, time, rpyc
PORT = int(os.environ["CLASSICD_PORT"])
GEN = os.environ["RPYC_GEN"]
REFERENCE = os.environ.get("RPYC_E2E_REFERENCE") == "1"
EXTRA_ARGS = os.environ.get("RPYC_CLASSICD_ARGS", "").split()  # the Python server: its known bugs
assert rpyc.__version__.split(".")[0] == GEN[-1], (rpyc.__version__, GEN)
def connect():
    return rpyc.classic.connect("127.0.0.1", PORT)
def remote_exec(conn, code):
    conn.execute(textwrap.dedent(code))
"""


class Client:
    """Runs Python snippets under one rpyc client generation, in a fresh subprocess each."""

    def __init__(self, gen, daemon, tmp_path):
        self.gen = gen
        self.daemon = daemon
        self.tmp_path = tmp_path
        self.env = dict(os.environ, CLASSICD_PORT=str(daemon.port), RPYC_GEN=gen)
        self.env.pop("PYTHONPATH", None)
        if gen == "rpyc6":
            self.env["PYTHONPATH"] = str(RPYC6_PATH)

    def popen(self, script, **kwargs):
        path = self.tmp_path / f"client_{time.monotonic_ns()}.py"
        path.write_text(PRELUDE + textwrap.dedent(script))
        return subprocess.Popen([PYTHON, str(path)], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kwargs)

    def run(self, script, timeout=60, check=True):
        """Runs `script`; returns its stdout. With check, a non-zero exit fails the test."""
        p = self.popen(script)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise AssertionError(f"[{self.gen}] client timed out after {timeout} s\n"
                                 f"stdout:\n{out}\nstderr:\n{err}\nserver log:\n{self.daemon.log()}")
        if check and p.returncode != 0:
            raise AssertionError(f"[{self.gen}] client exited {p.returncode}\nstdout:\n{out}\n"
                                 f"stderr:\n{err}\nserver log:\n{self.daemon.log()}")
        self.last_stderr = err
        self.last_returncode = p.returncode
        return out


def wait_for(pred, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.05)
