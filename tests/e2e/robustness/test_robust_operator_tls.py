"""TLS as an operator meets it (issue 14): file errors in words, not OpenSSL numbers, and a client
that leaves without a TLS close is the normal end of a connection, as over plain TCP.

The connections are made by the real rpyc clients (5.3.0 and 6.x) and by raw sockets.
"""

import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from robust_support import (CLASSICD, Daemon, free_port, native_only, run_client, ssl_connect_expr,
                            tls_args)

pytestmark = native_only


def start_failure(args, tmp_path):
    p = subprocess.run([str(CLASSICD), "-p", str(free_port()), *args], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode != 0, p
    return p.stderr


@pytest.mark.parametrize("which", ["key", "cert", "ca"])
def test_a_missing_tls_file_says_no_such_file(which, certs, tmp_path):
    key, cert, ca = certs / "server.key", certs / "server.pem", certs / "ca.pem"
    missing = tmp_path / "nonexistent.pem"
    key, cert, ca = (missing if which == "key" else key, missing if which == "cert" else cert,
                     missing if which == "ca" else ca)
    err = start_failure(["--ssl-keyfile", str(key), "--ssl-certfile", str(cert),
                         "--ssl-cafile", str(ca)], tmp_path)
    assert f"{missing}: No such file or directory" in err, err
    assert "error 2" not in err and "system lib" not in err, err


def test_an_unreadable_key_says_permission_denied(certs):
    # As root, mode 0 still reads: the daemon runs as nobody (setpriv is util-linux), in a
    # directory it may enter, on a certificate it may read and a key it may not.
    d = Path(tempfile.mkdtemp(prefix="rpyc-perm-"))
    try:
        d.chmod(0o755)
        key, cert = d / "server.key", d / "server.pem"
        key.write_bytes((certs / "server.key").read_bytes())
        cert.write_bytes((certs / "server.pem").read_bytes())
        key.chmod(0)
        cert.chmod(0o644)
        p = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(CLASSICD), "-p",
             str(free_port()), "--ssl-keyfile", str(key), "--ssl-certfile", str(cert)],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(d)
    assert p.returncode != 0
    assert f"key file {key}: Permission denied" in p.stderr, p.stderr


def test_a_file_that_is_not_pem_says_so(certs, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("this is not a key\n")
    err = start_failure(["--ssl-keyfile", str(junk), "--ssl-certfile", str(certs / "server.pem")],
                        tmp_path)
    assert f"key file {junk}: not a PEM private key" in err, err
    err = start_failure(["--ssl-keyfile", str(certs / "server.key"), "--ssl-certfile", str(junk)],
                        tmp_path)
    assert f"certificate file {junk}: not a PEM certificate" in err, err
    # A PEM file of another kind: the certificate given as the key.
    err = start_failure(["--ssl-keyfile", str(certs / "server.pem"), "--ssl-certfile",
                         str(certs / "server.pem")], tmp_path)
    assert f"key file {certs / 'server.pem'}: no PEM private key in it" in err, err


def test_a_tls_client_exiting_without_close_is_a_normal_end(gen, certs, tmp_path):
    d = Daemon(tmp_path, extra_args=[*tls_args(certs), "--max-connections-per-peer", "0"])
    try:
        # Most rpyc scripts end so: no close(), no TLS close_notify, the process just exits.
        run_client(gen, """
            port = {port}
            c = {connect}
            assert c.eval("6*7") == 42
            sys.stdout.flush()
            os._exit(0)
        """, port=d.port, connect=ssl_connect_expr(certs))
        # A peer that goes away in the handshake: after the ClientHello's first bytes, with a
        # reset (SO_LINGER 0), and one that closes before sending anything.
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        s.sendall(b"\x16\x03\x01\x00\xc8\x01")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        socket.create_connection(("127.0.0.1", d.port), timeout=5).close()
        deadline = time.monotonic() + 10
        while d.log().count("goodbye") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the handshakes' ends
        log = d.log()
        assert "goodbye" in log, log
        assert "ERROR" not in log, log
    finally:
        assert d.stop() == 0
