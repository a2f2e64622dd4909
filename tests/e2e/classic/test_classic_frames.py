"""Builtins that read their caller's frame, called through a netref (eval, exec, globals, locals,
vars, dir): the Python server answers them from its own frames, so must we. RPYC_E2E_REFERENCE=1
runs the same checks against the Python server."""


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
        assert isinstance(conn.modules.sys._getframe().f_code.co_name, str)
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
