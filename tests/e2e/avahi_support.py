"""A private D-Bus system bus and avahi-daemon for the DNS-SD tests (recipe: /work/shared/DISCOVERY.md,
libcore/dnssd/README.md): a dbus-daemon on a socket in a temporary dir, and an avahi-daemon in a
private network and mount namespace (`unshare --net --mount`) with only loopback, multicast on.
Processes given `env` (DBUS_SYSTEM_BUS_ADDRESS) talk to that avahi-daemon; the machine's own bus
and Avahi are never touched. Needs root (unshare) and dbus, avahi-daemon, avahi-utils (installed
by .ci/setup)."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

TOOLS = ["/usr/bin/dbus-daemon", "/usr/sbin/avahi-daemon", "/usr/bin/avahi-browse", "/usr/bin/unshare"]

# The configurations libcore/dnssd's own tests use too.
TESTDATA = Path(__file__).resolve().parents[2] / "libcore/dnssd/testdata"


def require_avahi():
    missing = [t for t in TOOLS if not os.access(t, os.X_OK)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing (.ci/setup installs dbus, avahi-daemon, avahi-utils)")
    if os.geteuid() != 0:
        pytest.skip("a private avahi-daemon needs root (unshare --net --mount)")


def unescape(name):
    """avahi-browse -p escapes a name's ' ', '#', '.'... as \\DDD (decimal) or \\C."""
    return re.sub(r"\\(\d{3}|.)", lambda m: chr(int(m.group(1))) if len(m.group(1)) == 3 else m.group(1),
                  name)


class Resolved:
    """One resolved `avahi-browse -rtp` line: =;IFACE;PROTO;NAME;TYPE;DOMAIN;HOST;ADDRESS;PORT;TXT."""

    def __init__(self, line):
        f = line.split(";", 9)
        self.name = unescape(f[3])
        self.type = f[4]
        self.host = f[6]
        self.address = f[7]
        self.port = int(f[8])
        self.txt = re.findall(r'"([^"]*)"', f[9]) if len(f) > 9 else []

    def __repr__(self):
        return f"<{self.name!r} {self.type} {self.host} {self.address}:{self.port} {self.txt}>"


class PrivateAvahi:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="rpyc-avahi-"))
        self.bus = self.dir / "bus"
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={self.bus}")
        self.dbus = None
        self.avahi = None

    def start_bus(self):
        (self.dir / "dbus.conf").write_text((TESTDATA / "private-bus.conf").read_text().replace("@BUS@", str(self.bus)))
        with open(self.dir / "dbus.log", "ab") as log:
            self.dbus = subprocess.Popen(["dbus-daemon", "--nofork", f"--config-file={self.dir}/dbus.conf"],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self.bus.exists():
            if time.monotonic() > deadline or self.dbus.poll() is not None:
                raise AssertionError(f"dbus-daemon did not start: {(self.dir / 'dbus.log').read_text()}")
            time.sleep(0.02)
        return self

    def start_avahi(self):
        (self.dir / "avahi.conf").write_text((TESTDATA / "private-avahi.conf").read_text())
        log_path = self.dir / "avahi.log"
        log_path.write_bytes(b"")
        script = ("set -e; mkdir -p /run/avahi-daemon; mount -t tmpfs tmpfs /run/avahi-daemon; "
                  "ip link set lo up; ip link set lo multicast on; ip route add 224.0.0.0/4 dev lo; "
                  f"exec avahi-daemon -f {self.dir}/avahi.conf --no-drop-root --no-chroot --no-rlimits")
        with open(log_path, "ab") as log:
            # unshare execs sh, which execs avahi-daemon: self.avahi.pid is avahi-daemon's.
            self.avahi = subprocess.Popen(["unshare", "--net", "--mount", "sh", "-c", script],
                                          stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 15
        while "Server startup complete" not in log_path.read_text():
            if time.monotonic() > deadline or self.avahi.poll() is not None:
                raise AssertionError(f"avahi-daemon did not start: {log_path.read_text()[:600]}")
            time.sleep(0.05)
        return self

    def stop_avahi(self):
        if self.avahi is not None:
            if self.avahi.poll() is None:
                self.avahi.send_signal(signal.SIGCONT)  # a test may have stopped it
                self.avahi.terminate()
                try:
                    self.avahi.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.avahi.kill()
                    self.avahi.wait()
            self.avahi = None

    def stop(self):
        self.stop_avahi()
        if self.dbus is not None and self.dbus.poll() is None:
            self.dbus.terminate()
            self.dbus.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def browse(self, service_type="_rpyc._tcp"):
        """The resolved services of `avahi-browse -rtp TYPE` (one snapshot)."""
        out = subprocess.run(["timeout", "5", "avahi-browse", "-rtp", service_type], env=self.env,
                             capture_output=True, text=True).stdout
        return [Resolved(line) for line in out.splitlines() if line.startswith("=;")]

    def wait_for(self, pred, service_type="_rpyc._tcp", timeout=15):
        """Browses until pred(list of Resolved) is true; returns the last list (fails after timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.browse(service_type)
            if pred(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"avahi-browse {service_type}: still {found}")
            time.sleep(0.1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
