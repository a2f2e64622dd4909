"""Builtins that read their caller's frame (eval, exec, globals, locals, vars, dir, type's
__module__), called through a netref: the Python server calls them from its own frames, and so
must we, in every serving mode, with each call's locals its own (docs/embedding.md §3.7).
RPYC_E2E_REFERENCE=1 runs the same checks against the Python server (its threaded mode)."""

import pytest

from classic_support import GENERATIONS, REFERENCE, RPYC6_PATH, Client, Daemon

MODES = ["threaded", "threadpool", "forking"]


@pytest.fixture(params=GENERATIONS)
def gen(request):
    if request.param == "rpyc6":
        if REFERENCE:
            pytest.skip("the 5.3.0 reference server does not speak the 6.x wire format")
        if not (RPYC6_PATH / "rpyc" / "__init__.py").exists():
            pytest.skip(f"rpyc 6.x client library not found at {RPYC6_PATH} (set RPYC6_PATH)")
    return request.param


@pytest.fixture(params=MODES)
def client(request, gen, tmp_path):
    d = Daemon(tmp_path, extra_args=["-m", request.param])
    yield Client(gen, d, tmp_path)
    rc = d.stop()
    if not REFERENCE:
        assert rc == 0, f"daemon exit status {rc} after SIGTERM\n{d.log()}"


def test_frame_reading_builtins_through_netrefs(client):
    out = client.run("""
        conn = connect()
        b = conn.builtins
        assert b.eval("6*7") == 42
        assert rpyc.async_(b.eval)("6*7").value == 42
        assert b.exec("x = 1") is None
        try:                         # exec's locals are the call's own, as in the Python server
            b.eval("x")
        except NameError:
            pass
        else:
            raise AssertionError("x outlived its exec")
        b.exec("global gx\\ngx = 5")
        assert b.eval("gx") == 5     # globals persist
        g = b.globals()
        assert "__name__" in g and g["gx"] == 5
        assert isinstance(dict(b.locals()), dict)
        assert isinstance(dict(b.vars()), dict)
        names = list(b.dir())
        assert names == sorted(names) and all(isinstance(n, str) for n in names)
        # A class made by type() takes its module from its caller's globals.
        # (read with getattr on the server: the client answers __module__ of a netref itself)
        assert b.getattr(b.type("X", (), b.dict()), "__module__") == g["__name__"]
        assert isinstance(conn.modules.sys._getframe().f_code.co_name, str)
        # Whatever runs no Python code of its own: a slot wrapper, a C-implemented callable.
        y = b.getattr(b.type, "__call__")(b.type, "Y", (), b.dict())  # a wrapper descriptor
        assert b.getattr(y, "__module__") == g["__name__"]
        assert conn.modules.functools.partial(b.eval, "7*6")() == 42
        # Another connection does not see this one's locals.
        b.exec("locals()['leak'] = 1")
        other = connect()
        try:
            other.builtins.eval("leak")
        except NameError:
            pass
        else:
            raise AssertionError("a call's locals reached another connection")
        other.close()
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_nested_call_gets_a_frame_of_its_own(client):
    # A request served while server-side Python code waits for the client (a callback) runs in
    # a frame like any other, as the Python server's nested requests run in its protocol's frames:
    # not in the frames of the code that waits (ours or the user's), whose globals and locals
    # would otherwise be read and written.
    out = client.run("""
        conn = connect()
        b = conn.builtins
        remote_exec(conn, '''
            def wait_for(cb):
                mine = 1
                cb()
                return sorted(locals())
        ''')
        top = (b.globals()["__name__"], b.eval("sorted(locals())"))
        seen = []
        def cb():
            b.exec("intruder = 1")
            seen.append((b.globals()["__name__"], b.eval("sorted(locals())")))
        names = list(conn.namespace["wait_for"](cb))
        assert names == ["cb", "mine"], names
        assert seen == [top], (seen, top)
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_concurrent_clients_each_in_their_own_frame(client):
    # Two client threads, each with its own connection, call eval/exec/globals in a loop. Each
    # exec() keeps its locals for its own duration only, while the other thread's calls run
    # (the loop lets the GIL switch threads in the middle of one).
    out = client.run("""
        import threading
        errors = []
        def worker(tag):
            try:
                conn = connect()
                b = conn.builtins
                for i in range(40):
                    assert b.eval(f"{i} * 2") == 2 * i
                    assert "__builtins__" in b.globals()
                    b.exec(f"mine = {tag!r}\\n"
                           "for _ in range(20000): pass\\n"
                           f"assert mine == {tag!r}, mine\\n"
                           "assert set(locals()) & {'mine', 'theirs'} == {'mine'}, locals()")
                    b.exec(f"theirs = {tag!r}")
                conn.close()
            except BaseException as e:
                errors.append(f"{tag}: {e!r}")
        threads = [threading.Thread(target=worker, args=(t,)) for t in ("a", "b")]
        for t in threads: t.start()
        for t in threads: t.join()
        assert not errors, errors
        print("OK")
    """, timeout=120)
    assert out.strip().endswith("OK")
