"""rpyc-classicd and rpyc-registryd as an operator meets them (issue 14): a failed start says why
on stderr whatever the log destination, the reference's shutdown lines in its order, and the
signals logrotate and a person send (SIGUSR1 status, SIGUSR2 reopens the log, SIGHUP reloads).

Every test drives the built binaries; the connections are made by the real rpyc clients.
"""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from classic_support import CLASSICD, PYTHON, REFERENCE, Daemon, free_port, wait_for

REGISTRYD = Path(os.environ.get("RPYC_REGISTRYD",
                                Path(__file__).resolve().parents[3] /
                                "build/dev/daemons/registryd/rpyc-registryd"))

pytestmark = pytest.mark.skipif(REFERENCE, reason="the daemons' own operator behaviour")

# 192.0.2.1 (TEST-NET-1) is on no interface here: binding it fails with EADDRNOTAVAIL.
UNASSIGNED = "192.0.2.1"


def no_journal_env():
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    return env


def log_lines(text):
    """The log file's lines without their timestamps ("Dec 04 21:00:00 ")."""
    return [re.sub(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d ", "", line) for line in text.splitlines()]


# --- a failed start ------------------------------------------------------------------------------

@pytest.mark.parametrize("exe,log", [("classicd", "file"), ("classicd", "journal"),
                                     ("registryd", "journal")])
def test_a_failed_start_reaches_stderr_whatever_the_log_destination(exe, log, tmp_path):
    """--log file, or --log journal with no journal (the socket is missing, sd_journal_sendv fails
    quietly): the reason still reaches stderr, as sshd's does."""
    binary = CLASSICD if exe == "classicd" else REGISTRYD
    logfile = tmp_path / "d.log"
    args = [str(binary), "--log", log, "-p", str(free_port()), "--host", UNASSIGNED]
    if log == "file":
        args += ["--logfile", str(logfile)]
    env = no_journal_env()
    p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p
    assert "Cannot assign requested address" in p.stderr and UNASSIGNED in p.stderr, p.stderr
    assert p.stderr.startswith(f"rpyc-{exe}: "), p.stderr
    if log == "file":
        assert "Cannot assign requested address" in logfile.read_text()


def test_a_failed_start_to_stderr_is_said_once(tmp_path):
    """With stderr as the log the reason is not written twice."""
    p = subprocess.run([str(CLASSICD), "--log", "stderr", "-p", str(free_port()), "--host",
                        UNASSIGNED], env=no_journal_env(), capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 1
    assert p.stderr.count("Cannot assign requested address") == 1, p.stderr


def test_a_failed_start_names_the_cause_and_no_termination(tmp_path):
    logfile = tmp_path / "d.log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run([str(CLASSICD), "--logfile", str(logfile), "-p", str(port)],
                           env=no_journal_env(), capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    assert p.returncode == 1
    text = logfile.read_text()
    assert "Address already in use" in text, text
    assert "server has terminated" not in text, text
    assert "server has terminated" not in p.stderr, p.stderr


# --- stopping ------------------------------------------------------------------------------------

def test_sigint_logs_the_reference_lines_in_its_order(tmp_path):
    d = Daemon(tmp_path)
    d.wait_for_log("server started on")
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(timeout=15) == 0
    lines = log_lines(d.log())
    name = f"SLAVE/{d.port}"
    want = [f"WARNING:{name}:keyboard interrupt!", f"INFO:{name}:server has terminated",
            f"INFO:{name}:listener closed"]
    at = [lines.index(w) if w in lines else -1 for w in want]
    assert -1 not in at and at == sorted(at), (at, lines)
    assert sum("server has terminated" in line for line in lines) == 1, lines


# --- signals: status, log reopening, reload ------------------------------------------------------

def start_registryd(tmp_path, logfile):
    port = free_port()
    p = subprocess.Popen([str(REGISTRYD), "-p", str(port), "--logfile", str(logfile)],
                         env=no_journal_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: logfile.exists() and "server started" in logfile.read_text(), 15,
             "registryd started")
    return p, port


def test_classicd_sigusr1_logs_a_status_line_and_keeps_running(tmp_path):
    d = Daemon(tmp_path)
    d.proc.send_signal(signal.SIGUSR1)
    d.wait_for_log("status: ")
    line = next(line for line in log_lines(d.log()) if ":status: " in line)
    assert re.search(r"INFO:SLAVE/\d+:status: \d+ connections?, \d+ served, \d+ requests?$", line), line
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_registryd_sigusr1_logs_a_status_line_and_keeps_running(tmp_path):
    logfile = tmp_path / "r.log"
    p, _ = start_registryd(tmp_path, logfile)
    try:
        p.send_signal(signal.SIGUSR1)
        wait_for(lambda: ":status: " in logfile.read_text(), 10, "status line")
        assert re.search(r"INFO:REGSRV[^:]*:status: \d+ services?, \d+ servers?\n",
                         logfile.read_text()), logfile.read_text()
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0


def rotate(logfile):
    rotated = logfile.with_name(logfile.name + ".1")
    logfile.rename(rotated)
    return rotated


def test_classicd_sigusr2_reopens_the_log_without_a_reload(tmp_path):
    d = Daemon(tmp_path)
    rotated = rotate(d.logfile)
    d.proc.send_signal(signal.SIGUSR2)
    wait_for(lambda: d.logfile.exists(), 10, "a new log file")
    socket.create_connection(("127.0.0.1", d.port), timeout=5).close()
    d.wait_for_log("accepted")
    assert "accepted" not in rotated.read_text()
    assert "reload" not in d.log() and "reload" not in rotated.read_text()
    assert d.stop() == 0


def test_registryd_sigusr2_reopens_the_log_without_a_reload(tmp_path):
    logfile = tmp_path / "r.log"
    p, port = start_registryd(tmp_path, logfile)
    try:
        rotated = rotate(logfile)
        p.send_signal(signal.SIGUSR2)
        wait_for(lambda: logfile.exists(), 10, "a new log file")
        p.send_signal(signal.SIGUSR1)
        wait_for(lambda: logfile.exists() and ":status: " in logfile.read_text(), 10,
                 "status in the new file")
        assert ":status: " not in rotated.read_text()
        assert "reload" not in logfile.read_text() + rotated.read_text()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0


def test_sighup_still_reloads(tmp_path):
    d = Daemon(tmp_path)
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for_log("reload:")
    assert d.stop() == 0


# --- the start line ------------------------------------------------------------------------------

def test_the_start_line_states_the_posture(tmp_path):
    sock = tmp_path / "c.sock"
    d = Daemon(tmp_path, extra_args=["-m", "threadpool", "--unix-socket", str(sock)])
    try:
        d.wait_for_log("server started on")
        line = next((line for line in log_lines(d.log()) if "starting: mode" in line), None)
        assert line is not None, d.log()
        assert re.fullmatch(
            rf"INFO:SLAVE/{d.port}:rpyc-classicd \d+\.\d+\.\d+\S* starting: mode threadpool, "
            rf"listening on \[127\.0\.0\.1\]:{d.port}, unix:{re.escape(str(sock))}; "
            r"plain TCP, no TLS, no client certificates", line), line
    finally:
        assert d.stop() == 0


# --- the listen backlog --------------------------------------------------------------------------

BURST = r"""
import os, re, resource, signal, socket, subprocess, sys, time
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
cmd = sys.argv[1:]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
d = subprocess.Popen([*cmd, "-p", str(port)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 20
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        break
    except OSError:
        assert time.monotonic() < deadline and d.poll() is None, "daemon did not listen"
        time.sleep(0.05)

def overflows():
    lines = open("/proc/net/netstat").read().splitlines()
    for names, values in zip(lines[0::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split()[1:], values.split()[1:]))["ListenOverflows"])

ss = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
print("SENDQ", ss.split()[2])
print("SOMAXCONN", open("/proc/sys/net/core/somaxconn").read().strip())
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
before = overflows()
os.kill(d.pid, signal.SIGSTOP)  # the accept loop busy: nothing is accepted during the burst
socks = []
for _ in range(2000):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", port))
    socks.append(c)
time.sleep(1.5)
print("OVERFLOWS", overflows() - before)
for c in socks:
    c.close()
os.kill(d.pid, signal.SIGCONT)
d.terminate()
print("RC", d.wait(timeout=20))
"""


def burst(tmp_path, cmd):
    script = tmp_path / "burst.py"
    script.write_text(BURST)
    p = subprocess.run(["unshare", "-rn", PYTHON, str(script), *cmd], capture_output=True,
                       text=True, timeout=120, env=no_journal_env())
    assert p.returncode == 0, (p.stdout, p.stderr)
    return dict(line.split(" ", 1) for line in p.stdout.splitlines())


@pytest.mark.parametrize("exe", ["classicd", "registryd"])
def test_a_burst_of_2000_connects_fits_the_default_backlog(exe, tmp_path):
    """The default backlog is the kernel's maximum (ss shows it as the listener's Send-Q), and
    2,000 simultaneous connects to a daemon that accepts none meanwhile overflow nothing
    (ListenOverflows, in a private network namespace). A small listen-backlog does overflow:
    the check can fail."""
    if subprocess.run(["unshare", "-rn", "true"]).returncode != 0:
        pytest.skip("no user and network namespaces here (unshare -rn)")
    if exe == "classicd":
        cmd = [str(CLASSICD), "--max-connections-per-peer", "0", "--max-connections", "5000"]
    else:
        cmd = [str(REGISTRYD), "-m", "TCP", "--host", "127.0.0.1"]
    r = burst(tmp_path, cmd)
    assert r["SENDQ"] == r["SOMAXCONN"], r
    assert r["OVERFLOWS"] == "0", r
    assert r["RC"] == "0", r
    small = burst(tmp_path, [*cmd, "--listen-backlog", "128"])
    assert small["SENDQ"] == "128", small
    assert int(small["OVERFLOWS"]) > 0, small


# --- registration when the registry's name does not resolve yet ----------------------------------

LATE_DNS = r"""
import os, socket, subprocess, sys, time
classicd, registryd, tmp = sys.argv[1:]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
hosts = os.path.join(tmp, "hosts")
with open(hosts, "w") as f:
    f.write("127.0.0.1 localhost\n")
subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)
def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
rport, cport = port(), port()
rlog, clog = os.path.join(tmp, "r.log"), os.path.join(tmp, "c.log")
reg = subprocess.Popen([registryd, "-p", str(rport), "--host", "127.0.0.1", "--logfile", rlog],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
cls = subprocess.Popen([classicd, "-p", str(cport), "--register", "--registry-host",
                        "registry.test", "--registry-port", str(rport), "--logfile", clog],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def wait(path, needle, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and needle in open(path).read():
            return True
        time.sleep(0.05)
    return False
print("FAILED-LOOKUP", wait(clog, "does not resolve", 15))
time.sleep(2.5)  # a few lookups fail
with open(hosts, "a") as f:  # the name appears (DNS is up), the file stays bind-mounted
    f.write("127.0.0.1 registry.test\n")
print("RECOVERED", wait(clog, "resolves now", 20))
print("ACKNOWLEDGED", wait(clog, f"registry registry.test:{rport} acknowledged", 20))
print("ALIVE", cls.poll() is None)
cls.terminate()
reg.terminate()
print("RC", cls.wait(timeout=20))
reg.wait(timeout=20)
"""


def test_registration_waits_for_the_registry_name_to_resolve(tmp_path):
    if subprocess.run(["unshare", "-rmn", "true"]).returncode != 0:
        pytest.skip("no user, mount and network namespaces here (unshare -rmn)")
    script = tmp_path / "late_dns.py"
    script.write_text(LATE_DNS)
    p = subprocess.run(["unshare", "-rmn", PYTHON, str(script), str(CLASSICD), str(REGISTRYD),
                        str(tmp_path)], capture_output=True, text=True, timeout=120,
                       env=no_journal_env())
    log = (tmp_path / "c.log").read_text() if (tmp_path / "c.log").exists() else ""
    assert p.returncode == 0, (p.stdout, p.stderr, log)
    r = dict(line.split(" ", 1) for line in p.stdout.splitlines())
    assert r == {"FAILED-LOOKUP": "True", "RECOVERED": "True", "ACKNOWLEDGED": "True",
                 "ALIVE": "True", "RC": "0"}, (r, log)
    lines = log_lines(log)
    # The failure is one warning, then debug lines; the recovery is logged once.
    warnings = [line for line in lines if "does not resolve" in line and "WARNING" in line]
    assert len(warnings) == 1, lines
    assert sum("resolves now" in line for line in lines) == 1, lines


# --- which lines are at which level --------------------------------------------------------------

def test_the_reference_lines_are_info_ours_debug_and_refusals_warnings(tmp_path):
    """The level contract a --log-level threshold relies on: the reference's per-connection lines
    (accepted, welcome, goodbye) are INFO, our own (how it ended, objects lent) DEBUG, and a
    refusal by an admission limit a WARNING naming the limit."""
    d = Daemon(tmp_path, extra_args=["--max-connections-per-peer", "1"])
    try:
        first = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        d.wait_for_log("welcome")
        second = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        d.wait_for_log("refused")
        second.close()
        first.close()
        d.wait_for_log("goodbye")
        lines = log_lines(d.log())

        def level(needle):
            found = [line.split(":", 1)[0] for line in lines if needle in line]
            assert found, (needle, lines)
            return set(found)

        assert level("accepted (") == {"INFO"}
        assert level("welcome (") == {"INFO"}
        assert level("goodbye (") == {"INFO"}
        assert level(") ended: ") == {"DEBUG"}
        assert level("objects lent at disconnect") == {"DEBUG"}
        assert level("refused (") == {"WARNING"}
        assert any("refused (" in line and "(max_connections_per_peer)" in line for line in lines)
    finally:
        assert d.stop() == 0


def test_log_file_without_a_logfile_is_refused(tmp_path):
    """--log file with no --logfile would log nowhere: a usage error (a configuration error
    when both come from the file)."""
    p = subprocess.run([str(CLASSICD), "--log", "file", "-p", str(free_port())],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 64, p
    assert "--log file requires --logfile" in p.stderr, p.stderr
    conf = tmp_path / "c.toml"
    conf.write_text('log = "file"\n')
    p = subprocess.run([str(CLASSICD), "-c", str(conf), "--check-config"], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 78, p
    assert f"{conf}:1: key 'log': log = \"file\" requires logfile" in p.stderr, p.stderr
