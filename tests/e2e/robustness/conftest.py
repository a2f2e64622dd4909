"""Fixtures for the robustness tests (see robust_support.py)."""

import pytest

from robust_support import GENERATIONS, client_env, make_certs


@pytest.fixture(params=GENERATIONS)
def gen(request):
    client_env(request.param)  # skips when the rpyc 6.x library is missing
    return request.param


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("robust-certs"))
