"""The daemon as a server: lifetime of lent objects, many clients, hostile input, signals."""

import re
import socket
import struct
import time
import zlib

import pytest

from classic_support import EXTRA_ARGS


def lent_counts(log, port):
    """(lent at disconnect, left after release) for the connection from local `port`."""
    m = re.search(rf"connection \('127\.0\.0\.1', {port}\): (\d+) objects lent at disconnect, "
                  rf"(\d+) after release", log)
    assert m, f"no lifetime line for port {port}:\n{log}"
    return int(m.group(1)), int(m.group(2))


def test_object_table_is_empty_after_proxies_die_and_after_disconnect(client, native_only):
    out = client.run("""
        import gc
        def session(work):
            conn = connect()
            port = conn._channel.stream.sock.getsockname()[1]
            if work:
                keep = [conn.eval(f"[{i}]") for i in range(200)]
                keep += [conn.modules.builtins.object() for _ in range(50)]
                assert len(keep) == 250
                del keep
                gc.collect()
                conn.ping()   # the DELs were sent before this and are served in order
            conn.close()
            return port
        print("PORTS", session(False), session(True))
    """)
    idle_port, busy_port = map(int, out.split("PORTS ")[1].split())
    d = client.daemon
    d.wait_for_log(f"goodbye ('127.0.0.1', {busy_port})")
    idle = lent_counts(d.log(), idle_port)
    busy = lent_counts(d.log(), busy_port)
    assert idle[1] == 0 and busy[1] == 0
    # Everything the busy client dropped was released; what is left is what any session holds
    # until it closes (root, modules, eval/execute, namespace).
    assert busy[0] == idle[0], (idle, busy)


def test_fifty_concurrent_clients(client):
    procs = [client.popen("""
        conn = connect()
        me = os.getpid()
        conn.execute(f"me = {me}")
        for i in range(20):
            conn.execute("acc = globals().get('acc', 0) + 1")
            assert conn.eval("me") == me
        assert conn.eval("acc") == 20
        assert conn.modules.os.getpid() != me
        conn.close()
        print("OK", me)
    """) for _ in range(50)]
    failures = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        if p.returncode != 0 or not out.startswith("OK"):
            failures.append((p.returncode, out, err[-2000:]))
    assert not failures, failures[:3]


def test_unknown_handler_is_an_exception_and_the_connection_survives(client):
    out = client.run("""
        conn = connect()
        try:
            conn.sync_request(99)
        except KeyError as e:
            assert e.args == (99,), e.args
        else:
            raise AssertionError("no KeyError")
        assert conn.eval("6*7") == 42
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def frame(payload, flag=0):
    return struct.pack("!LB", len(payload), flag) + payload + b"\n"


def read_until_closed(sock, timeout=10):
    """Reads until EOF; returns the bytes. Fails if the server keeps the socket open."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except socket.timeout:
            raise AssertionError("server did not close the connection")
        if not chunk:
            return data
        data += chunk


HOSTILE = {
    "garbage_payload": frame(b"\x12\x51\xff\xff"),
    "bound_threads_prefix": frame(struct.pack("!QQ", 0x7F0000001000, 0) + b"\x01\x11\x50\x11\x51\x02"),
    "truncated_message": frame(b"\x12\x51\x50"),
    "zlib_bomb": frame(zlib.compress(b"\x00" * (200 << 20), 9), flag=1),
    "deep_nesting": frame(b"\x12\x51\x50" + b"\x10" * 100000 + b"\x00"),
    "huge_length": struct.pack("!LB", 0xFFFFFFF0, 0),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_input_closes_only_that_connection(client, native_only, kind):
    # A well-behaved client is mid-session while a hostile one connects.
    good = client.popen("""
        conn = connect()
        print("READY", flush=True)
        sys.stdin.readline()
        assert conn.eval("sum(range(100))") == 4950
        conn.close()
        print("OK")
    """, stdin=__import__("subprocess").PIPE)
    assert good.stdout.readline().strip() == "READY"
    with socket.create_connection(("127.0.0.1", client.daemon.port)) as bad:
        bad_port = bad.getsockname()[1]
        bad.sendall(HOSTILE[kind])
        got = read_until_closed(bad)
    assert got == b"", got[:100]
    out, err = good.communicate("go\n", timeout=60)
    assert good.returncode == 0 and out.strip().endswith("OK"), (out, err)
    d = client.daemon
    d.wait_for_log(f"goodbye ('127.0.0.1', {bad_port})")
    line = next(l for l in d.log().splitlines()
                if f"connection ('127.0.0.1', {bad_port}) closed:" in l)
    assert "ERROR" in line and f"peer 127.0.0.1:{bad_port}" in line, line
    # The daemon is still fine for new clients.
    assert client.run("conn = connect(); print(conn.eval('1+1')); conn.close()").strip() == "2"


def test_sigterm_with_clients_connected_exits_zero(client, native_only):
    idle = client.popen("""
        conn = connect()
        print("READY", flush=True)
        try:
            conn.serve(60)   # until the server goes away
        except EOFError:
            print("EOF")
    """)
    assert idle.stdout.readline().strip() == "READY"
    t0 = time.monotonic()
    assert client.daemon.stop() == 0
    assert time.monotonic() - t0 < 10
    out, _ = idle.communicate(timeout=30)
    assert "EOF" in out
    assert "server has terminated" in client.daemon.log()


def test_sigterm_while_user_code_runs_exits_after_the_grace_period(client, native_only):
    busy = client.popen("""
        conn = connect()
        print("READY", flush=True)
        try:
            conn.execute("import time; time.sleep(60)")
        except EOFError:
            print("EOF")
    """)
    assert busy.stdout.readline().strip() == "READY"
    time.sleep(0.5)  # the execute request is being served
    t0 = time.monotonic()
    assert client.daemon.stop() == 0
    assert time.monotonic() - t0 < 12  # 5 s grace, then exit without joining
    out, _ = busy.communicate(timeout=30)
    assert "EOF" in out
    if "forking" in EXTRA_ARGS:  # the child got SIGTERM and ended; nothing left to wait for
        assert "still running user code" not in client.daemon.log()
    else:
        assert ("1 connections still running user code; exiting without waiting"
                in client.daemon.log())


def test_thread_bound_clients_are_refused_with_a_clear_error(client, native_only):
    if client.gen != "rpyc6":
        pytest.skip("5.3.0's bound mode cannot even send (docs/protocol.md §3.2)")
    client.env["RPYC_BIND_THREADS"] = "true"
    out = client.run("""
        try:
            conn = connect()
            conn.eval("1")
        except (EOFError, ConnectionError, OSError) as e:
            print("refused", type(e).__name__)
        else:
            raise AssertionError("a bound client was served")
    """)
    assert out.startswith("refused"), out
    client.daemon.wait_for_log("thread-bound frame")
    assert "RPYC_BIND_THREADS" in client.daemon.log()
