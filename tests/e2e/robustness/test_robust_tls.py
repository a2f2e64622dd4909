"""TLS negatives, table-driven: every bad peer is refused in the handshake, logged with the peer
and OpenSSL's reason, and served nothing (not even GETROOT); a real client with a valid
certificate keeps working alongside. (The positive paths, no certificate and another CA with the
real rpyc clients, TLS 1.1 and the SIGHUP reload are in tests/e2e/classic/test_classic_daemon.py.)
"""

import re
import socket
import ssl
import struct

import pytest

from robust_support import (Daemon, GETROOT, Watcher, by_value, frame, long_only, native_only,
                            other_gen, request, ssl_connect_expr, tls_args, wait_for)

pytestmark = [native_only, pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # TLS 1.0/1.1


def context(certs, client=None, maximum=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(certs / "ca.pem"))
    ctx.check_hostname = False
    if client:
        ctx.load_cert_chain(str(certs / f"{client}.pem"), str(certs / f"{client}.key"))
    if maximum:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = maximum
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


# name -> (client certificate or None, TLS version cap or None, plaintext?, reason in the log)
CASES = {
    "no_client_certificate": (None, None, False, "peer did not return a certificate"),
    "certificate_from_another_ca": ("intruder", None, False, "certificate verify failed"),
    "expired_certificate": ("expired", None, False, "certificate has expired"),
    "self_signed_certificate": ("selfie", None, False, "certificate verify failed"),
    "tls_1_1_client": ("client", ssl.TLSVersion.TLSv1_1, False, "unsupported protocol"),
    "tls_1_0_client": ("client", ssl.TLSVersion.TLSv1, False, "unsupported protocol"),
    "plaintext_rpyc_frame": (None, None, True, "wrong version number"),
}

GETROOT_5 = frame(request("rpyc5", 0, GETROOT, by_value(b"\x02")))


@pytest.fixture(scope="module", params=["threaded", "threadpool", pytest.param("forking", marks=long_only)])
def tls_target(request, certs, tmp_path_factory):
    gen = other_gen()
    d = Daemon(tmp_path_factory.mktemp("tls"), extra_args=["-m", request.param, *tls_args(certs)])
    w = Watcher(gen, d.port, connect=ssl_connect_expr(certs))
    yield d, w
    assert d.proc.poll() is None
    w.finish()
    assert d.stop() == 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_tls_refusals_are_logged_and_serve_nothing(tls_target, certs, case):
    d, _ = tls_target
    client, cap, plaintext, reason = CASES[case]
    raw = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    port = raw.getsockname()[1]
    got = b""
    try:
        if plaintext:
            s = raw
        else:
            s = context(certs, client, cap).wrap_socket(raw, do_handshake_on_connect=False)
            try:
                s.do_handshake()
            except (ssl.SSLError, OSError):
                s = None  # refused during the handshake
        if s is not None:
            # TLS 1.3: a refused client certificate shows only on the client's next read.
            try:
                s.sendall(GETROOT_5)
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except (ssl.SSLError, OSError):
                pass
    finally:
        raw.close()
    assert b"SlaveService" not in got, "a refused peer got the root"
    if plaintext:
        assert got == b"", got[:100]
    line = wait_for(lambda: [l for l in d.log().splitlines()
                             if f"TLS handshake with 127.0.0.1:{port} failed" in l], 10,
                    "the refusal logged")
    assert len(line) == 1 and "ERROR" in line[0], line
    assert reason in line[0], line
    assert f"welcome ('127.0.0.1', {port})" not in d.log()


def test_valid_client_certificate_is_served(tls_target, certs):
    """The control case: the same code path with the right certificate gets the root."""
    d, _ = tls_target
    raw = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    with context(certs, "client").wrap_socket(raw) as s:
        s.sendall(GETROOT_5)
        head = s.recv(5)
        length = struct.unpack("!LB", head)[0]
        body = b""
        while len(body) < length + 1:
            body += s.recv(4096)
    assert b"SlaveService" in body
    assert re.search(r"welcome \('127\.0\.0\.1', \d+\)", d.log())
