"""The classic session: modules, eval/execute/namespace, builtins (issue 4, first test group)."""

from classic_support import EXTRA_ARGS


def test_eval_execute_namespace(client):
    out = client.run("""
        conn = connect()
        assert conn.eval("1+1") == 2
        conn.execute("x = 40")
        assert conn.eval("x + 2") == 42
        assert conn.namespace["x"] == 40
        conn.namespace["y"] = "set by client"
        assert conn.eval("y") == "set by client"
        assert conn.eval("__name__") == "builtins"
        conn.execute("def f(a, b=2):\\n    return a * b")
        assert conn.namespace["f"](21) == 42
        assert conn.namespace["f"](a=5, b=3) == 15
        assert conn.eval("(1, 2.5, 'é', b'ab', None, True, frozenset({1}), 3+4j, 2**100)") == \\
            (1, 2.5, "é", b"ab", None, True, frozenset({1}), 3+4j, 2**100)
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_modules(client):
    out = client.run("""
        conn = connect()
        assert conn.modules.os.getpid() == int(sys.argv[1]) if len(sys.argv) > 1 else True
        print("PID", conn.modules.os.getpid())
        conn.modules.sys.path.append("/nonexistent-e2e")
        assert conn.modules.sys.path[-1] == "/nonexistent-e2e"
        assert conn.modules.sys.path.pop() == "/nonexistent-e2e"
        assert conn.modules["os.path"].join("a", "b") == "a/b"
        assert conn.modules.os.path.basename("/x/y.txt") == "y.txt"
        assert conn.modules["xml.dom.minidom"].parseString("<a/>").documentElement.tagName == "a"
        assert "os" in conn.modules
        assert "json" in conn.modules
        assert "no_such_module_e2e" not in conn.modules
        assert conn.builtins.len([1, 2, 3]) == 3
        assert conn.builtin.sum((1, 2, 3)) == 6
        assert conn.modules.json.loads('{"a": [1, 2]}')["a"][1] == 2
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")
    pid = int(out.split("PID ")[1].split()[0])
    if "forking" in EXTRA_ARGS:  # a child per connection; the parent never runs client code
        assert pid != client.daemon.pid
    else:
        assert pid == client.daemon.pid


def test_each_connection_has_its_own_namespace(client):
    out = client.run("""
        a, b = connect(), connect()
        a.execute("only_here = 1")
        assert a.eval("only_here") == 1
        try:
            b.eval("only_here")
        except NameError:
            pass
        else:
            raise AssertionError("namespace shared between connections")
        # Modules are shared by the process, as in the threaded Python server (forking: each
        # connection has a process of its own).
        a.modules.sys.e2e_marker = "shared"
        if "forking" in EXTRA_ARGS:
            assert not b.modules.builtins.hasattr(b.modules.sys, "e2e_marker")
        else:
            assert b.modules.sys.e2e_marker == "shared"
        del a.modules.sys.e2e_marker
        a.close(); b.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_root_service_interface(client):
    out = client.run("""
        conn = connect()
        assert conn.root.get_service_name() == "SLAVE"
        assert conn.root.exposed_get_service_name() == "SLAVE"
        assert tuple(conn.root.get_service_aliases()) == ("SLAVE",)
        assert conn.root.getmodule(("os", "path")).join("p", "q") == "p/q"
        assert conn.ping() is None
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_thread_local_data_belongs_to_one_connection(client):
    # threading.local data and contextvars set by one connection are never seen by another: not
    # by the next connection on a reused serving thread, nor by one served meanwhile.
    out = client.run("""
        SETUP = (
            "import sys, threading, contextvars\\n"
            "if not hasattr(sys, '_e2e_local'):\\n"
            "    sys._e2e_local = threading.local()\\n"
            "    sys._e2e_cv = contextvars.ContextVar('e2e_cv', default=None)\\n")
        READ = "(getattr(sys._e2e_local, 'who', None), sys._e2e_cv.get())"
        def write(conn, who):
            remote_exec(conn, f"sys._e2e_local.who = {who!r}; sys._e2e_cv.set({who!r})")
        for i in range(12):
            conn = connect()
            remote_exec(conn, SETUP)
            assert conn.eval(READ) == (None, None), (i, conn.eval(READ))
            write(conn, f"c{i}")
            assert conn.eval(READ) == (f"c{i}", f"c{i}")
            conn.close()
        a, b = connect(), connect()
        remote_exec(a, SETUP)
        remote_exec(b, SETUP)
        write(a, "a")
        assert b.eval(READ) == (None, None), b.eval(READ)
        write(b, "b")
        assert a.eval(READ) == ("a", "a"), a.eval(READ)
        a.close()
        b.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_close_is_prompt(client):
    # The 6.x client waits up to 30 s for a reply or EOF after its CLOSE (docs/protocol.md §9).
    out = client.run("""
        conn = connect()
        assert conn.eval("1") == 1
        t0 = time.monotonic()
        conn.close()
        elapsed = time.monotonic() - t0
        assert elapsed < 2, elapsed
        assert conn.closed
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_ipv6_loopback(tmp_path, native_only):
    import socket
    import subprocess
    import pytest
    from classic_support import PYTHON, Daemon
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    d = Daemon(tmp_path, extra_args=["--ipv6"], host="::1")
    try:
        out = subprocess.run(
            [PYTHON, "-c", f"import rpyc; c = rpyc.classic.connect('::1', {d.port}, ipv6=True); "
                           "print(c.eval('6*7')); c.close()"],
            capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "42", out.stderr
        d.wait_for_log("goodbye ('::1', ")
        assert f"server started on [::1]:{d.port}" in d.log()
        assert "accepted ('::1', " in d.log() and ", 0, 0) with fd " in d.log()
    finally:
        assert d.stop() == 0
