"""Exceptions: builtin and custom types, remote tracebacks, StopIteration, SystemExit."""


def test_builtin_exceptions_carry_the_remote_traceback(client):
    out = client.run("""
        conn = connect()
        try:
            conn.eval("1/0")
        except ZeroDivisionError as e:
            text = str(e)
            assert "division by zero" in text
            assert "Remote Traceback" in text, text
            assert 'File "<string>", line 1' in text, text
            assert "WARNING: Remote is on RPyC" not in text, text
        else:
            raise AssertionError("no exception")
        try:
            conn.eval("{}['missing']")
        except KeyError as e:
            assert e.args == ("missing",), e.args
        try:
            conn.modules.os.stat("/nonexistent-e2e-path")
        except FileNotFoundError as e:
            assert e.errno == 2 and e.filename == "/nonexistent-e2e-path", (e.errno, e.filename)
        try:
            conn.eval("undefined_name_e2e")
        except NameError as e:
            assert "undefined_name_e2e" in str(e)
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_custom_exception_defined_via_execute(client):
    out = client.run("""
        conn = connect()
        remote_exec(conn, '''
            class E2EError(Exception):
                def __init__(self, msg, code):
                    super().__init__(msg, code)
                    self.code = code
            def fail():
                raise E2EError("custom failure", 7)
        ''')
        try:
            conn.namespace["fail"]()
        except Exception as e:
            name = type(e).__name__
            assert "E2EError" in name, name
            assert "custom failure" in str(e), str(e)
            assert "in fail" in str(e), str(e)  # the remote frame
            assert e.code == 7
        else:
            raise AssertionError("no exception")
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_stop_iteration(client):
    out = client.run("""
        conn = connect()
        it = conn.eval("iter([1])")
        assert next(it) == 1
        try:
            next(it)
        except StopIteration:
            pass
        else:
            raise AssertionError("no StopIteration")
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_system_exit_reaches_the_client_and_the_daemon_survives(client):
    out = client.run("""
        conn = connect()
        try:
            conn.execute("import sys; sys.exit(3)")
        except SystemExit as e:
            assert e.code == 3, e.code
        else:
            raise AssertionError("no SystemExit")
        assert conn.eval("2+2") == 4
        conn.close()
        conn = connect()
        assert conn.eval("3+3") == 6
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_errors_in_callbacks_propagate_both_ways(client):
    out = client.run("""
        conn = connect()
        def bad(x):
            raise ValueError("client side " + str(x))
        remote_exec(conn, '''
            def call_and_catch(f):
                try:
                    f(1)
                except ValueError as e:
                    return "server caught: " + str(e).splitlines()[0]
        ''')
        assert conn.namespace["call_and_catch"](bad) == "server caught: client side 1"
        try:
            list(conn.modules.builtins.map(bad, [5]))
        except ValueError as e:
            assert "client side 5" in str(e)
        else:
            raise AssertionError("no exception")
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")
