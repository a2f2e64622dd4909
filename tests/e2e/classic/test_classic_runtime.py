"""rpyc-classicd's runtime: SIGHUP reload of the configuration file, STATUS= counts, exit codes
of option errors that come from the file, connection threads reused in threaded mode."""

import os
import signal
import socket
import subprocess
import time

import pytest
import rpyc

from classic_support import CLASSICD, REFERENCE, Daemon, wait_for

pytestmark = pytest.mark.skipif(REFERENCE, reason="rpyc-classicd's own daemon behaviour")


def test_cross_option_error_in_the_file_exits_78_and_names_it(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text("port = 0\nssl_keyfile = \"/k.pem\"\n")
    r = subprocess.run([str(CLASSICD), "-c", str(conf), "--check-config"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 78, r.stderr
    assert f"{conf}:2: key 'ssl_keyfile': requires ssl_certfile" in r.stderr, r.stderr
    # The same rule broken on the command line stays a usage error.
    r = subprocess.run([str(CLASSICD), "--ssl-keyfile", "/k.pem", "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 64 and "--ssl-keyfile requires --ssl-certfile" in r.stderr, r.stderr


class Notify:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(20)
        self.path = str(path)
        self.msgs = []

    def wait(self, pred, what):
        deadline = time.monotonic() + 20
        while True:
            for m in self.msgs:
                if pred(m):
                    return m
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} in {self.msgs}")
            self.msgs.append(self.sock.recv(4096).decode())


def start(tmp_path, config_text):
    """Starts the daemon with a config file and a notify socket; returns (proc, port, log,
    notify, conf)."""
    conf = tmp_path / "c.toml"
    conf.write_text(config_text)
    notify = Notify(tmp_path / "n.sock")
    log = tmp_path / "d.log"
    env = dict(os.environ, NOTIFY_SOCKET=notify.path)
    p = subprocess.Popen([str(CLASSICD), "-c", str(conf), "--logfile", str(log)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    notify.wait(lambda m: "READY=1" in m, "READY=1")
    wait_for(lambda: "server started on" in log.read_text(), what="server started")
    port = int(log.read_text().split("server started on [127.0.0.1]:")[1].split()[0])
    return p, port, log, notify, conf


def stop(p, notify):
    p.terminate()
    assert p.wait(timeout=15) == 0
    notify.sock.close()


def test_status_counts_connections_and_requests(tmp_path):
    p, port, _, notify, _ = start(tmp_path, "port = 0\n")
    try:
        ready = notify.wait(lambda m: "READY=1" in m, "READY=1")
        assert "STATUS=0 connections, 0 served, 0 requests" in ready, ready
        c = rpyc.classic.connect("127.0.0.1", port)
        for i in range(20):
            assert c.eval(f"{i}+1") == i + 1
        live = notify.wait(lambda m: m.startswith("STATUS=1 connections, 0 served, "), "live count")
        assert int(live.split(", ")[2].split()[0]) >= 20, live
        c.close()
        done = notify.wait(lambda m: m.startswith("STATUS=0 connections, 1 served, "), "served")
        assert int(done.split(", ")[2].split()[0]) >= 20, done
    finally:
        stop(p, notify)


def test_sighup_reloads_the_file_and_keeps_it_on_error(tmp_path):
    p, port, log, notify, conf = start(tmp_path, "port = 0\nmax_connections_per_peer = 0\n")
    try:
        a = rpyc.classic.connect("127.0.0.1", port)
        b = rpyc.classic.connect("127.0.0.1", port)
        assert a.eval("1") == 1 and b.eval("2") == 2
        b.close()

        # A limit and the log level apply at once; a listener key needs a restart.
        conf.write_text("port = 1\nmax_connections_per_peer = 1\nidle_timeout = 600\n")
        notify.msgs.clear()
        p.send_signal(signal.SIGHUP)
        reloading = notify.wait(lambda m: "RELOADING=1" in m, "RELOADING=1")
        assert "MONOTONIC_USEC=" in reloading, reloading
        notify.wait(lambda m: "READY=1" in m, "READY=1 after the reload")
        wait_for(lambda: "reload: applied" in log.read_text(), what="applied")
        text = log.read_text()
        assert (f"INFO:SLAVE/{port}:reload: applied max_connections_per_peer 0 -> 1, "
                "idle_timeout 0 -> 600\n") in text, text
        assert f"WARNING:SLAVE/{port}:reload: needs a restart to apply: port 0 -> 1\n" in text, text
        try:
            c = rpyc.classic.connect("127.0.0.1", port)  # a is still open: over the new limit
            c.eval("1")
            refused = False
        except (EOFError, ConnectionError, OSError):
            refused = True
        assert refused, "the reloaded per-peer limit was not applied"
        assert a.eval("3") == 3  # existing connections are kept

        # A broken file: the running configuration stays, the error names file:line.
        conf.write_text("max_connections_per_peer = 1\nbogus = 2\n")
        notify.msgs.clear()
        p.send_signal(signal.SIGHUP)
        notify.wait(lambda m: "READY=1" in m, "READY=1 after the failed reload")
        wait_for(lambda: "keeping the running configuration" in log.read_text(), what="kept")
        assert f"{conf}:2: key 'bogus': unknown key" in log.read_text()
        a.close()

        # quiet = true applies to the loggers already running: no more welcome lines.
        conf.write_text("port = 0\nquiet = true\n")
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: applied quiet false -> true" in log.read_text(),
                 what="quiet applied")
        before = log.read_text().count("welcome")
        c = rpyc.classic.connect("127.0.0.1", port)
        assert c.eval("4") == 4
        c.close()
        time.sleep(0.3)
        assert log.read_text().count("welcome") == before

        # Turning quiet off is reported too (at the new level), and so is every later reload.
        conf.write_text("port = 0\n")
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: applied quiet true -> false" in log.read_text(),
                 what="quiet off reported")
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: configuration unchanged" in log.read_text(),
                 what="an unchanged reload reported")
    finally:
        stop(p, notify)


def test_threaded_mode_reuses_connection_threads(tmp_path):
    d = Daemon(tmp_path, extra_args=["-m", "threaded"])
    try:
        idents = set()
        for _ in range(10):
            c = rpyc.classic.connect("127.0.0.1", d.port)
            idents.add(c.eval("__import__('threading').get_native_id()"))
            c.close()
            time.sleep(0.05)  # the thread goes back to waiting before the next connection
        # The accepting thread serves; while it does, another waits to accept (one is started
        # for that once): the two take turns, no thread per connection.
        assert len(idents) <= 2, idents
        # Concurrent connections still get a thread each.
        cs = [rpyc.classic.connect("127.0.0.1", d.port) for _ in range(3)]
        ids = {c.eval("__import__('threading').get_native_id()") for c in cs}
        assert len(ids) == 3, ids
        for c in cs:
            c.close()
    finally:
        assert d.stop() == 0
