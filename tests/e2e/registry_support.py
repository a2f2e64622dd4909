"""Helpers for the rpyc-registryd end-to-end tests: paths, free ports, a running daemon with an
sd_notify socket, and the real rpyc clients (5.3.0 from Debian, 6.x from $RPYC6_PATH)."""
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
REGISTRYD = Path(os.environ.get("RPYC_REGISTRYD", REPO / "build/dev/daemons/registryd/rpyc-registryd"))
REGISTRAR = Path(os.environ.get("RPYC_REGISTRAR", REPO / "build/dev/libcore/registrar/rpyc-registrar"))
RPYC6_PATH = Path(os.environ.get("RPYC6_PATH", REPO.parent / "shared/clients/rpyc6"))
CLIENT_SCRIPT = Path(__file__).resolve().parent / "registry_client.py"
PY_REGISTRY = "/usr/bin/rpyc_registry"


def sanitized(path):
    """True for an ASan build, whose memory use says nothing about ours."""
    return path.exists() and b"__asan_init" in path.read_bytes()


def require_binary(path):
    if not path.exists():
        pytest.fail(f"{path} is missing: build first (cmake --build --preset dev)")


def client_env(generation):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if generation == "rpyc6":
        if not (RPYC6_PATH / "rpyc").is_dir():
            pytest.skip(f"rpyc 6 library not found at {RPYC6_PATH} (set RPYC6_PATH)")
        env["PYTHONPATH"] = str(RPYC6_PATH)
    return env


def run_client(generation, ops, timeout=30):
    """Runs registry_client.py with rpyc 5.3.0 or 6.x; returns the list of results."""
    out = subprocess.run([PYTHON, str(CLIENT_SCRIPT)], input=json.dumps(ops), env=client_env(generation),
                         capture_output=True, text=True, timeout=timeout, check=True)
    data = json.loads(out.stdout)
    assert data["version"].startswith("5.3" if generation == "rpyc5" else "6."), data["version"]
    return data["results"]


def free_port():
    """A port free for both UDP and TCP on loopback."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("0.0.0.0", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def wait_for(self, key, timeout=15.0):
        """Returns the first message (old or new) containing `key`, e.g. 'READY=1'."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages:
                if key in m:
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key!r} on the notify socket; got {self.messages}")
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()
        self.dir.cleanup()


class Daemon:
    """A running rpyc-registryd: stderr goes to a file; READY=1 is awaited on NOTIFY_SOCKET."""

    def __init__(self, args, port=None, wait_ready=True, extra_env=None):
        require_binary(REGISTRYD)
        self.port = port or free_port()
        self.notify = NotifySocket()
        self.logfile = tempfile.NamedTemporaryFile(prefix="registryd-", suffix=".log", delete=False)
        env = dict(os.environ, NOTIFY_SOCKET=self.notify.path)
        env.pop("JOURNAL_STREAM", None)
        env.update(extra_env or {})
        self.proc = subprocess.Popen([str(REGISTRYD), "-p", str(self.port), *args], stdout=self.logfile,
                                     stderr=subprocess.STDOUT, env=env)
        if wait_ready:
            self.ready = self.notify.wait_for("READY=1")

    def log(self):
        return Path(self.logfile.name).read_text()

    def rss_kib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=5)
        finally:
            self.notify.close()
            os.unlink(self.logfile.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(Exception):
            self.notify.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.logfile.name)


def brine_request(cmd, args):
    """The request bytes, made by the real rpyc brine (not by our code)."""
    from rpyc.core import brine
    return brine.dump(("RPYC", cmd, args))


def udp_ask(port, data, timeout=1.0, host="127.0.0.1"):
    """Sends one datagram; returns the decoded reply, or None when nothing came back."""
    from rpyc.core import brine
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, (host, port))
        try:
            reply, _ = s.recvfrom(65536)
        except socket.timeout:
            return None
        return ("reply", brine.load(reply))


def wait_until(pred, timeout=5.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
