"""Fixtures for the rpyc-classicd end-to-end tests (see classic_support.py)."""

import pytest

from classic_support import GENERATIONS, REFERENCE, RPYC6_PATH, Client, Daemon


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path)
    yield d
    rc = d.stop()
    if not REFERENCE:
        assert rc == 0, f"daemon exit status {rc} after SIGTERM\n{d.log()}"


@pytest.fixture(params=GENERATIONS)
def client(request, daemon, tmp_path):
    gen = request.param
    if gen == "rpyc6":
        if REFERENCE:
            pytest.skip("the 5.3.0 reference server does not speak the 6.x wire format")
        if not (RPYC6_PATH / "rpyc" / "__init__.py").exists():
            pytest.skip(f"rpyc 6.x client library not found at {RPYC6_PATH} (set RPYC6_PATH)")
    return Client(gen, daemon, tmp_path)


@pytest.fixture
def native_only():
    if REFERENCE:
        pytest.skip("checks rpyc-classicd's own behaviour")
