"""rpyc-registryd as a system daemon: socket activation, sd_notify, signals, the command line
and the TOML file (table-driven: every error path gives its exit code and message)."""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from registry_support import (REGISTRYD, Daemon, NotifySocket, free_port, require_binary, run_client,
                              wait_until)

H = "127.0.0.1"


def run(args, timeout=10):
    require_binary(REGISTRYD)
    return subprocess.run([str(REGISTRYD), *args], capture_output=True, text=True, timeout=timeout)


def test_ready_status_stopping_and_sigterm_exit_0():
    with Daemon(["-m", "both"]) as d:
        assert "STATUS=0 services, 0 servers" in d.ready
        assert run_client("rpyc5", [["register", "UDP", H, d.port, ["A", "B"], 1]]) == [True]
        assert "2 services, 2 servers" in d.notify.wait_for("STATUS=2 services", timeout=10)
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=10) == 0
        d.notify.wait_for("STOPPING=1")
        assert "INFO:REGSRV:SIGTERM: stopping" in d.log()
        d.stop()


def test_sigint_exit_0_with_the_reference_warning():
    with Daemon([]) as d:
        d.proc.send_signal(signal.SIGINT)
        assert d.proc.wait(timeout=10) == 0
        assert "WARNING:REGSRV:User interrupt!\n" in d.log(), d.log()  # rpyc's registry.py
        d.stop()


def test_sighup_reopens_the_log_file_and_reloads(tmp_path):
    log = tmp_path / "registry.log"
    conf = tmp_path / "r.toml"
    conf.write_text("listing = false\n")
    with Daemon(["-f", str(log), "-c", str(conf)]) as d:
        assert run_client("rpyc5", [["list", "UDP", H, d.port]]) == [None]
        assert wait_until(lambda: "server started" in log.read_text())
        os.rename(log, tmp_path / "registry.log.1")
        conf.write_text("listing = true\n")
        d.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: log.exists() and "reload: applied listing false -> true" in log.read_text())
        assert run_client("rpyc5", [["list", "UDP", H, d.port]]) == [[]]
        assert "replying with ()" in log.read_text()
        old = (tmp_path / "registry.log.1").read_text()
        assert "listing is disabled" in old and "replying with" not in old
        assert d.stop() == 0


def socket_activate(extra, args, port, notify):
    cmd = ["systemd-socket-activate", *extra, "-l", f"{H}:{port}", "-E", f"NOTIFY_SOCKET={notify.path}",
           str(REGISTRYD), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("kind", ["stream", "datagram"])
def test_socket_activation(kind):
    require_binary(REGISTRYD)
    port = free_port()
    notify = NotifySocket()
    transport = "TCP" if kind == "stream" else "UDP"
    # The mode and port switches are ignored: the inherited socket decides.
    proc = socket_activate(["--datagram"] if kind == "datagram" else [], ["-m", "both", "-p", "1"], port,
                           notify)
    try:
        # Readiness: systemd-socket-activate binds at once; poll with ss (connecting would spawn).
        if shutil.which("ss"):
            ss = ["ss", "-Hln" + ("u" if kind == "datagram" else "t"), f"sport = :{port}"]
            assert wait_until(lambda: subprocess.run(ss, capture_output=True, text=True).stdout.strip() != "")
        else:
            time.sleep(1)
        # The first request starts the daemon, which then answers it on the inherited socket.
        results = run_client("rpyc5", [["register", transport, H, port, ["ACT"], 7],
                                       ["discover", transport, H, port, "act"]])
        assert results == [True, [[H, 7]]]
        assert "READY=1" in notify.wait_for("READY=1")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=5)
        assert proc.returncode == 0, out
        assert f"REGSRV/{transport}/{port}:server started on (inherited):{port} (socket activation)" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


GOOD_TOML = """\
# every key
mode = "both"
port = 18811
host = "0.0.0.0"
ipv6 = false
timeout = 240
listing = true
logfile = ""
quiet = false
log = "stderr"
max-entries = 65536
max-connections = 256
connection-timeout-ms = 5000
"""

CONFIG_ERRORS = [
    # (switches, TOML text or None, exit status, message part)
    (["--bogus"], None, 64, "unknown switch '--bogus' (try --help)"),
    (["-p", "70000"], None, 64, "--port: expected a number 0-65535, got '70000'"),
    (["-p", "x"], None, 64, "--port: expected a number 0-65535, got 'x'"),
    (["-p"], None, 64, "--port: expected a number 0-65535"),
    (["-m", "sctp"], None, 64, "--mode: expected one of UDP, TCP, both, got 'sctp'"),
    (["-t", "0"], None, 64, "--timeout: expected a number 1-"),
    (["-q", "maybe"], None, 64, "-q: expected a boolean (true/false/yes/no/on/off/1/0), got 'maybe'"),
    (["--listing=maybe"], None, 64, "--listing"),
    (["--log", "syslog"], None, 64, "--log: expected one of auto, stderr, journal, got 'syslog'"),
    (["--max-connections", "0"], None, 64, "--max-connections: expected a number 1-65536, got '0'"),
    ([], "bogus = 1\n", 78, ":1: key 'bogus': unknown key"),
    ([], "port = 1\n\nport2 = 3\n", 78, ":3: key 'port2': unknown key"),
    ([], "port = '18811'\n", 78, ":1: key 'port': expected a number 0-65535, found a string"),
    ([], "port = 65536\n", 78, ":1: key 'port': expected a number 0-65535, got 65536"),
    ([], "listing = 'yes'\n", 78, ":1: key 'listing': expected a boolean (true/false/yes/no/on/off/1/0), found a string"),
    ([], "mode = 'sctp'\n", 78, ":1: key 'mode': expected one of UDP, TCP, both, got 'sctp'"),
    ([], "timeout = -5\n", 78, ":1: key 'timeout': expected a number 1-"),
    ([], "max-entries = 0\n", 78, ":1: key 'max-entries': expected a number 1-"),
    ([], "port = = 1\n", 78, ":1:"),
    (["-c", "/nonexistent/registryd.toml"], None, 78, "/nonexistent/registryd.toml: cannot open"),
]


@pytest.mark.parametrize("switches,toml,status,message", CONFIG_ERRORS)
def test_config_errors(tmp_path, switches, toml, status, message):
    args = list(switches)
    if toml is not None:
        path = tmp_path / "bad.toml"
        path.write_text(toml)
        args += ["-c", str(path)]
        if message.startswith(":"):
            message = str(path) + message
    out = run(args + ["--check-config"])
    assert out.returncode == status, out.stderr
    assert out.stderr.startswith("rpyc-registryd: "), out.stderr
    assert message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_check_config_version_help(tmp_path):
    conf = tmp_path / "good.toml"
    conf.write_text(GOOD_TOML)
    out = run(["-c", str(conf), "--check-config"])
    assert out.returncode == 0, out.stderr
    assert "configuration OK" in out.stdout
    out = run(["--version"])
    assert out.returncode == 0 and out.stdout.startswith("rpyc-registryd ")
    out = run(["--help"])
    assert out.returncode == 0
    for switch in ["-m,--mode", "-p,--port", "-f,--file", "-q,--quiet", "-t,--timeout", "-l,--listing",
                   "--host", "--ipv6", "-c,--config", "--check-config", "--version"]:
        assert switch in out.stdout, switch


def test_file_beats_default_and_switch_beats_file(tmp_path):
    conf = tmp_path / "r.toml"
    port = free_port()
    conf.write_text(f"port = {port}\nlisting = true\nmode = 'tcp'\n")
    with Daemon(["-c", str(conf), "-m", "udp"], port=port) as d:
        # -p from the harness equals the file's port; listing from the file; UDP from the switch
        assert run_client("rpyc5", [["list", "UDP", H, port]]) == [[]]
        assert d.stop() == 0


def test_bind_failure_exits_1():
    port = free_port()
    with Daemon(["-m", "UDP"], port=port) as d:
        out = run(["-m", "UDP", "-p", str(port)])
        assert out.returncode == 1
        assert "bind udp 0.0.0.0:" in out.stderr and "in use" in out.stderr, out.stderr
        assert d.stop() == 0
