"""Fault injection: clients killed mid-request, mid-frame and mid-handshake; SIGTERM and SIGHUP
under load; crashing, exiting and hanging children (forking); SystemExit, KeyboardInterrupt and
os._exit in client code (threaded, threadpool)."""

import os
import re
import signal
import socket
import time

import pytest

import sanitizer_support
from robust_support import (CLASSICD, REGISTRYD, Daemon, Watcher, children_of, client_env, client_hello,
                            end_lines, fd_count, free_port, lent_counts, long_only, native_only,
                            other_gen, pid_alive, popen_client, run_client, settle_baseline,
                            ssl_connect_expr, thread_count, tls_args, wait_for, zombies_of)

pytestmark = native_only

MODES = ["threaded", "threadpool", "forking"]

# What the killed client was doing when it got SIGKILL. Each prints "PORT <local port>" once the
# server is in the state to interrupt, then blocks.
VICTIMS = {
    # Inside a long call: the server is running user code for it when it dies.
    "mid_request": ("rpyc5", """
        c = rpyc.classic.connect("127.0.0.1", {port})
        print("PORT", c._channel.stream.sock.getsockname()[1], flush=True)
        c.execute("open({flag!r}, 'w').close(); import time; time.sleep(1.0)")
        time.sleep(60)
    """),
    # Half a frame written: a header announcing 1000 bytes, then 10 of them.
    "mid_frame": ("rpyc5", """
        import socket, struct
        s = socket.create_connection(("127.0.0.1", {port}))
        s.sendall(struct.pack("!LB", 1000, 0) + bytes([0x12, 0x51, 0x50]) + bytes(7))
        time.sleep(0.3)
        print("PORT", s.getsockname()[1], flush=True)
        time.sleep(60)
    """),
    # Half a TLS ClientHello.
    "mid_tls_handshake": ("rpyc5", """
        import socket
        hello = bytes.fromhex("{hello}")
        s = socket.create_connection(("127.0.0.1", {port}))
        s.sendall(hello[:len(hello) // 2])
        time.sleep(0.3)
        print("PORT", s.getsockname()[1], flush=True)
        time.sleep(60)
    """),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(VICTIMS))
def test_client_killed_is_logged_once_and_its_resources_freed(tmp_path, certs, mode, kind):
    tls = kind == "mid_tls_handshake"
    d = Daemon(tmp_path, extra_args=["-m", mode, *(tls_args(certs) if tls else [])])
    watcher = None
    try:
        settle_baseline(d)
        watcher = Watcher(other_gen(), d.port,
                          connect=ssl_connect_expr(certs) if tls else None)
        time.sleep(0.3)
        base_fds, base_threads = fd_count(d.pid), thread_count(d.pid)
        gen, script = VICTIMS[kind]
        flag = tmp_path / "inside-the-call"
        victim = popen_client(gen, script, port=d.port, hello=client_hello().hex(), flag=str(flag))
        line = victim.stdout.readline()
        assert line.startswith("PORT "), (line, victim.stderr.read() if victim.poll() else "")
        vport = int(line.split()[1])
        if kind == "mid_request":
            wait_for(flag.exists, 10, "the server inside the call")
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        wait_for(lambda: "goodbye ('127.0.0.1', %d)" % vport in d.log()
                 or (tls and end_lines(d.log(), vport)), 10, "the connection's end")
        wait_for(lambda: fd_count(d.pid) <= base_fds, 10, "fd count back to the baseline")
        if mode == "threaded":
            # Its thread may stay, parked for the next connection (ThreadCache), but only that one.
            wait_for(lambda: thread_count(d.pid) <= base_threads + 1, 10, "its thread gone or parked")
        log = d.log()
        ends = end_lines(log, vport)
        assert len(ends) == 1, f"expected one line for the killed client:\n{ends}\n{log}"
        if kind == "mid_frame":
            assert "ERROR" in ends[0] and "stream ended inside a frame" in ends[0], ends
        if tls:
            # A peer gone mid-handshake ended its connection; nothing failed (issue 14).
            assert "DEBUG" in ends[0], ends
            assert f"TLS handshake with 127.0.0.1:{vport}: the peer closed the connection" in ends[0], ends
            assert "welcome ('127.0.0.1', %d)" % vport not in log
        else:
            assert lent_counts(log, vport)[1] == 0, "objects still lent after release"
        if mode == "forking":
            wait_for(lambda: not zombies_of(d.pid), 10, "no zombie children")
        watcher.finish()
        watcher = None
    finally:
        if watcher:
            watcher.kill()
        assert d.stop() == 0


def discover(port):
    out = run_client("rpyc5", """
        from rpyc.utils.registry import UDPRegistryClient
        print(sorted(tuple(x) for x in UDPRegistryClient(ip="127.0.0.1", port={port}).discover("SLAVE")))
    """, port=port)
    return eval(out.strip())


LOAD = """
# {n} connections, each doing requests in its own thread until the server goes away.
conns = [rpyc.classic.connect("127.0.0.1", {port}) for _ in range({n})]
counts = [0] * len(conns)
errors = []
def work(i, c):
    try:
        while True:
            assert c.eval("{{}}*2".format(counts[i])) == counts[i] * 2
            counts[i] += 1
    except EOFError:
        pass
    except BaseException as e:
        errors.append(repr(e))
threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(conns)]
busy = rpyc.classic.connect("127.0.0.1", {port})  # in user code when SIGTERM comes: a slow exit
def sleep():
    try:
        busy.execute("import time; time.sleep(1.5)")
    except EOFError:
        pass
threads.append(threading.Thread(target=sleep))
for t in threads: t.start()
print("READY", flush=True)
for t in threads: t.join(30)
print("DONE", sum(counts), min(counts), "ERRORS", errors, flush=True)
"""


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_under_load_unregisters_closes_clients_and_exits_0(tmp_path, mode):
    if not REGISTRYD.exists():
        pytest.fail(f"registry binary not found: {REGISTRYD}")
    rport = free_port()
    reg = __import__("subprocess").Popen(
        [str(REGISTRYD), "-m", "UDP", "-p", str(rport), "--host", "127.0.0.1",
         "--logfile", str(tmp_path / "reg.log")])
    try:
        refused_while_stopping = False
        d = Daemon(tmp_path, extra_args=["-m", mode, "--register", "--registry-host", "127.0.0.1",
                                         "--registry-port", str(rport)])
        try:
            wait_for(lambda: ("127.0.0.1", d.port) in discover(rport), 10, "registered")
            load = popen_client(other_gen(), LOAD,
                                port=d.port, n=8)
            assert load.stdout.readline().strip() == "READY"
            time.sleep(1.0)
            t0 = time.monotonic()
            d.proc.send_signal(signal.SIGTERM)
            d.wait_for_log("listener closed")
            if d.proc.poll() is None:  # still finishing the busy call: no longer accepting
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", d.port), timeout=1).close()
                refused_while_stopping = True
            rc = d.proc.wait(timeout=15)
            took = time.monotonic() - t0
        finally:
            d.stop()
        assert rc == 0, d.log()
        assert refused_while_stopping or mode == "forking", "exited before the check"
        # Documented: stop accepting, unregister, shut connections down, wait up to 5 s, exit 0.
        assert took < 6.5, f"exit took {took:.1f} s"
        out, err = load.communicate(timeout=30)
        m = re.search(r"DONE (\d+) (\d+) ERRORS (.*)", out)
        assert m, (out, err)
        assert int(m.group(2)) > 0 and m.group(3) == "[]", (out, err)  # every client got EOF
        log = d.log()
        # The cause, then the reference's two lines in its order (rpyc's server.py: "server has
        # terminated" in start()'s finally, then close() says "listener closed").
        order = [log.index(s) for s in ("SIGTERM", "server has terminated", "listener closed")]
        assert order == sorted(order), log
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", d.port), timeout=1).close()
        assert ("127.0.0.1", d.port) not in discover(rport), "still registered after exit"
    finally:
        reg.terminate()
        reg.wait(timeout=10)


SIGHUP_CLIENT = """
# {n} TLS connections doing requests until stdin closes; every request must succeed.
port = {port}
conns = [{connect} for _ in range({n})]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
counts = [0] * len(conns)
errors = []
def work(i, c):
    try:
        while not stop.is_set():
            assert c.eval("{{}}+1".format(counts[i])) == counts[i] + 1
            counts[i] += 1
        c.close()
    except BaseException as e:
        errors.append(repr(e))
threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(conns)]
for t in threads: t.start()
print("READY", flush=True)
for t in threads: t.join()
print("DONE", sum(counts), min(counts), "ERRORS", errors, flush=True)
"""


@pytest.mark.parametrize("mode,gen", [
    ("threaded", "rpyc5"), ("threadpool", "rpyc6"), ("forking", "rpyc6"),
    pytest.param("threaded", "rpyc6", marks=long_only),
    pytest.param("threadpool", "rpyc5", marks=long_only),
    pytest.param("forking", "rpyc5", marks=long_only)])
def test_sighup_under_load_drops_no_connection_and_loses_no_request(tmp_path, certs, mode, gen):
    client_env(gen)
    d = Daemon(tmp_path, extra_args=["-m", mode, *tls_args(certs)])
    try:
        load = popen_client(gen, SIGHUP_CLIENT, n=6, port=d.port, connect=ssl_connect_expr(certs))
        assert load.stdout.readline().strip() == "READY", load.stderr.read()
        for i in range(4):
            time.sleep(0.4)
            os.replace(d.logfile, tmp_path / f"classicd.log.{i}")  # logrotate
            d.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: d.logfile.exists() and "reloaded" in d.log(), 10, f"reload {i}")
        # A connection made after the reloads is served with the (re-read) certificate.
        run_client(gen, "port = {port}\nc = " + ssl_connect_expr(certs) + "\nassert c.eval('1') == 1\nc.close()",
                   port=d.port)
        time.sleep(0.4)
        out, err = load.communicate("", timeout=60)
        assert load.returncode == 0, (out, err)
        m = re.search(r"DONE (\d+) (\d+) ERRORS (.*)", out)
        assert m and int(m.group(2)) > 0 and m.group(3) == "[]", (out, err)
        rotated = "".join((tmp_path / f"classicd.log.{i}").read_text() for i in range(4))
        assert (rotated + d.log()).count("TLS certificate and key reloaded") == 4
        assert "closed:" not in rotated + d.log(), "a connection was dropped"
    finally:
        assert d.stop() == 0


def test_forking_children_that_crash_exit_or_hang_affect_nobody(tmp_path, gen):
    d = Daemon(tmp_path, extra_args=["-m", "forking"])
    watcher = None
    try:
        settle_baseline(d)
        watcher = Watcher(gen, d.port)
        base_fds = fd_count(d.pid)
        out = run_client(gen, """
            import subprocess
            pids = []
            def victim(code, wait):
                c = rpyc.classic.connect("127.0.0.1", {port})
                pids.append(c.modules.os.getpid())
                if wait:
                    try:
                        c.execute(code)
                    except EOFError:
                        return
                    raise AssertionError("answered: " + code)
                rpyc.async_(c.root.execute)(code)  # fire and forget
                time.sleep(0.3)
                c._channel.stream.sock.close()  # the client goes away
            victim("import ctypes; ctypes.string_at(0)", True)   # segfault
            victim("import os; os._exit(5)", True)                # exit
            victim("import time; time.sleep(300)", False)         # hang, client gone
            c = rpyc.classic.connect("127.0.0.1", {port})
            assert c.eval("2**20") == 1 << 20
            c.close()
            print("PIDS", *pids)
        """, port=d.port)
        segv, exited, hung = map(int, out.split("PIDS")[1].split())
        assert {segv, exited, hung}.isdisjoint({d.pid})
        d.wait_for_log(f"child {segv} serving")
        # Under ASan the sanitizer catches the SEGV, reports it and exits the child with 1.
        asan = sanitizer_support.sanitizer(CLASSICD) == "asan"
        crashed = "exited with status 1" if asan else "was killed by signal 11"
        wait_for(lambda: crashed in d.log() and "exited with status 5" in d.log(),
                 10, "crash and exit logged")
        if asan:
            sanitizer_support.discard_reports("SEGV on unknown address")
        wait_for(lambda: not pid_alive(segv) and not pid_alive(exited), 10, "children gone")
        wait_for(lambda: not zombies_of(d.pid), 10, "no zombies")
        assert pid_alive(hung), "the hanging child should still be running its sleep"
        assert fd_count(d.pid) <= base_fds, "the parent leaks descriptors"
        watcher.finish()
        watcher = None
        t0 = time.monotonic()
        assert d.stop() == 0
        assert time.monotonic() - t0 < 7
        assert not pid_alive(hung), "the hanging child outlived the daemon"
        assert not [c for c, _ in children_of(d.pid)]
    finally:
        if watcher:
            watcher.kill()
        d.stop()


@pytest.mark.parametrize("mode", ["threaded", "threadpool"])
def test_systemexit_and_keyboardinterrupt_reach_the_client_os_exit_ends_the_daemon(
        tmp_path, mode, gen):
    """Documented in daemons/classicd/README.md (Client code and the daemon's process)."""
    d = Daemon(tmp_path, extra_args=["-m", mode])
    watcher = Watcher(gen, d.port)
    try:
        run_client(gen, """
            c = rpyc.classic.connect("127.0.0.1", {port})
            for code, exc in [("raise SystemExit(3)", SystemExit), ("import sys; sys.exit()", SystemExit),
                              ("raise KeyboardInterrupt", KeyboardInterrupt)]:
                try:
                    c.execute(code)
                except exc:
                    pass
                else:
                    raise AssertionError("no exception from " + code)
                assert c.eval("'still here'") == "still here"
            c.close()
        """, port=d.port)
        watcher.finish()
        # os._exit() in client code ends the process that runs it: here the daemon itself, with
        # that status (systemd's Restart=on-failure brings it back).
        watcher = Watcher(gen, d.port)
        run_client(gen, """
            c = rpyc.classic.connect("127.0.0.1", {port})
            try:
                c.execute("import os; os._exit(7)")
            except EOFError:
                print("EOF")
        """, port=d.port)
        assert d.proc.wait(timeout=10) == 7
        # The other client's next request fails (it exits on its own; stdin stays open).
        assert watcher.proc.wait(timeout=30) != 0, "the other client should have lost its connection"
        watcher = None
    finally:
        if watcher:
            watcher.kill()
        d.stop()
