"""Admission before authentication: idle TCP connects (no byte sent) from one address or from
many cannot take every connection slot, and a real rpyc client, with a valid certificate when TLS
is on, is still served; the lines logged about such connects are rate-limited; in forking mode
they cost no process (the parent finishes the TLS handshake, or waits for the first byte, before
it forks). Idle connects come from 127.0.0.2 and up (distinct IPv4 peers); the real client
connects from 127.0.0.1.
"""

import os
import re
import socket
import ssl
import subprocess
import sys
import time

import pytest

from robust_support import (Daemon, children_of, fd_count, native_only, run_client,
                            settle_baseline, ssl_connect_expr, tls_args, wait_for)

pytestmark = native_only

CLIENT = """
port = {port}
conn = {connect}
assert conn.eval("6*7") == 42
print("SERVED", flush=True)
conn.close()
"""


def idle_connects(port, sources, each):
    """`each` TCP connects from every address of `sources`, sending nothing (bounded)."""
    socks = []
    for src in sources:
        for _ in range(each):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((src, 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            socks.append(s)
    return socks


def close_all(socks):
    for s in socks:
        s.close()


def served(gen, port, connect):
    return "SERVED" in run_client(gen, CLIENT, timeout=60, port=port, connect=connect)


@pytest.mark.parametrize("mode", ["threaded", "threadpool", "forking"])
def test_idle_connects_from_one_address_leave_room_for_others(tmp_path, gen, mode):
    """The per-peer cap is on by default (64): 400 idle connects from one address hold 64 slots,
    not all 300 of --max-connections."""
    d = Daemon(tmp_path, extra_args=["-m", mode, "--max-connections", "300"])
    socks = idle_connects(d.port, ["127.0.0.2"], 400)
    try:
        assert served(gen, d.port, 'rpyc.classic.connect("127.0.0.1", port)')
        wait_for(lambda: "max_connections_per_peer" in d.log(), 10, "the per-peer refusal logged")
        assert "(max_connections)" not in d.log()
    finally:
        close_all(socks)
    assert d.stop() == 0


@pytest.mark.parametrize("mode", ["threaded", "threadpool", "forking"])
def test_idle_connects_cannot_hold_every_slot_before_the_tls_handshake(tmp_path, certs, gen, mode):
    """--max-handshakes 64: 200 idle connects from 8 addresses (25 each, under the
    per-peer cap) hold at most 64 connections of the 150 --max-connections allows, each with its
    socket; once they are gone, the handshakes they held are counted out and a client with a valid
    certificate is served. In forking mode the parent runs the handshakes: the cap applies
    there too."""
    d = Daemon(tmp_path, extra_args=["-m", mode, "--max-connections", "150", "--max-handshakes", "64",
                                     "--tls-handshake-timeout", "60", *tls_args(certs)])
    baseline = settle_baseline(d)
    socks = idle_connects(d.port, [f"127.0.0.{i}" for i in range(2, 10)], 25)
    try:
        wait_for(lambda: "(max_handshakes)" in d.log(), 10, "the handshake refusal logged")
        time.sleep(0.5)
        # A connection in its TLS handshake holds two fds (its socket and the handshake's wake-up
        # fd): 128 for 64, and 300 if all 150 slots were taken.
        held = fd_count(d.pid) - baseline
        assert held <= 2 * 64 + 4, f"{held} fds held by connections in their handshake"
        assert "connections in their handshake (max_handshakes)" in d.log()
    finally:
        close_all(socks)
    assert served(gen, d.port, ssl_connect_expr(certs))
    assert "(max_connections)" not in d.log()
    assert d.stop() == 0


def live_children(pid):
    return [c for c, state in children_of(pid) if state != "Z"]


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_forking_mode_forks_no_child_for_idle_connects(tmp_path, certs, gen, tls):
    """Forking mode: 50 idle TCP connects (from 127.0.0.2, no byte sent) make no child process,
    with TLS (the parent runs the handshake before it forks) and without (the parent waits for
    the first byte); a real client (with a valid certificate when TLS is on) is served by a child
    meanwhile; a connect that closes without a byte makes none either."""
    args = ["--tls-handshake-timeout", "60", *tls_args(certs)] if tls else []
    d = Daemon(tmp_path, extra_args=["-m", "forking", *args])
    settle_baseline(d)
    wait_for(lambda: not live_children(d.pid), 10, "the readiness probe's child gone")
    socks = idle_connects(d.port, ["127.0.0.2"], 50)
    try:
        time.sleep(1)
        assert live_children(d.pid) == [], f"{len(live_children(d.pid))} children for idle connects"
        connect = ssl_connect_expr(certs) if tls else 'rpyc.classic.connect("127.0.0.1", port)'
        assert served(gen, d.port, connect)
        assert re.search(r"child \d+ serves \('127\.0\.0\.1', ", d.log()), d.log()[-2000:]
        quiet = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        port = quiet.getsockname()[1]
        quiet.close()
        # ("accepted" lines are rate-limited: 50 in 10 s)
        end = (f"TLS handshake with 127.0.0.1:{port}: the peer closed the connection" if tls else
               f"goodbye ('127.0.0.1', {port}): closed before sending anything")
        wait_for(lambda: end in d.log(), 10, "the quiet connect's end")
        time.sleep(0.5)
        assert f"serves ('127.0.0.1', {port})" not in d.log()
        assert live_children(d.pid) == []
        assert f"serves ('127.0.0.2'," not in d.log()
    finally:
        close_all(socks)
    assert d.stop() == 0


@pytest.mark.parametrize("client", [None, "intruder", "selfie"])
def test_forking_mode_forks_no_child_for_a_failed_handshake(tmp_path, certs, client):
    """Forking mode with client certificates required: a handshake that fails (no certificate,
    one from another CA, a self-signed one) is refused by the parent, logged, and never forked."""
    d = Daemon(tmp_path, extra_args=["-m", "forking", *tls_args(certs)])
    settle_baseline(d)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(certs / "ca.pem"))
    ctx.check_hostname = False
    if client:
        ctx.load_cert_chain(str(certs / f"{client}.pem"), str(certs / f"{client}.key"))
    raw = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    port = raw.getsockname()[1]
    try:
        with ctx.wrap_socket(raw) as s:  # TLS 1.3: the refusal may come with the first read
            s.sendall(b"x")
            s.recv(1)
    except (ssl.SSLError, OSError):
        pass
    finally:
        raw.close()
    wait_for(lambda: f"TLS handshake with 127.0.0.1:{port} failed" in d.log(), 10, "the failure")
    time.sleep(0.3)
    assert f"serves ('127.0.0.1', {port})" not in d.log(), d.log()[-2000:]
    assert d.stop() == 0


def test_lines_before_authentication_are_rate_limited(tmp_path, gen):
    """300 connects that close at once: at most 50 lines about them in 10 s, then one line
    saying how many were suppressed; a real client is still served and logged in full."""
    d = Daemon(tmp_path, extra_args=["--max-connections-per-peer", "0"])
    for _ in range(300):
        socket.create_connection(("127.0.0.1", d.port), timeout=5).close()
    accepted = wait_for(lambda: d.log().count("accepted ('127.0.0.1'") >= 50 and
                        d.log().count("accepted ('127.0.0.1'"), 10, "the first lines logged")
    time.sleep(0.5)
    assert d.log().count("accepted ('127.0.0.1'") == accepted <= 50
    time.sleep(10)  # the window reopens: the next line comes after the summary
    assert served(gen, d.port, 'rpyc.classic.connect("127.0.0.1", port)')
    log = wait_for(lambda: "welcome ('127.0.0.1'" in d.log() and d.log(), 10, "the client")
    assert "more 'accepted' line(s) about connections not yet authenticated" in log
    assert "(more than 50 in 10 s)" in log
    assert d.stop() == 0


def in_own_netns(request):
    """Runs the calling test again inside a network namespace of its own (`unshare -n`), where it
    may add addresses to lo; True when this is that run."""
    if os.environ.get("RPYC_ADMISSION_NETNS") == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        for i in range(1, 21):
            subprocess.run(["ip", "-6", "addr", "add", f"fd00::{i}/64", "dev", "lo", "nodad"],
                           check=True)
        return True
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace (unshare -n)")
    env = dict(os.environ, RPYC_ADMISSION_NETNS="1")
    p = subprocess.run(["unshare", "-n", sys.executable, "-m", "pytest", "-q", "-p",
                        "no:cacheprovider", f"{__file__}::{request.node.name}"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    return False


def test_an_ipv6_64_is_one_peer_and_a_mapped_address_its_ipv4_address(request, tmp_path, gen):
    """--max-connections-per-peer 2, a listener on :: (in a namespace of its own): 19 addresses
    of fd00::/64 get 2 connections in all, not 38; 127.0.0.1 seen as ::ffff:127.0.0.1 gets 2;
    a real client from ::1 (another /64) is served."""
    if not in_own_netns(request):
        return
    # "::" is beyond loopback for the exposure rule (test_robust_security.py): this namespace
    # has no other host, so the override is safe here.
    d = Daemon(tmp_path, extra_args=["--max-connections-per-peer", "2",
                                     "--allow-unauthenticated-remote"], host="::")
    socks = []
    try:
        for i in range(2, 21):
            for _ in range(2):
                s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                s.bind((f"fd00::{i}", 0))
                s.settimeout(5)
                s.connect(("fd00::1", d.port))
                socks.append(s)
        for _ in range(3):
            socks.append(socket.create_connection(("127.0.0.1", d.port), timeout=5))
        wait_for(lambda: d.log().count("(max_connections_per_peer)") >= 37, 10, "the refusals")
        log = d.log()
        assert log.count("open from fd00::/64 (max_connections_per_peer)") == 36, log[-3000:]
        assert log.count("open from 127.0.0.1 (max_connections_per_peer)") == 1, log[-3000:]
        assert served(gen, d.port, 'rpyc.classic.connect("::1", port, ipv6=True)')
    finally:
        close_all(socks)
    assert d.stop() == 0
