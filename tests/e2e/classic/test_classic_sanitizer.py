"""The sanitizer net of tests/e2e/conftest.py catches what it is meant to catch: against an ASan
build of rpyc-classicd, a client makes the daemon's interpreter read freed memory (through ctypes)
and leak a malloc'ed block; the daemon must stop on the first and the report must land in the
report directory. Skipped for a build without ASan."""

import time

import pytest

import sanitizer_support as san
from classic_support import CLASSICD, EXTRA_ARGS, Client, Daemon


pytestmark = pytest.mark.skipif(san.sanitizer(CLASSICD) != "asan", reason="needs an ASan build of rpyc-classicd")


def wait_for_report(needle, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for text in san.reports().values():
            if needle in text:
                return text
        time.sleep(0.1)
    raise AssertionError(f"no sanitizer report with {needle!r}; reports: {list(san.reports())}")


@pytest.mark.sanitizer_report_expected
def test_use_after_free_in_the_daemon_is_reported_and_stops_it(tmp_path):
    if "forking" in EXTRA_ARGS or "oneshot" in EXTRA_ARGS:
        pytest.skip("the error stops a child, not the daemon")
    d = Daemon(tmp_path)
    try:
        client = Client("rpyc5", d, tmp_path)
        client.run("""
            conn = connect()
            try:
                conn.execute(textwrap.dedent('''
                    import ctypes
                    libc = ctypes.CDLL(None)
                    libc.malloc.restype = ctypes.c_void_p
                    p = libc.malloc(64)
                    libc.free(ctypes.c_void_p(p))
                    ctypes.string_at(p, 64)
                '''))
            except EOFError:
                print("connection lost, as expected")
        """, check=False)
        text = wait_for_report("heap-use-after-free")
        assert "ERROR: AddressSanitizer" in text
        assert d.proc.wait(timeout=30) != 0  # halt_on_error: the daemon stopped
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        d.proc.wait()
        san.discard_reports()


@pytest.mark.sanitizer_report_expected
def test_a_leak_is_reported_at_exit(tmp_path):
    d = Daemon(tmp_path)
    try:
        Client("rpyc5", d, tmp_path).run("""
            conn = connect()
            conn.execute(textwrap.dedent('''
                import ctypes
                libc = ctypes.CDLL(None)
                libc.malloc.restype = ctypes.c_void_p
                leaked = str(libc.malloc(4321))   # no pointer to it stays anywhere
            '''))
            conn.close()
        """)
        assert d.stop() != 0  # LeakSanitizer makes the exit status non-zero
        text = wait_for_report("LeakSanitizer")
        assert "4321 byte(s)" in text
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        san.discard_reports()
