"""Every serving mode serves a hosted service (threaded, threadpool, forking, oneshot, stdio, and
socket activation with a listening socket, with a connected one and inetd-style on fds 0/1): the
same operations give what rpyc's ThreadedServer gives, with both client generations, and
on_connect and on_disconnect run once per connection."""

import os
import signal
import socket
import subprocess
import time

import pytest

from hosting_support import (CLASSICD, CONNECT_TCP, SERVICES, assert_same, differential,
                             free_port, require_generation, run_against, run_client)

CONN = "conn_service:ConnService"

OPS = """
    attempt(lambda: root.add(1, 2))
    attempt(lambda: root.get_service_name())
    attempt(lambda: root.call_back(lambda v: v * 3, 7))
    attempt(lambda: root.connid_ok())
    attempt(lambda: root.closed())
    attempt(lambda: root.ping())
    attempt(lambda: root.credentials())
"""

# Over a socket: what the service learns of it.
SOCKET_OPS = OPS + """
    mine = c._channel.stream.sock
    attempt(lambda: root.endpoints() == (mine.getpeername(), mine.getsockname()))
    attempt(lambda: root.sock_names() == (mine.getpeername(), mine.getsockname()))
    attempt(lambda: root.fileno())
"""

LOGGER_OPS = """
    attempt(lambda: root.logger())
"""


def reference(gen, ops, tmp_path):
    return run_against("python", gen, CONN, ops, tmp_path)


def hook_lines(path):
    return path.read_text().split("\n")[:-1] if path.exists() else []


def assert_hooks_once(path, connections=1):
    deadline = time.monotonic() + 10
    while len(hook_lines(path)) < 2 * connections and time.monotonic() < deadline:
        time.sleep(0.05)
    # A connection is its connid in its process (socket activation: a process each).
    seen = [(w, (c, pid)) for w, c, pid in (line.split() for line in hook_lines(path))]
    conns = {c for _, c in seen}
    assert len(conns) == connections, seen
    for conn in conns:
        assert [w for w, c in seen if c == conn] == ["connect", "disconnect"], seen


@pytest.fixture
def hooks(tmp_path, monkeypatch):
    path = tmp_path / "hooks"
    monkeypatch.setenv("HOSTING_HOOK_LOG", str(path))
    return path


def daemon_env():
    env = dict(os.environ, PYTHONPATH=str(SERVICES))
    env.pop("JOURNAL_STREAM", None)
    return env


@pytest.mark.parametrize("mode", ["threadpool", "forking"])
def test_many_connection_modes(gen, mode, tmp_path):
    differential(gen, CONN, SOCKET_OPS + LOGGER_OPS, tmp_path, extra_args=["-m", mode])


def test_oneshot(gen, tmp_path, hooks):
    require_generation(gen)
    expected = reference(gen, SOCKET_OPS + LOGGER_OPS, tmp_path)
    hooks.unlink()
    log = tmp_path / "oneshot.log"
    p = subprocess.Popen([str(CLASSICD), "-m", "oneshot", "-p", "0", "--logfile", str(log),
                          "--service", CONN], env=daemon_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"rpyc-oneshot\n"
        port = int(p.stdout.readline().decode().split("\t")[1])
        ours = run_client(gen, port, SOCKET_OPS + LOGGER_OPS)
        assert p.wait(timeout=15) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert_same(expected, ours)
    assert_hooks_once(hooks)
    assert f"INFO:CONN/{port}:goodbye" in log.read_text()


CONNECT_STDIO = """
import subprocess
proc = subprocess.Popen([os.environ['CLASSICD'], '-m', 'stdio', '--logfile',
                         os.environ['STDIO_LOG'], '--service', 'conn_service:ConnService'],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        env=dict(os.environ, PYTHONPATH=os.environ['SERVICES']))
c = rpyc.connect_stream(rpyc.PipeStream(proc.stdout, proc.stdin), service=ClientService)
"""


def test_stdio_over_pipes(gen, tmp_path, hooks, monkeypatch):
    require_generation(gen)
    expected = reference(gen, OPS, tmp_path)
    hooks.unlink()
    log = tmp_path / "stdio.log"
    monkeypatch.setenv("CLASSICD", str(CLASSICD))
    monkeypatch.setenv("STDIO_LOG", str(log))
    monkeypatch.setenv("SERVICES", str(SERVICES))
    ops = OPS + """
    attempt(lambda: root.endpoints())
    """
    ours = run_client(gen, 0, ops, connect=CONNECT_STDIO)
    assert_same(expected, ours[:-1])
    assert ours[-1] == ["value", "None"]  # no socket: no addresses
    assert_hooks_once(hooks)
    text = log.read_text()
    assert "INFO:CONN/stdio:goodbye" in text, text


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["listening", "accept", "inetd"])
def test_socket_activation(gen, how, tmp_path, hooks):
    """Accept=no (a listening socket), Accept=yes (the connection as fd 3) and inetd-style
    (the connection on fds 0/1, --mode stdio)."""
    require_generation(gen)
    ops = SOCKET_OPS + (LOGGER_OPS if how != "inetd" else "")
    expected = reference(gen, ops, tmp_path)
    hooks.unlink()
    port = free_port()
    log = tmp_path / f"{how}.log"
    args = {"listening": [], "accept": ["-a"], "inetd": ["--inetd", "-a"]}[how]
    mode = ["-m", "stdio"] if how == "inetd" else []
    act = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", *args,
                            "-E", "PYTHONPATH", "-E", "HOSTING_HOOK_LOG", str(CLASSICD), *mode,
                            "--logfile", str(log), "--service", CONN],
                           env=daemon_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        if how != "listening":  # the probe had a process of its own, which has ended
            wait_for(lambda: log.exists() and "server has terminated" in log.read_text(), 15,
                     "the probe's instance exits")
        ours = run_client(gen, port, ops, connect=CONNECT_TCP)
        if how != "listening":
            wait_for(lambda: log.read_text().count("server has terminated") >= 2, 15,
                     "the second instance exits")
    finally:
        act.send_signal(signal.SIGTERM)
        act.wait(timeout=15)
    assert_same(expected, ours)
    assert_hooks_once(hooks, connections=2)  # the probe and the client
    text = log.read_text()
    name = "CONN/stdio" if how == "inetd" else f"CONN/{port}"
    assert f"INFO:{name}:welcome" in text, text


@pytest.mark.parametrize("mode", ["threadpool", "forking"])
def test_on_connect_calls_the_client(gen, mode, tmp_path):
    from test_hosting_differential import ON_CONNECT_SETUP
    out = differential(gen, "calc_service:CalculatorService", """
        attempt(lambda: root.client_said())
        attempt(lambda: root.Counter(5).incr())
        bg.stop()
    """, tmp_path, extra_args=["-m", mode], setup=ON_CONNECT_SETUP)
    assert out == [["value", "'hello from the client'"], ["value", "6"]]


def test_forking_imports_in_the_parent_and_makes_an_instance_per_connection(gen, tmp_path,
                                                                           monkeypatch):
    """The module is imported once, by the parent, before any child (children start warm);
    each connection's child makes its own instance of the class."""
    from hosting_support import Server
    require_generation(gen)
    imports = tmp_path / "imports"
    monkeypatch.setenv("HOSTING_IMPORT_LOG", str(imports))
    server = Server("ours", gen, CONN, {}, tmp_path, ["-m", "forking"])
    try:
        out = run_client(gen, server.port, """
            c2 = rpyc.connect('127.0.0.1', int(os.environ['SERVER_PORT']))
            attempt(lambda: root.pid() != c2.root.pid() != os.getpid())
            attempt(lambda: (root.number(), c2.root.number()))
            c2.close()
        """)
    finally:
        assert server.stop() == 0
    assert out == [["value", "True"], ["value", "(1, 1)"]]
    assert imports.read_text().split() == [str(server.proc.pid)]
