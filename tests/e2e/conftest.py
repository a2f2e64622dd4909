"""Sanitizer reports fail the test that caused them (see sanitizer_support.py): after each test,
any new report file from an ASan/LSan/UBSan build fails that test with the report's text, even
when the client side passed."""

import signal

import pytest

import sanitizer_support

# The Python reference servers (rpyc's ThreadedServer, rpyc_registry.py) are stopped with SIGINT,
# as a user stops them. A shell runs a background job (`.ci/run &`) with SIGINT ignored, children
# inherit an ignored signal across exec, and Python then never raises KeyboardInterrupt: every
# reference ignored its stop and was killed after its 15 s grace period instead. The test
# process takes SIGINT back, so what it starts gets the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def no_sanitizer_reports(request):
    """Fails the test when a sanitized process wrote a report while it ran (autouse fixtures are
    set up first and torn down last, so daemons stopped by the test's fixtures are included)."""
    if sanitizer_support.REPORT_DIR is None:
        yield
        return
    before = set(sanitizer_support.reports())
    yield
    new = {p: text for p, text in sanitizer_support.reports().items() if p not in before}
    if new and not request.node.get_closest_marker("sanitizer_report_expected"):
        text = "\n".join(f"--- {p.name}\n{t[:8000]}" for p, t in sorted(new.items()))
        pytest.fail(f"sanitizer report(s) during {request.node.nodeid}:\n{text}", pytrace=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "sanitizer_report_expected: the test provokes a report itself")
