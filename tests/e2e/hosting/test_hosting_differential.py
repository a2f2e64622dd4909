"""The same service under rpyc's ThreadedServer and rpyc-classicd --service (threaded mode): the
same operations give the same values and the same exceptions (type and message)."""

from hosting_support import differential

CALC = "calc_service:CalculatorService"


def test_exposed_methods(gen, tmp_path):
    out = differential(gen, CALC, """
        attempt(lambda: root.add(1, 2))
        attempt(lambda: root.exposed_add('a', 'b'))
        attempt(lambda: root.get_service_name())
        attempt(lambda: root.get_service_aliases())
        attempt(lambda: list(root.numbers()))
        attempt(lambda: root.box().double())
        attempt(lambda: root.box().value)
        attempt(lambda: root.Counter(5).incr())
        attempt(lambda: root.call_back(lambda v: v * 3, 7))
        attempt(lambda: len(root.numbers()))
        attempt(lambda: root.numbers()[1])
    """, tmp_path)
    assert out[0] == ["value", "3"]
    assert out[2] == ["value", "'CALCULATOR'"]
    assert out[7] == ["value", "6"]


def test_refused_attributes(gen, tmp_path):
    out = differential(gen, CALC, """
        attempt(lambda: root.secret)
        attempt(lambda: root.hidden())
        attempt(lambda: root._private)
        attempt(lambda: root.missing)
        attempt(lambda: root.exposed_missing)
        attempt(lambda: root.__dict__)
        attempt(lambda: root.box().plain)
        attempt(lambda: root.box()._private)
    """, tmp_path)
    assert out[0] == ["raise", "builtins", "AttributeError", "cannot access 'secret'"]


def test_setattr_and_delattr_refused(gen, tmp_path):
    out = differential(gen, CALC, """
        attempt(lambda: setattr(root, 'secret', 1))
        attempt(lambda: delattr(root, 'add'))
        attempt(lambda: setattr(root.box(), 'value', 1))
        attempt(lambda: delattr(root.box(), 'value'))
        attempt(lambda: root.secret)
    """, tmp_path)
    assert out[0] == ["raise", "builtins", "AttributeError", "access denied"]
    assert out[2] == ["raise", "builtins", "AttributeError", "cannot access 'value'"]


def test_allow_public_attrs_and_setattr(gen, tmp_path):
    out = differential(gen, CALC, """
        attempt(lambda: root.secret)
        attempt(lambda: root.hidden())
        attempt(lambda: root._private)
        attempt(lambda: root.box().plain)
        attempt(lambda: setattr(root.box(), 'plain', 'changed'))
        attempt(lambda: setattr(root, 'secret', 1))
    """, tmp_path, config={"allow_public_attrs": True, "allow_setattr": True})
    assert out[0] == ["value", "'not exposed'"]
    assert out[4] == ["value", "None"]
    assert out[5] == ["raise", "builtins", "AttributeError", "access denied"]


def test_rpyc_getattr_hook(gen, tmp_path):
    out = differential(gen, CALC, """
        attempt(lambda: root.hooked().anything)
        attempt(lambda: root.hooked().no_thanks)
        attempt(lambda: root.hooked()._underscored)
    """, tmp_path)
    assert out[0] == ["value", "'hooked:anything'"]


# The client serves the server's requests in a thread of its own: under rpyc a client request made
# while on_connect still waits for the client is served in the middle of on_connect (both servers
# do that), so the client lets on_connect finish first. Its ping is the first frame the daemon
# sees: rpyc-classicd serves both wire generations on one port and learns the client's from its
# first frame, so on_connect's first call to the client waits for it (rpyc's server, one
# generation only, sends at once; daemons/classicd/README.md).
ON_CONNECT_SETUP = """
    import time
    bg = rpyc.BgServingThread(c)
    c.ping()
    time.sleep(1)
"""


def test_on_connect_calls_the_client(gen, tmp_path):
    out = differential(gen, CALC, """
        attempt(lambda: root.client_said())
        bg.stop()
    """, tmp_path, setup=ON_CONNECT_SETUP)
    assert out == [["value", "'hello from the client'"]]


def test_exceptions_of_the_service(gen, tmp_path):
    out = differential(gen, CALC, """
        attempt(lambda: root.fail('bad input'))
        attempt(lambda: root.divide(1, 0))
    """, tmp_path)
    assert out[0][2:] == ["calc_service.CalcError", "bad input"] or out[0][2] == "CalcError"
    assert out[1][2:] == ["ZeroDivisionError", "division by zero"]


def test_pickle_refused_and_allowed(gen, tmp_path):
    ops = """
        import rpyc.utils.classic
        attempt(lambda: rpyc.utils.classic.obtain(root.numbers()))
    """
    out = differential(gen, CALC, ops, tmp_path)
    assert out[0] == ["raise", "builtins", "ValueError", "pickling is disabled"]
    out = differential(gen, CALC, ops, tmp_path, config={"allow_pickle": True})
    assert out[0] == ["value", "[1, 2, 3]"]


def test_instance_and_factory(gen, tmp_path):
    ops = """
        attempt(lambda: root.add(2, 2))
        attempt(lambda: root.client_said())
        bg.stop()
    """
    for spec in ("calc_service:calculator_instance", "calc_service:make_calculator()"):
        out = differential(gen, spec, ops, tmp_path, setup=ON_CONNECT_SETUP)
        assert out == [["value", "4"], ["value", "'hello from the client'"]]
