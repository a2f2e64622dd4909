"""Fixtures of the hosting tests (see hosting_support.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hosting_support import GENERATIONS  # noqa: E402


@pytest.fixture(params=GENERATIONS)
def gen(request):
    return request.param
