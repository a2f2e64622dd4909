"""Sanitizer report collection for the end-to-end tests (used by tests/e2e/conftest.py).

When $RPYC_CLASSICD or $RPYC_REGISTRYD is a sanitizer build (the asan preset: ASan+UBSan; the
tsan preset: TSan), importing this module points the log_path of every process the tests start
(daemons, forked children, socket-activated and stdio instances) at one directory, so their
AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer and ThreadSanitizer reports land in
files instead of a stderr the test may not read. A report also stops the process
(halt_on_error). Leak detection stays on; suppressions, each with its reason, are in
sanitizers/lsan.supp and sanitizers/tsan.supp. $RPYC_SANITIZER_REPORTS names the directory
(default: a new temporary one).
"""

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SANITIZERS = Path(__file__).resolve().parent / "sanitizers"
BINARIES = [
    Path(os.environ.get("RPYC_CLASSICD", REPO / "build/dev/daemons/classicd/rpyc-classicd")),
    Path(os.environ.get("RPYC_REGISTRYD", REPO / "build/dev/daemons/registryd/rpyc-registryd")),
]


def sanitizer(path):
    """'asan', 'tsan' or None: which sanitizer the binary at `path` was built with."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return "asan" if b"__asan_init" in data else "tsan" if b"__tsan_init" in data else None


def sanitized(path):
    return sanitizer(path) is not None


def _add_options(var, options):
    current = os.environ.get(var, "")
    os.environ[var] = ":".join(p for p in [current, *options] if p)


REPORT_DIR = None
if any(sanitized(b) for b in BINARIES):
    REPORT_DIR = Path(os.environ.get("RPYC_SANITIZER_REPORTS") or tempfile.mkdtemp(prefix="sanitizer-"))
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    prefix = REPORT_DIR / "report"
    # Later entries win, so these come last: reports must go to files and must stop the process.
    _add_options("ASAN_OPTIONS", [f"log_path={prefix}", "halt_on_error=1", "detect_leaks=1",
                                  "abort_on_error=0"])
    _add_options("LSAN_OPTIONS", [f"suppressions={SANITIZERS / 'lsan.supp'}", "print_suppressions=0"])
    _add_options("UBSAN_OPTIONS", [f"log_path={prefix}", "halt_on_error=1", "print_stacktrace=1"])
    _add_options("TSAN_OPTIONS", [f"log_path={prefix}", "halt_on_error=1",
                                  f"suppressions={SANITIZERS / 'tsan.supp'}"])


def reports():
    return {p: p.read_text(errors="replace") for p in REPORT_DIR.glob("report.*")} if REPORT_DIR else {}


def discard_reports(needle=""):
    """Removes the reports containing `needle` (for tests that provoke one on purpose)."""
    for p, text in reports().items():
        if needle in text:
            p.unlink()
