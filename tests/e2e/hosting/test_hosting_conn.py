"""What a hosted service's code touches on its `conn`, the same under rpyc's ThreadedServer and
rpyc-classicd --service in the modes that serve many connections: conn._config's connid,
endpoints, logger and credentials, conn.fileno(), conn.closed, conn.ping(),
conn._channel.stream.sock, and conn.close() from a request, from a thread of the service's own and
from on_connect, with on_connect and on_disconnect run once per connection."""

import time

import pytest

from hosting_support import assert_same, differential, run_against

CONN = "conn_service:ConnService"
MODES = ["threaded", "threadpool", "forking"]


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def test_config_and_socket(gen, mode, tmp_path):
    out = differential(gen, CONN, """
        mine = c._channel.stream.sock
        attempt(lambda: root.connid_ok())
        attempt(lambda: root.config_keys())
        attempt(lambda: root.endpoints() == (mine.getpeername(), mine.getsockname()))
        attempt(lambda: root.sock_names() == (mine.getpeername(), mine.getsockname()))
        attempt(lambda: root.credentials())
        attempt(lambda: root.logger())
        attempt(lambda: root.fileno())
        attempt(lambda: root.closed())
        attempt(lambda: root.ping())
        c2 = rpyc.connect('127.0.0.1', int(os.environ['SERVER_PORT']))
        attempt(lambda: c2.root.connid() != root.connid())
        attempt(lambda: c2.root.endpoints()[1] == c2._channel.stream.sock.getsockname())
        c2.close()
    """, tmp_path, extra_args=["-m", mode])
    assert out[0] == ["value", "True"]
    assert out[1] == ["value", "['connid', 'credentials', 'endpoints', 'logger']"]
    assert out[2:5] == [["value", "True"], ["value", "True"], ["value", "None"]]
    assert out[5:] == [["value", "(True, True)"], ["value", "(True, True)"], ["value", "False"],
                       ["value", "None"], ["value", "True"], ["value", "True"]]


def test_logger_is_named_after_the_service_and_port(gen, tmp_path):
    out = differential(gen, CONN, """
        attempt(lambda: root.logger_name() == 'CONN/' + os.environ['SERVER_PORT'])
    """, tmp_path)
    assert out == [["value", "True"]]


def hooks(path):
    lines = path.read_text().split("\n") if path.exists() else []
    return sorted(tuple(line.split()[:2]) for line in lines if line)


def connections(kind, mode):
    """The readiness probe and the client; in forking mode rpyc-classicd forks no child for a
    connection closed before its first byte (the probe), so its service never sees it."""
    return 1 if kind == "ours" and mode == "forking" else 2


def check_hooks(path, connections):
    """Each of `connections` connections had one on_connect and one on_disconnect."""
    deadline = time.monotonic() + 10
    while len(hooks(path)) < 2 * connections and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = hooks(path)
    connids = {connid for _, connid in seen}
    assert len(connids) == connections, seen
    for connid in connids:
        assert [w for w, c in seen if c == connid and w in ("connect", "disconnect")] == \
            ["connect", "disconnect"], seen
    return seen


CLOSE_NOW = """
    attempt(lambda: root.add(1, 2))
    attempt(lambda: root.close_now())
    attempt(lambda: c.closed)
    attempt(lambda: root.add(1, 2))
"""

CLOSE_LATER = """
    import time
    attempt(lambda: root.close_later(0.3))
    time.sleep(1.5)
    attempt(lambda: c.closed or c.root.add(1, 2))
"""


@pytest.mark.parametrize("ops", [CLOSE_NOW, CLOSE_LATER], ids=["from_a_request", "from_a_thread"])
def test_close_from_service_code(gen, mode, ops, tmp_path, monkeypatch):
    outcomes = {}
    for kind in ("python", "ours"):
        log = tmp_path / f"hooks-{kind}"
        monkeypatch.setenv("HOSTING_HOOK_LOG", str(log))
        outcomes[kind] = run_against(kind, gen, CONN, ops, tmp_path,
                                     extra_args=["-m", mode])
        check_hooks(log, connections(kind, mode))
    assert_same(outcomes["python"], outcomes["ours"])


def test_close_from_on_connect(gen, mode, tmp_path, monkeypatch):
    ops = """
        import time
        time.sleep(0.5)
        attempt(lambda: c.root.add(1, 2))
        attempt(lambda: c.closed)
    """
    outcomes = {}
    for kind in ("python", "ours"):
        log = tmp_path / f"hooks-{kind}"
        monkeypatch.setenv("HOSTING_HOOK_LOG", str(log))
        outcomes[kind] = run_against(kind, gen, "conn_service:ClosingService", ops, tmp_path,
                                     extra_args=["-m", mode], root=False)
        seen = check_hooks(log, connections(kind, mode))
        assert [w for w, _ in seen].count("closed") == connections(kind, mode), seen
    assert_same(outcomes["python"], outcomes["ours"])
    assert outcomes["ours"][0][0] == "raise"


def test_the_service_logger_writes_to_the_daemon_log(gen, tmp_path):
    """conn._config['logger'] (CONN/PORT, as rpyc's server names it) writes to the daemon's log,
    from the daemon's --log-level up, with logger.exception()'s traceback."""
    from hosting_support import Server, require_generation, run_client
    require_generation(gen)
    server = Server("ours", gen, CONN, {}, tmp_path, ["--log-level", "info"])
    try:
        out = run_client(gen, server.port, """
            attempt(lambda: root.log('debug', 'hidden'))
            attempt(lambda: root.log('info', 'hello'))
            attempt(lambda: root.log('warning', 'careful'))
            attempt(lambda: root.log('exception', 'oops'))
        """)
    finally:
        server.stop()
    assert out == [["value", "None"]] * 4
    text = server.logfile.read_text()
    name = f"CONN/{server.port}"
    assert f"INFO:{name}:service says hello" in text, text
    assert f"WARNING:{name}:service says careful" in text, text
    assert f"ERROR:{name}:caught: oops\nTraceback (most recent call last):" in text, text
    assert "ValueError: the traceback of oops" in text
    assert "hidden" not in text


@pytest.mark.parametrize("mode", MODES)
def test_the_service_logger_follows_a_reload_of_the_log_level(gen, tmp_path, mode):
    """log-level info -> debug in the config file, SIGHUP: the service's debug lines reach the
    daemon's log from then on. Connections served in the daemon's process see the new level at
    once; in forking mode a child forked before the reload keeps the level it was forked with."""
    import os
    import signal
    import subprocess

    import rpyc

    from hosting_support import (CLASSICD, free_port, python_env, require_generation,
                                 run_client)
    require_generation(gen)
    port = free_port()
    conf = tmp_path / "conn.toml"
    log = tmp_path / "d.log"
    settings = f'host = "127.0.0.1"\nport = {port}\nservice = "{CONN}"\nmode = "{mode}"\n'
    conf.write_text(settings + 'log-level = "info"\n')
    proc = subprocess.Popen([str(CLASSICD), "-c", str(conf), "--logfile", str(log)],
                            env=python_env("rpyc5"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    read = lambda: log.read_text(errors="replace") if log.exists() else ""  # noqa: E731
    name = f"CONN/{port}"

    def wait_logged(text):
        deadline = time.monotonic() + 15
        while text not in read():
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{read()}"
            time.sleep(0.05)

    try:
        wait_logged("server started")
        earlier = rpyc.connect("127.0.0.1", port)  # open across the reload
        earlier.root.log("debug", "hidden before")
        assert run_client(gen, port, "attempt(lambda: root.log('debug', 'hidden too'))\n") == [
            ["value", "None"]]
        conf.write_text(settings + 'log-level = "debug"\n')
        os.kill(proc.pid, signal.SIGHUP)
        wait_logged("reload: applied log_level info -> debug")
        assert run_client(gen, port, "attempt(lambda: root.log('debug', 'shown after'))\n") == [
            ["value", "None"]]
        wait_logged(f"DEBUG:{name}:service says shown after")
        earlier.root.log("debug", "from the earlier connection")
        earlier.close()
        text = read()
        assert "hidden before" not in text and "hidden too" not in text, text
        # The earlier connection: its process's logger (forking: the child's, forked at the old
        # level, which it keeps).
        shown = f"DEBUG:{name}:service says from the earlier connection" in text
        assert shown == (mode != "forking"), text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
