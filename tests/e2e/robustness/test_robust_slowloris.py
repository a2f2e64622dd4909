"""Slowloris: 200 connections that send nothing or one byte a second, with and without TLS, in
threaded and threadpool modes. A well-behaved real client still connects and is served promptly;
the TLS handshake timeout and the idle timeout close them; the per-peer limit holds.

The whole-frame deadline (--frame-timeout): a peer trickling a frame at one byte a second is cut
at the deadline in every mode, with and without TLS, while a real client that stays silent
between frames longer than the deadline and then sends a large frame quickly is served.

The slow connections come from 127.0.0.2 (any 127/8 address is loopback on Linux) so that the
per-peer limit applies to them and not to the well-behaved client on 127.0.0.1.
"""

import re
import socket
import ssl
import threading
import time

import pytest

from robust_support import (Daemon, LONG, client_hello, frame, native_only, other_gen,
                            popen_client, ssl_connect_expr, thread_count, tls_args, wait_for)

pytestmark = native_only

SLOW = 200 if not LONG else 600
PER_PEER = SLOW * 3 // 4  # a quarter of the slow connections are refused
TIMEOUT = 4 if not LONG else 10  # --idle-timeout and --tls-handshake-timeout, seconds
POOL_THREADS = 1 + 8 + 1  # the loop, --threads workers, the registrar/log spare
PROMPT = 2.0  # seconds the well-behaved client may take to connect and get an answer

GOOD = """
port = {port}
sys.stdin.readline()  # started before the slow connections; runs when told
t0 = time.monotonic()
c = {connect}
assert c.eval("6*7") == 42
print("TOOK", time.monotonic() - t0, flush=True)
c.close()
"""


class Slowloris:
    """SLOW connections from 127.0.0.2: half silent, half trickling one byte a second."""

    def __init__(self, port, tls):
        self.socks = []
        for i in range(SLOW):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            self.socks.append(s)
        self.silent = self.socks[::2]
        self.trickling = self.socks[1::2]
        # What trickles: a ClientHello, or a frame header announcing a payload that never ends.
        self.data = client_hello() if tls else b"\x00\x00\x10\x00\x00" + b"\x12" * 4096
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.trickle, daemon=True)
        self.thread.start()

    def trickle(self):
        i = 0
        while not self.stop.wait(1.0):
            for s in self.trickling:
                try:
                    s.send(self.data[i:i + 1])
                except OSError:
                    pass
            i += 1

    def closed_by_server(self, socks):
        """How many of `socks` the server has closed (EOF or reset)."""
        n = 0
        for s in socks:
            s.setblocking(False)
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        n += 1
                        break
            except BlockingIOError:
                pass
            except OSError:
                n += 1
        return n

    def close(self):
        self.stop.set()
        self.thread.join()
        for s in self.socks:
            s.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("mode", ["threaded", "threadpool"])
def test_slowloris_does_not_starve_a_real_client(tmp_path, certs, mode, tls):
    args = ["-m", mode, "--idle-timeout", str(TIMEOUT), "--tls-handshake-timeout", str(TIMEOUT),
            "--max-connections-per-peer", str(PER_PEER)]
    d = Daemon(tmp_path, extra_args=args + (tls_args(certs) if tls else []))
    connect = ssl_connect_expr(certs) if tls else 'rpyc.classic.connect("127.0.0.1", port)'
    slow = None
    try:
        good = popen_client("rpyc5", GOOD, port=d.port, connect=connect)
        slow = Slowloris(d.port, tls)
        # While all of them are open (well within the timeouts), a real client is served promptly.
        out, err = good.communicate("go\n", timeout=60)
        assert good.returncode == 0, (out, err, d.log()[-3000:])
        took = float(re.search(r"TOOK ([\d.]+)", out).group(1))
        # The test means something only if the real client was served before any timeout fired.
        log = d.log()
        first_timeout = min([log.find(k) for k in ("idle timeout", "timed out after") if k in log],
                            default=len(log))
        assert log.rfind("welcome ('127.0.0.1'") < first_timeout, "too slow to test: timeouts first"
        assert took < PROMPT, f"the well-behaved client took {took:.2f} s"
        if mode == "threadpool" and not tls:  # (a TLS handshake has a thread of its own)
            assert thread_count(d.pid) <= POOL_THREADS, "idle connections hold threads"
        refused = d.log().count("(max_connections_per_peer)")
        assert refused == SLOW - PER_PEER, refused
        # The timeouts close the rest: a silent connection at the idle (or handshake) timeout; a
        # trickling one at the handshake timeout. Without TLS a byte a second is not idle: those
        # stay open (the frame timeout, 120 s by default, comes after the test), held to the
        # per-peer limit.
        wait_for(lambda: slow.closed_by_server(slow.silent) == len(slow.silent), TIMEOUT + 5,
                 "silent connections closed")
        if tls:
            wait_for(lambda: slow.closed_by_server(slow.trickling) == len(slow.trickling),
                     TIMEOUT + 5, "trickling handshakes closed")
            fails = [l for l in d.log().splitlines() if "TLS handshake with 127.0.0.2:" in l]
            # Each of the PER_PEER handshakes timed out; the lines saying so are rate-limited (50
            # in 10 s).
            timed_out = sum("timed out after" in l for l in fails)
            assert timed_out == len(fails) and 0 < timed_out <= min(PER_PEER, 50), fails[:5]
            assert "welcome ('127.0.0.2'" not in d.log(), "a slow peer was served"
        else:
            idle = [l for l in d.log().splitlines() if "idle timeout" in l and "127.0.0.2" in l]
            assert len(idle) >= PER_PEER // 2 - 1, len(idle)
            assert slow.closed_by_server(slow.trickling) <= SLOW - PER_PEER  # only the refused
        if mode == "threadpool":
            wait_for(lambda: thread_count(d.pid) <= POOL_THREADS, 5, "only the pool's threads")
        # And again, with the slow ones gone or still trickling.
        good = popen_client(other_gen(), GOOD, port=d.port, connect=connect)
        out, err = good.communicate("go\n", timeout=60)
        assert good.returncode == 0, (out, err)
    finally:
        if slow:
            slow.close()
        assert d.stop() == 0


def test_sigterm_cuts_pending_tls_handshakes_short_in_threadpool_mode(tmp_path, certs):
    """Handshakes have threads of their own in threadpool mode; SIGTERM must not wait for their
    timeout (30 s here) nor abandon them as running user code."""
    d = Daemon(tmp_path, extra_args=["-m", "threadpool", "--tls-handshake-timeout", "30",
                                     *tls_args(certs)])
    socks = []
    try:
        for _ in range(20):
            socks.append(socket.create_connection(("127.0.0.1", d.port), timeout=5))
        socks[0].sendall(client_hello()[:10])
        time.sleep(0.5)
        t0 = time.monotonic()
        d.proc.send_signal(__import__("signal").SIGTERM)
        assert d.proc.wait(timeout=15) == 0
        assert time.monotonic() - t0 < 3, f"exit took {time.monotonic() - t0:.1f} s"
        assert "still running user code" not in d.log(), d.log()[-2000:]
    finally:
        for s in socks:
            s.close()
        d.stop()


@pytest.mark.parametrize("mode", ["threaded", "threadpool"])
def test_max_connections_holds_and_the_idle_timeout_frees_the_slots(tmp_path, mode):
    cap = 50
    d = Daemon(tmp_path, extra_args=["-m", mode, "--max-connections", str(cap),
                                     "--idle-timeout", "2"])
    socks = []
    try:
        wait_for(lambda: "goodbye" in d.log(), 10, "the readiness probe gone")
        for _ in range(cap + 10):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", d.port))
            socks.append(s)
        wait_for(lambda: d.log().count("(max_connections)") == 10, 10, "10 refused")
        # Full: a real client is refused too (the cap is global) ...
        full = popen_client("rpyc5", GOOD, port=d.port, connect='rpyc.classic.connect("127.0.0.1", port)')
        full.communicate("go\n", timeout=60)
        assert full.returncode != 0, "served beyond max_connections"
        # ... until the idle timeout has closed the silent ones.
        wait_for(lambda: d.log().count("idle timeout") >= cap, 10, "idle connections closed")
        out = popen_client(other_gen(), GOOD, port=d.port,
                           connect='rpyc.classic.connect("127.0.0.1", port)').communicate("go\n", 60)[0]
        assert "TOOK" in out, out
        assert d.log().count("(max_connections)") == 11  # the 10 and the real client, no more
    finally:
        for s in socks:
            s.close()
        assert d.stop() == 0


FRAME_TIMEOUT = 3  # --frame-timeout, seconds
TRICKLED = frame(b"\x12" * 100)  # 106 bytes: never complete at one byte a second
LARGE = """
port = {port}
c = {connect}
assert c.eval("6*7") == 42
time.sleep({silence})  # silence between frames is not what the frame timeout limits
import zlib
data = os.urandom(8 << 20)  # random: rpyc sends it as one 8 MiB frame, uncompressed
t0 = time.monotonic()
assert c.modules.zlib.crc32(data) == zlib.crc32(data)
print("TOOK", time.monotonic() - t0, flush=True)
c.close()
"""


def trickler(port, certs, tls):
    """A connection from 127.0.0.2 (its own peer name in the log); with TLS, handshaken, so
    that each byte it sends is a TLS record of its own."""
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(str(certs / "ca.pem"))
        ctx.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
        s = ctx.wrap_socket(s)
    return s


def trickle_until_closed(s, limit):
    """Sends TRICKLED, its header at once and then one byte a second, until the server closes
    the connection; returns the seconds from the first byte to the close (None if still open
    after `limit` s)."""
    t0 = time.monotonic()
    for i in range(4, len(TRICKLED)):
        try:
            s.send(TRICKLED[:5] if i == 4 else TRICKLED[i:i + 1])
        except OSError:
            return time.monotonic() - t0
        s.settimeout(1.0)
        try:
            if s.recv(1) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            pass
        except OSError:  # reset, or TLS's abrupt end
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            return None
    return None


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("mode", ["threaded", "threadpool", "forking"])
def test_frame_timeout_cuts_a_trickler_not_a_large_frame(tmp_path, certs, mode, tls):
    d = Daemon(tmp_path, extra_args=["-m", mode, "--frame-timeout", str(FRAME_TIMEOUT),
                                     *(tls_args(certs) if tls else [])])
    connect = ssl_connect_expr(certs) if tls else 'rpyc.classic.connect("127.0.0.1", port)'
    s = None
    try:
        good = popen_client("rpyc5", LARGE, port=d.port, connect=connect,
                            silence=FRAME_TIMEOUT + 1)
        s = trickler(d.port, certs, tls)
        local = s.getsockname()[1]
        took = trickle_until_closed(s, FRAME_TIMEOUT + 10)
        assert took is not None, "the trickling peer was never cut\n" + d.log()[-3000:]
        assert FRAME_TIMEOUT - 0.2 <= took <= FRAME_TIMEOUT + 3, took
        # One clear line naming the peer, how much of the frame came, and the limit.
        wait_for(lambda: f"127.0.0.2:{local} sent" in d.log(), 10, "the frame timeout logged")
        line = [l for l in d.log().splitlines() if f"127.0.0.2:{local} sent" in l]
        assert len(line) == 1, line
        assert re.search(rf"connection \('127\.0\.0\.2', {local}\) closed: .*frame timeout: "
                         rf"127\.0\.0\.2:{local} sent ([6-9]|1[0-9]) of 106 bytes of a frame in "
                         rf"{FRAME_TIMEOUT} s", line[0]), line[0]
        # The real client, silent for longer than the deadline, then an 8 MiB frame: served.
        out, err = good.communicate(timeout=90)
        assert good.returncode == 0, (out, err, d.log()[-3000:])
        assert "TOOK" in out, out
        assert "frame timeout: 127.0.0.1:" not in d.log()
    finally:
        if s:
            s.close()
        assert d.stop() == 0


def tls_record_prefix(port, certs):
    """A TLS client that completes its handshake, then sends the first 3 bytes of a record
    carrying a frame, and no more. Returns the socket."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(str(certs / "ca.pem"))
    ctx.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            s.sendall(outgoing.read())
            chunk = s.recv(1 << 16)
            assert chunk, "closed during the handshake"
            incoming.write(chunk)
    s.sendall(outgoing.read())  # the client's Finished
    tls.write(TRICKLED)
    s.sendall(outgoing.read()[:3])
    return s


def test_partial_tls_records_hold_no_worker_in_threadpool_mode(tmp_path, certs):
    """Peers that stop inside a TLS record (after the handshake) must not hold the workers:
    with --threads 2, four of them, then a real client is served at once."""
    d = Daemon(tmp_path, extra_args=["-m", "threadpool", "--threads", "2", *tls_args(certs)])
    socks = []
    try:
        socks = [tls_record_prefix(d.port, certs) for _ in range(4)]
        time.sleep(0.5)  # the workers have seen the partial records
        good = popen_client("rpyc5", GOOD, port=d.port, connect=ssl_connect_expr(certs))
        out, err = good.communicate("go\n", timeout=30)  # (blocked workers: never served)
        assert good.returncode == 0, (out, err, d.log()[-3000:])
        took = float(re.search(r"TOOK ([\d.]+)", out).group(1))
        assert took < PROMPT, f"the well-behaved client took {took:.2f} s"
    finally:
        for s in socks:
            s.close()
        assert d.stop() == 0
