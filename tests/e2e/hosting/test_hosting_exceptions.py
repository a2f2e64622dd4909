"""rpyc's exception keys of protocol_config for a hosted service, every value of each, under rpyc's
ThreadedServer and rpyc-classicd --service: what the client sees of the service's exceptions
(include_local_traceback, include_local_version), what the service sees of the client's
(import_custom_exceptions, instantiate_custom_exceptions, instantiate_oldstyle_exceptions), and
SystemExit / KeyboardInterrupt ending the connection or not (propagate_*_locally)."""

import re

import pytest

from hosting_support import SERVICES, Server, differential, require_generation, run_client

EXC = "exc_service:ExceptionService"

# The client side: the services' folder for exc_client_errors (the service never imports it),
# and attempt() for SystemExit and KeyboardInterrupt too.
CLIENT_SETUP = f"""
    sys.path.insert(0, {str(SERVICES)!r})
    import exc_client_errors

    def attempt_any(fn):
        try:
            results.append(['value', repr(fn())])
        except BaseException as e:
            results.append(['raise', type(e).__module__, type(e).__name__,
                            str(e).split(REMOTE_TB)[0]])

    def raiser(exc):
        def fn():
            raise exc
        return fn
"""

# --- what the server sends: include_local_traceback, include_local_version -----------------------

TRACEBACK_OPS = """
    def remote_parts(fn):
        try:
            fn()
        except Exception as e:
            tb = e._remote_tb
            if tb == '<traceback denied>':
                return (type(e).__name__, tb, e._remote_version)
            lines = tb.strip().splitlines()
            return (type(e).__name__, lines[0], lines[-1], e._remote_version)
        return 'no exception'
    attempt(lambda: remote_parts(lambda: root.fail('bad input')))
    attempt(lambda: remote_parts(lambda: root.add(1, 'x')))
    attempt(lambda: root.fail('the message is the same either way'))
"""


@pytest.mark.parametrize("traceback", [True, False], ids=["traceback", "no-traceback"])
@pytest.mark.parametrize("version", [True, False], ids=["version", "no-version"])
def test_include_local_traceback_and_version(gen, traceback, version, tmp_path):
    out = differential(gen, EXC, TRACEBACK_OPS, tmp_path, setup=CLIENT_SETUP,
                       config={"include_local_traceback": traceback,
                               "include_local_version": version})
    remote_version = {"rpyc5": "'5.3.0'", "rpyc6": "'6.0.1'"}[gen] if version else \
        "'<version denied>'"
    if traceback:
        assert out[0] == ["value", "('exc_service.ServiceError', 'Traceback (most recent call "
                                   "last):', 'exc_service.ServiceError: bad input', "
                                   f"{remote_version})"]
        assert out[1][1].startswith("('TypeError', 'Traceback (most recent call last):', "
                                    "\"TypeError: unsupported operand"), out[1]
    else:
        assert out[0] == ["value", "('exc_service.ServiceError', '<traceback denied>', "
                                   f"{remote_version})"]
        assert out[1] == ["value", f"('TypeError', '<traceback denied>', {remote_version})"]
    assert out[2][2:] == ["exc_service.ServiceError", "the message is the same either way"]


# --- what the server loads: import/instantiate_custom_exceptions -----------------------------------

LOAD_OPS = """
    import exc_service
    attempt(lambda: root.imported('exc_client_errors'))
    attempt(lambda: root.catch(raiser(exc_client_errors.ClientError('client bad', 7))))
    attempt(lambda: root.catch(raiser(exc_service.ServiceError('service class, client raised'))))
    attempt(lambda: root.catch(raiser(KeyError('builtin'))))
    attempt(lambda: root.catch(raiser(OSError(2, 'no such file'))))
    attempt(lambda: root.imported('exc_client_errors'))
    attempt(lambda: root.call(raiser(exc_client_errors.ClientError('thrown back', 3))))
    attempt(lambda: root.call(raiser(ValueError('thrown back'))))
"""

GENERIC_CLIENT_ERROR = (
    "('rpyc.core.vinegar/exc_client_errors', 'exc_client_errors.ClientError', "
    "('exc_client_errors.ClientError', 'exc_client_errors.ClientError', 'GenericException', "
    "'Exception', 'BaseException', 'object'), True, False, False, ('client bad', 7), 7, "
    "\"('client bad', 7)\", True)")


@pytest.mark.parametrize("import_custom", [False, True], ids=["no-import", "import"])
@pytest.mark.parametrize("instantiate_custom", [False, True], ids=["generic", "instantiate"])
def test_import_and_instantiate_custom_exceptions(gen, import_custom, instantiate_custom,
                                                  tmp_path):
    out = differential(gen, EXC, LOAD_OPS, tmp_path, setup=CLIENT_SETUP,
                       config={"import_custom_exceptions": import_custom,
                               "instantiate_custom_exceptions": instantiate_custom})
    assert out[0] == ["value", "False"]
    assert out[5] == ["value", repr(import_custom)]
    if import_custom and instantiate_custom:
        assert out[1][1].startswith("('exc_client_errors', 'ClientError', ('ClientError', "
                                    "'ClientError', 'Exception'"), out[1]
    else:
        assert out[1] == ["value", GENERIC_CLIENT_ERROR]
    # The service's own class: its module is imported, so instantiate_custom_exceptions decides.
    assert (", False, True, False, " in out[2][1]) == instantiate_custom, out[2]
    # builtins' classes are always used.
    assert out[3][1].startswith("('builtins', 'KeyError', ('KeyError', 'KeyError', 'LookupError'")
    assert out[4][1].startswith("('builtins', 'FileNotFoundError', ('FileNotFoundError', "
                                "'FileNotFoundError', 'OSError'"), out[4]
    assert out[7] == ["raise", "builtins", "ValueError", "thrown back"]


@pytest.mark.parametrize("oldstyle", [False, True], ids=["default", "oldstyle"])
def test_instantiate_oldstyle_exceptions_changes_nothing(gen, oldstyle, tmp_path):
    # rpyc's loader reads the key only for Python 2's classic classes: on Python 3 both values
    # load the same.
    out = differential(gen, EXC, LOAD_OPS, tmp_path, setup=CLIENT_SETUP,
                       config={"instantiate_oldstyle_exceptions": oldstyle})
    assert out[1] == ["value", GENERIC_CLIENT_ERROR]


# --- SystemExit and KeyboardInterrupt: propagate_*_locally ------------------------------------------

PROPAGATE_OPS = """
    other = rpyc.connect('127.0.0.1', int(os.environ['SERVER_PORT']))
    attempt_any(lambda: root.exit_subclass('a subclass is always sent'))
    attempt_any(lambda: root.{sent}('sent to the client'))
    attempt_any(lambda: c.closed)
    attempt_any(lambda: root.{ends}('ends the connection'))
    attempt_any(lambda: c.closed)
    attempt_any(lambda: root.add(1, 2))
    attempt_any(lambda: other.root.add(2, 3))
    other.close()
"""

ENDED = [["raise", "builtins", "EOFError", "stream has been closed"], ["value", "True"],
         ["raise", "builtins", "EOFError", "stream has been closed"], ["value", "5"]]


@pytest.mark.parametrize("mode", ["threaded", "threadpool", "forking"])
def test_propagate_defaults(gen, mode, tmp_path):
    # rpyc's defaults: SystemExit is sent, KeyboardInterrupt ends the connection (only that one).
    ops = PROPAGATE_OPS.format(sent="exit", ends="interrupt")
    out = differential(gen, EXC, ops, tmp_path, setup=CLIENT_SETUP, extra_args=["-m", mode])
    assert out[0][2:] == ["exc_service.MySystemExit", "a subclass is always sent"]
    assert out[1:3] == [["raise", "builtins", "SystemExit", "sent to the client"],
                        ["value", "False"]]
    assert out[3:] == ENDED


def test_propagate_reversed(gen, tmp_path):
    ops = PROPAGATE_OPS.format(sent="interrupt", ends="exit")
    out = differential(gen, EXC, ops, tmp_path, setup=CLIENT_SETUP,
                       config={"propagate_SystemExit_locally": True,
                               "propagate_KeyboardInterrupt_locally": False})
    assert out[1:3] == [["raise", "builtins", "KeyboardInterrupt", "sent to the client"],
                        ["value", "False"]]
    assert out[3:] == ENDED


def test_propagated_exception_is_logged_and_the_daemon_goes_on(gen, tmp_path):
    require_generation(gen)
    server = Server("ours", gen, EXC, {"propagate_SystemExit_locally": True}, tmp_path)
    try:
        ops = PROPAGATE_OPS.format(sent="exit_subclass", ends="exit")
        out = run_client(gen, server.port, ops, setup=CLIENT_SETUP)
        assert out[3:] == ENDED
        again = run_client(gen, server.port, "attempt(lambda: root.add(3, 4))")
        assert again == [["value", "7"]]
    finally:
        assert server.stop() == 0
    log = server.output()
    assert re.search(r"WARNING:EXCEPTION/%d:SystemExit\('ends the connection'\) raised by a "
                     r"request of conn\d+ \(propagate_SystemExit_locally is true\): closing the "
                     r"connection\n" % server.port, log), log
    assert 'in exposed_exit\n' in log  # with the service's traceback
