"""Support for the robustness tests: faults, hostile input, slowloris, TLS negatives.

The daemon under test is the built rpyc-classicd ($RPYC_CLASSICD), started by classic_support's
Daemon on a free loopback port; the registry is $RPYC_REGISTRYD. Well-behaved peers are the real
rpyc clients (python3-rpyc 5.3.0 and the 6.x library in $RPYC6_PATH); hostile peers are raw
sockets speaking the wire format of docs/protocol.md (both generations).

RPYC_STRESS=long enables the long-form variants (see `long_only`).
"""

import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "classic"))

import classic_support  # noqa: E402
from classic_support import (CLASSICD, GENERATIONS, PYTHON, REFERENCE, REPO, RPYC6_PATH,  # noqa: E402
                             children_of, free_port, zombies_of)

REGISTRYD = Path(os.environ.get("RPYC_REGISTRYD", REPO / "build/dev/daemons/registryd/rpyc-registryd"))
LONG = os.environ.get("RPYC_STRESS") == "long"

long_only = pytest.mark.skipif(not LONG, reason="long-form only (RPYC_STRESS=long)")
native_only = pytest.mark.skipif(REFERENCE, reason="rpyc-classicd's own behaviour")

__all__ = ["CLASSICD", "GENERATIONS", "PYTHON", "RPYC6_PATH", "Daemon", "free_port"]


class Daemon(classic_support.Daemon):
    """classic_support's Daemon logging to its log file only: the hundreds of lines these tests
    cause stay out of the captured stdout/stderr file."""

    def __init__(self, tmp_path, extra_args=(), host="127.0.0.1"):
        super().__init__(tmp_path, extra_args=[*extra_args, "--log", "file"], host=host)


# --- waiting and /proc ---------------------------------------------------------------------------

def wait_for(pred, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.05)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def thread_count(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads")


def pid_alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- the daemon's log ----------------------------------------------------------------------------

def peer_lines(log, port, host="127.0.0.1"):
    """Every log line about the connection from (host, port)."""
    keys = (f"('{host}', {port})", f"{host}:{port}")
    return [l for l in log.splitlines() if any(k in l for k in keys)]


def end_lines(log, port, host="127.0.0.1"):
    """The lines that say why the connection from (host, port) ended (one per connection)."""
    return [l for l in peer_lines(log, port, host)
            if re.search(r"connection \(.*\) (closed|ended):|TLS handshake with|refused ", l)]


def lent_counts(log, port):
    m = re.search(rf"connection \('127\.0\.0\.1', {port}\): (\d+) objects lent at disconnect, "
                  rf"(\d+) after release", log)
    assert m, f"no lifetime line for port {port}:\n{log}"
    return int(m.group(1)), int(m.group(2))


def settle_baseline(d, timeout=10):
    """The daemon's fd count once no connection is open (after the readiness probe ended)."""
    wait_for(lambda: "goodbye" in d.log() or "TLS handshake with" in d.log(), timeout, "probe gone")
    time.sleep(0.2)
    return fd_count(d.pid)


# --- clients -------------------------------------------------------------------------------------

def client_env(gen):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if gen == "rpyc6":
        if not (RPYC6_PATH / "rpyc" / "__init__.py").exists():
            pytest.skip(f"rpyc 6.x client library not found at {RPYC6_PATH} (set RPYC6_PATH)")
        env["PYTHONPATH"] = str(RPYC6_PATH)
    return env


def popen_client(gen, script, **fmt):
    """A real rpyc client of generation `gen` running `script` (str.format'ed with fmt)."""
    code = "import os, sys, time, threading, rpyc\n" + textwrap.dedent(script).format(**fmt)
    return subprocess.Popen([PYTHON, "-c", code], env=client_env(gen), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_client(gen, script, timeout=60, **fmt):
    p = popen_client(gen, script, **fmt)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"[{gen}] client timed out\n{out}\n{err}")
    assert p.returncode == 0, f"[{gen}] client exited {p.returncode}\n{out}\n{err}"
    return out


def other_gen():
    """rpyc6 when its library is there, else rpyc5: for the well-behaved bystander clients."""
    return "rpyc6" if (RPYC6_PATH / "rpyc" / "__init__.py").exists() else "rpyc5"


WATCHER = """
# A well-behaved client: one request every 20 ms until stdin closes; any failure exits 1.
port = {port}
conn = {connect}
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
n, worst = 0, 0.0
print("READY", flush=True)
while not stop.is_set():
    t0 = time.monotonic()
    assert conn.eval("{{}}".format(n) + "+1") == n + 1
    worst = max(worst, time.monotonic() - t0)
    n += 1
    time.sleep(0.02)
conn.close()
print("SERVED", n, "WORST", round(worst, 3), flush=True)
"""


class Watcher:
    """A real client doing requests all along a test; `finish()` checks none failed or stalled."""

    def __init__(self, gen, port, connect=None):
        self.gen = gen
        self.proc = popen_client(gen, WATCHER, port=port,
                                 connect=connect or 'rpyc.classic.connect("127.0.0.1", port)')
        line = self.proc.stdout.readline().strip()
        if line != "READY":
            self.proc.kill()
            raise AssertionError(f"watcher did not start: {line}\n{self.proc.stderr.read()}")

    def finish(self, max_stall=5.0):
        out, err = self.proc.communicate("", timeout=60)
        assert self.proc.returncode == 0, f"[{self.gen}] the well-behaved client failed:\n{out}\n{err}"
        m = re.search(r"SERVED (\d+) WORST ([\d.]+)", out)
        assert m, out
        served, worst = int(m.group(1)), float(m.group(2))
        assert served > 0, out
        assert worst < max_stall, f"a request of the well-behaved client took {worst} s"
        return served, worst

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


# --- the wire format (docs/protocol.md §1-§3), for raw hostile peers ----------------------------------

REQUEST, REPLY, EXCEPTION = 1, 2, 3
PING, CLOSE, GETROOT, GETATTR, DELATTR, SETATTR, CALL, CALLATTR = 1, 2, 3, 4, 5, 6, 7, 8
REPR, STR, CMP, HASH, DIR, PICKLE, DEL, INSPECT = 9, 10, 11, 12, 13, 14, 15, 16
LABEL_VALUE, LABEL_TUPLE, LABEL_LOCAL_REF, LABEL_REMOTE_REF = 1, 2, 3, 4


def b_int(n):
    if -48 <= n <= 159:
        return bytes([n + 0x50])
    s = str(n).encode()
    return (b"\x16" + bytes([len(s)]) if len(s) < 256 else b"\x17" + struct.pack("!L", len(s))) + s


def b_bytes(b):
    if len(b) == 0:
        return b"\x01"
    if len(b) <= 4:
        return bytes([0x09 + len(b)]) + b
    if len(b) <= 255:
        return b"\x0e" + bytes([len(b)]) + b
    return b"\x0f" + struct.pack("!L", len(b)) + b


def b_str(s):
    return b"\x08" + b_bytes(s.encode())


def b_tuple(*items):
    n = len(items)
    if n == 0:
        head = b"\x02"
    elif n <= 4:
        head = bytes([0x0f + n])
    elif n <= 255:
        head = b"\x14" + bytes([n])
    else:
        head = b"\x15" + struct.pack("!L", n)
    return head + b"".join(items)


def b_none():
    return b"\x00"


def message(gen, msg_type, seq, args):
    """A message payload: `args` is already brine."""
    if gen == "rpyc5":
        return b"\x12" + bytes([0x50 + msg_type]) + b_int(seq) + args
    return bytes([msg_type]) + b"\x11" + b_int(seq) + args


def request(gen, seq, handler, boxed_args):
    return message(gen, REQUEST, seq, b_tuple(b_int(handler), boxed_args))


def by_value(v):
    return b_tuple(b_int(LABEL_VALUE), v)


def local_ref(id_pack):
    return b_tuple(b_int(LABEL_LOCAL_REF), id_pack)


def boxed_tuple(*boxed):
    return b_tuple(b_int(LABEL_TUPLE), b_tuple(*boxed))


def frame(payload, flag=0):
    return struct.pack("!LB", len(payload), flag) + payload + b"\n"


class RawPeer:
    """A raw socket speaking frames; decodes just enough of replies (brine via rpyc 5.3.0)."""

    def __init__(self, port, host="127.0.0.1", timeout=10, log=None):
        """With log (a callable returning the daemon's log so far), the local port is one that
        log has never mentioned, so that every line naming it is about this connection: on
        loopback the kernel hands out a port again seconds after its last connection ended."""
        held = []
        while True:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            self.port = self.sock.getsockname()[1]
            if log is None or f"('{host}', {self.port})" not in log():
                break
            held.append(self.sock)  # kept open until a fresh port is found, then let go
        for s in held:
            s.close()
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def recv_frame(self):
        """The next payload, or None at EOF/reset."""
        import zlib
        while True:
            if len(self.buf) >= 5:
                length, flag = struct.unpack("!LB", self.buf[:5])
                if len(self.buf) >= 5 + length + 1:
                    payload = self.buf[5:5 + length]
                    self.buf = self.buf[5 + length + 1:]
                    return zlib.decompress(payload) if flag else payload
            try:
                chunk = self.sock.recv(1 << 16)
            except (ConnectionResetError, BrokenPipeError):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def reply(self, gen):
        """(message type, seq, decoded args) of the next message, or None at EOF."""
        from rpyc.core import brine
        p = self.recv_frame()
        if p is None:
            return None
        if gen == "rpyc5":
            return brine.load(p)
        seq, args = brine.load(p[1:])
        return p[0], seq, args

    def closed(self, timeout=10):
        """True when the server closes the connection within `timeout` (reads and drops data)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(1 << 16):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


# --- certificates --------------------------------------------------------------------------------

NEWKEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]  # fast to make


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", *NEWKEY, "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)


def make_cert(d, ca, name, days="2"):
    """A certificate signed by `ca`. days="-1" makes one that expired when it was made (OpenSSL
    3.0's x509 -req accepts a negative validity: notAfter = now - 1 day), no clock faking needed."""
    openssl("req", *NEWKEY, "-nodes", "-subj", f"/CN={name}", "-keyout",
            f"{name}.key", "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", days, "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=d)


def make_certs(d):
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_cert(d, "ca", "server")
    make_cert(d, "ca", "client")
    make_cert(d, "otherca", "intruder")
    make_cert(d, "ca", "expired", days="-1")
    openssl("req", "-x509", *NEWKEY, "-nodes", "-days", "2", "-subj", "/CN=selfie",
            "-keyout", "selfie.key", "-out", "selfie.pem", cwd=d)
    return d


def tls_args(certs, cafile=True):
    args = ["--ssl-keyfile", str(certs / "server.key"), "--ssl-certfile", str(certs / "server.pem")]
    if cafile:
        args += ["--ssl-cafile", str(certs / "ca.pem")]
    return args


def ssl_connect_expr(certs, client="client"):
    return (f'rpyc.classic.ssl_connect("127.0.0.1", port, keyfile={str(certs / (client + ".key"))!r}, '
            f'certfile={str(certs / (client + ".pem"))!r}, ca_certs={str(certs / "ca.pem")!r})')


def client_hello():
    """The bytes of a TLS ClientHello, as a real client would send them first."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()
