"""Authenticators and credentials (issue 13): the same service and authenticator under rpyc's
ThreadedServer(authenticator=...) and under rpyc-classicd, with both client generations, give the
clients the same outcome and the service the same conn._config['credentials'] (a client
certificate's getpeercert() dict with TLS, an authenticator's answer); the native allow-lists
(allow_from, unix_allow_users/unix_allow_groups with SO_PEERCRED) refuse before a byte is read."""

import json
import os
import re
import signal
import socket
import subprocess
import textwrap
import time

import pytest

from hosting_support import (CLASSICD, PYTHON, RPYC6_PATH, Server, free_port, python_env,
                             require_generation)

WHO = "auth_service:WhoAmIService"

REFERENCE_SERVER = """\
import importlib, logging, sys
import rpyc
from rpyc.utils.server import ThreadedServer
from rpyc.utils.authenticators import SSLAuthenticator
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(levelname)s:%(name)s:%(message)s')
spec, port, auth = sys.argv[1], int(sys.argv[2]), sys.argv[3]
module, _, name = spec.partition(':')
service = getattr(importlib.import_module(module), name)
if auth.startswith('ssl:'):
    key, cert, ca = auth[4:].split(',')
    authenticator = SSLAuthenticator(key, cert, ca_certs=ca)
else:
    mod, _, fn = auth.partition(':')
    authenticator = getattr(importlib.import_module(mod), fn)
ThreadedServer(service, hostname='127.0.0.1', port=port, authenticator=authenticator).start()
"""


class Reference:
    """rpyc's ThreadedServer with an authenticator, logging to its output file."""

    def __init__(self, gen, spec, auth, tmp_path):
        self.port = free_port()
        self.outfile = tmp_path / f"python-{gen}.out"
        with open(self.outfile, "wb") as out:
            self.proc = subprocess.Popen(
                [PYTHON, "-c", REFERENCE_SERVER, spec, str(self.port), auth], env=python_env(gen),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_listening(self.proc, self.port, self.output)

    def output(self):
        return self.outfile.read_text(errors="replace")

    def log(self):
        return self.output()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_listening(proc, port, output):
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{output()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server did not listen within 20 s:\n{output()}")
            time.sleep(0.05)


def ours(gen, spec, tmp_path, extra_args):
    server = Server("ours", gen, spec, {}, tmp_path, extra_args)
    server.log = lambda: server.logfile.read_text(errors="replace") if server.logfile.exists() else ""
    return server


TOKEN_CLIENT = """\
import json, os, socket, sys, rpyc
from rpyc.core.stream import SocketStream
from rpyc.utils.factory import connect_stream
port, token = int(os.environ['SERVER_PORT']), os.environ['TOKEN'].encode()
out = []
s = socket.create_connection(('127.0.0.1', port))
local_port = s.getsockname()[1]
f = s.makefile('rb')
out.append(['challenge', f.readline().decode()])
s.sendall(token + b'\\n')
reply = f.readline()
out.append(['reply', reply.decode()])
if reply == b'ok\\n':
    c = connect_stream(SocketStream(s))
    out.append(['credentials', c.root.credentials()])
    out.append(['add', c.root.add(1, 2)])
    c.close()
else:
    try:
        rest = s.recv(100)
    except OSError as e:
        rest = type(e).__name__.encode()
    out.append(['after', rest.decode()])
print(json.dumps([local_port, out]))
"""

TLS_CLIENT = """\
import json, os, rpyc
c = rpyc.ssl_connect('127.0.0.1', int(os.environ['SERVER_PORT']), keyfile=os.environ['KEY'],
                     certfile=os.environ['CERT'], ca_certs=os.environ['CA'])
print(json.dumps([c.root.credentials(), c.root.add(2, 3)]))
c.close()
"""


def client(gen, script, **env):
    e = dict(os.environ, RPYC_GEN=gen, **{k: str(v) for k, v in env.items()})
    e.pop("PYTHONPATH", None)
    if gen == "rpyc6":
        e["PYTHONPATH"] = str(RPYC6_PATH)
    p = subprocess.run([PYTHON, "-c", script], env=e, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"[{gen}] client exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def wait_for(server, pattern, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, server.log())
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not logged:\n{server.log()}")


def both(gen, tmp_path, auth, extra_args, run, spec=WHO):
    """`run(server)` against the reference and against rpyc-classicd; both results."""
    require_generation(gen)
    results = {}
    for kind in ("python", "ours"):
        server = (Reference(gen, spec, auth, tmp_path) if kind == "python"
                  else ours(gen, spec, tmp_path, extra_args))
        try:
            results[kind] = run(server)
        except AssertionError as e:
            raise AssertionError(f"{kind}: {e}\n{kind} server output:\n{server.output()}") from None
        finally:
            server.stop()
    return results["python"], results["ours"]


# --- an authenticator (rpyc's contract) ----------------------------------------------------------

def test_authenticator_accepts_with_its_credentials(gen, tmp_path):
    auth = "auth_service:token_authenticator"

    def run(server):
        port, out = client(gen, TOKEN_CLIENT, SERVER_PORT=server.port, TOKEN="sesame")
        m = wait_for(server, rf"welcome (\('127\.0\.0\.1', {port}\)) \((.*)\)")
        assert f"{m.group(1)} authenticated successfully" in server.log()
        return out, m.group(2)

    python, mine = both(gen, tmp_path, auth, ["--authenticator", auth], run)
    assert mine == python
    assert mine[0][2] == ["credentials", "{'user': 'alice', 'token': 'sesame'}"]
    assert mine[1] == "{'user': 'alice', 'token': 'sesame'}"


AT_CONNECT = """\
import time
def at_connect(c):
    deadline = time.monotonic() + 10
    while (seen := c.root.at_connect()) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return None if seen is None else [str(x) for x in seen]
"""


@pytest.mark.parametrize("mode", ["threaded", "threadpool", "forking"])
def test_authenticator_credentials_reach_on_connect_in_every_mode(gen, tmp_path, mode):
    """One credentials slot for the authenticator and the hosted conn: on_connect, which calls
    the client, sees what the authenticator returned (threadpool: on the same setup thread)."""
    auth = "auth_service:token_authenticator"
    script = AT_CONNECT + TOKEN_CLIENT.replace("c.root.credentials()", "at_connect(c)")

    def run(server):
        port, out = client(gen, script, SERVER_PORT=server.port, TOKEN="sesame")
        wait_for(server, rf"welcome \('127\.0\.0\.1', {port}\) \(")
        return out

    python, mine = both(gen, tmp_path, auth, ["-m", mode, "--authenticator", auth], run,
                        spec="auth_service:CallingWhoAmIService")
    assert mine == python
    assert mine[2] == ["credentials", ["{'user': 'alice', 'token': 'sesame'}", "VOID"]]


def test_authenticator_refuses_and_logs_the_reason(gen, tmp_path):
    auth = "auth_service:token_authenticator"

    def run(server):
        port, out = client(gen, TOKEN_CLIENT, SERVER_PORT=server.port, TOKEN="wrong")
        m = wait_for(server, rf"(\('127\.0\.0\.1', {port}\)) failed to authenticate\.\.\. "
                             r"rejecting connection(.*)")
        time.sleep(0.2)
        assert f"welcome {m.group(1)}" not in server.log()
        return out, m.group(2)

    (python, _), (mine, reason) = both(gen, tmp_path, auth, ["--authenticator", auth], run)
    assert mine == python
    assert mine[1] == ["reply", "no\n"] and mine[2] == ["after", ""]
    assert reason == ": wrong token 'wrong'"  # the reference logs no reason


def test_authenticator_failing_otherwise_refuses(gen, tmp_path):
    auth = "auth_service:broken_authenticator"
    script = """\
import json, os, socket
s = socket.create_connection(('127.0.0.1', int(os.environ['SERVER_PORT'])))
s.settimeout(10)
try:
    data = s.recv(10)
except OSError as e:
    data = b''
print(json.dumps(data.decode()))
"""

    def run(server):
        return client(gen, script, SERVER_PORT=server.port)

    python, mine = both(gen, tmp_path, auth, ["--authenticator", auth], run)
    assert mine == python == ""


def test_authenticator_without_credentials_logs_a_plain_welcome(gen, tmp_path):
    require_generation(gen)
    auth = "auth_service:silent_authenticator"
    server = ours(gen, WHO, tmp_path, ["--authenticator", auth])
    try:
        script = CALL_CLIENT.replace("c.root.add(1, 2)", "c.root.credentials()")
        port, out = client(gen, script, SERVER_PORT=server.port)
        assert out == "None"
        wait_for(server, rf"welcome \('127\.0\.0\.1', {port}\)\n")
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["threaded", "threadpool", "forking"])
def test_authenticator_never_holds_up_other_connections(gen, tmp_path, mode):
    """A client that never answers the challenge holds its own connection only; it is refused
    when tls_handshake_timeout runs out (classic service: every mode)."""
    require_generation(gen)
    auth = "auth_service:line_authenticator"
    port = free_port()
    log = tmp_path / "d.log"
    proc = subprocess.Popen(
        [str(CLASSICD), "-m", mode, "-p", str(port), "--logfile", str(log), "--log", "file",
         "--authenticator", auth, "--tls-handshake-timeout", "3", "--threads", "1"],
        env=python_env("rpyc5"), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        wait_listening(proc, port, lambda: log.read_text() if log.exists() else "")
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        start = time.monotonic()
        script = """\
import json, os, socket, rpyc
from rpyc.core.stream import SocketStream
s = socket.create_connection(('127.0.0.1', int(os.environ['SERVER_PORT'])))
s.sendall(b'token\\n')
c = rpyc.classic.connect_stream(SocketStream(s))
print(json.dumps([c.eval('6*7'), c.root.getconn()._config['credentials']]))
"""
        assert client(gen, script, SERVER_PORT=port) == [42, "token"]
        # (A held-up connection would wait for the 3 s deadline.)
        assert time.monotonic() - start < 2.5, "a silent client held up another connection"
        for s in silent:
            s.settimeout(10)
            assert s.recv(10) == b""  # closed at the deadline
            s.close()
        text = log.read_text()
        assert text.count("failed to authenticate... rejecting connection: no answer within 3 s "
                          "(tls_handshake_timeout)") == 3, text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


GATED_CLIENT = """\
import json, os, socket, rpyc
from rpyc.core.stream import SocketStream
from rpyc.utils.factory import connect_stream
s = socket.create_connection(('127.0.0.1', int(os.environ['SERVER_PORT'])))
c = connect_stream(SocketStream(s))
print(json.dumps([s.getsockname()[1], c.root.credentials(), c.root.add(1, 2)]))
c.close()
"""


def start_gated(tmp_path, mode, timeout):
    """rpyc-classicd serving WhoAmIService behind gated_authenticator, with max_handshakes 1."""
    port = free_port()
    log = tmp_path / "d.log"
    gate = tmp_path / "gate"
    proc = subprocess.Popen(
        [str(CLASSICD), "-m", mode, "--host", "127.0.0.1", "-p", str(port), "--logfile", str(log),
         "--log", "file", "--service", WHO, "--authenticator", "auth_service:gated_authenticator",
         "--max-handshakes", "1", "--tls-handshake-timeout", str(timeout)],
        env=dict(python_env("rpyc5"), AUTH_GATE=str(gate)), stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT, start_new_session=True)
    read = lambda: log.read_text(errors="replace") if log.exists() else ""  # noqa: E731
    wait_listening(proc, port, read)
    # The probe of wait_listening holds the one slot until its authenticator has seen it leave.
    wait_until(lambda: "the client left" in read(), "the probe was not refused")
    return proc, port, gate, read


def started(gate):
    path = gate.parent / (gate.name + ".started")
    return path.read_text().count("started\n") if path.exists() else 0


def wait_until(predicate, what, timeout=15):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def refused_connect(port):
    """A connection the daemon closes unserved; the client's local port."""
    s = socket.create_connection(("127.0.0.1", port))
    local = s.getsockname()[1]
    s.settimeout(10)
    try:
        assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    s.close()
    return local


@pytest.mark.parametrize("mode", ["threaded", "threadpool", "forking"])
def test_a_running_authenticator_counts_against_max_handshakes(gen, tmp_path, mode):
    """While an authenticator runs, its connection is in its handshake: with max_handshakes 1 a
    second connection is refused (the line TLS handshakes get); once the authenticator has
    returned, connections are admitted again."""
    require_generation(gen)
    proc, port, gate, log = start_gated(tmp_path, mode, 30)
    env = dict(os.environ, RPYC_GEN=gen, SERVER_PORT=str(port))
    env.pop("PYTHONPATH", None)
    if gen == "rpyc6":
        env["PYTHONPATH"] = str(RPYC6_PATH)
    try:
        first = subprocess.Popen([PYTHON, "-c", GATED_CLIENT], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        wait_until(lambda: started(gate) == 1, f"the first authenticator never started:\n{log()}")
        local = refused_connect(port)
        wait_until(lambda: f"refused ('127.0.0.1', {local}): 1 connections in their handshake "
                           "(max_handshakes)" in log(), f"no refusal logged:\n{log()}")
        assert started(gate) == 1  # the refused one never reached the authenticator
        gate.touch()
        out, err = first.communicate(timeout=30)
        assert first.returncode == 0, err
        assert json.loads(out)[1:] == ["'gated'", 3]
        # The slot is free again: the next connection is authenticated and served.
        port3, credentials, value = client(gen, GATED_CLIENT, SERVER_PORT=port)
        assert (credentials, value) == ("'gated'", 3)
        assert started(gate) == 2
        assert log().count("(max_handshakes)") == 1, log()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


@pytest.mark.parametrize("mode", ["threaded", "forking"])
def test_an_authenticator_past_its_deadline_counts_no_longer(tmp_path, mode):
    """An authenticator stuck in the service's own code holds its slot only until the handshake
    deadline: then a new connection is admitted (and reaches the authenticator)."""
    proc, port, gate, log = start_gated(tmp_path, mode, 2)
    try:
        stuck = socket.create_connection(("127.0.0.1", port))
        stuck.sendall(b"x")
        wait_until(lambda: started(gate) == 1, f"the authenticator never started:\n{log()}")
        refused_connect(port)
        wait_until(lambda: "(max_handshakes)" in log(), f"no refusal logged:\n{log()}")
        time.sleep(2.5)
        late = socket.create_connection(("127.0.0.1", port))
        late.sendall(b"x")
        wait_until(lambda: started(gate) == 2, f"no slot after the deadline:\n{log()}")
        assert log().count("(max_handshakes)") == 1, log()
        gate.touch()
        stuck.close()
        late.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


# --- TLS: the client certificate as credentials ------------------------------------------------

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, ext in [("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                      ("client", "subjectAltName=DNS:client.example,email:alice@example.org,"
                                 "IP:10.1.2.3,URI:https://example.org/alice\n"
                                 "crlDistributionPoints=URI:http://example.org/crl.pem\n"
                                 "authorityInfoAccess=OCSP;URI:http://ocsp.example.org,"
                                 "caIssuers;URI:http://example.org/ca.pem")]:
        subj = f"/C=FR/O=Example Org/OU=Unit/CN={name}/emailAddress={name}@example.org"
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out",
                f"{name}.pem", cwd=d)
    return d


def test_tls_client_certificate_is_the_credentials(gen, tmp_path, certs):
    key, cert, ca = (str(certs / n) for n in ("server.key", "server.pem", "ca.pem"))
    args = ["--ssl-keyfile", key, "--ssl-certfile", cert, "--ssl-cafile", ca]

    def run(server):
        out = client(gen, TLS_CLIENT, SERVER_PORT=server.port, KEY=certs / "client.key",
                     CERT=certs / "client.pem", CA=ca)
        m = wait_for(server, r"welcome \('127\.0\.0\.1', \d+\) \((.*)\)")
        return out, m.group(1)

    python, mine = both(gen, tmp_path, f"ssl:{key},{cert},{ca}", args, run)
    assert mine == python
    creds = mine[0][0]
    assert "'subject': ((('countryName', 'FR'),)," in creds
    assert "('DNS', 'client.example')" in creds and "('IP Address', '10.1.2.3')" in creds
    assert "'OCSP': ('http://ocsp.example.org',)" in creds
    assert mine[1] == creds  # the log line shows the same repr


TLS_SOCKET_CLIENT = """\
import hashlib, json, os, rpyc, ssl
kw = {}
if os.environ.get('CERT'):
    kw = dict(keyfile=os.environ['KEY'], certfile=os.environ['CERT'])
c = rpyc.ssl_connect('127.0.0.1', int(os.environ['SERVER_PORT']), ca_certs=os.environ['CA'], **kw)
mine = c._channel.stream.sock
is_socket, cert, der, cipher, version, peername, sockname, fileno = c.root.tls()
expected_der = None
if os.environ.get('CERT'):
    with open(os.environ['CERT']) as f:
        expected_der = ['bytes', hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()]
print(json.dumps({'is_socket': is_socket, 'getpeercert': cert, 'der_is_the_client_cert':
                  (list(der) if der else der) == expected_der, 'cipher': list(cipher),
                  'same_cipher_as_client': tuple(cipher) == mine.cipher(), 'version': version,
                  'same_version_as_client': version == mine.version(),
                  'endpoints': [list(peername), list(sockname)] == [list(mine.getsockname()),
                                                                  list(mine.getpeername())],
                  'fileno': fileno}))
c.close()
"""


@pytest.mark.parametrize("mode", ["threaded", "threadpool", "forking"])
@pytest.mark.parametrize("client_cert", [True, False], ids=["client-cert", "no-client-cert"])
def test_the_socket_under_tls_answers_as_an_ssl_socket(gen, tmp_path, certs, client_cert, mode):
    """conn._channel.stream.sock under TLS: getpeercert() (the dict, or the DER bytes with
    binary_form=True; None without a client certificate), cipher(), version(), getpeername(),
    getsockname() and fileno() as rpyc's ThreadedServer with SSLAuthenticator gives them."""
    key, cert, ca = (str(certs / n) for n in ("server.key", "server.pem", "ca.pem"))
    args = ["-m", mode, "--ssl-keyfile", key, "--ssl-certfile", cert]
    if client_cert:
        args += ["--ssl-cafile", ca]
    env = dict(KEY=certs / "client.key", CERT=certs / "client.pem") if client_cert else {}

    def run(server):
        return client(gen, TLS_SOCKET_CLIENT, SERVER_PORT=server.port, CA=ca, **env)

    python, mine = both(gen, tmp_path, f"ssl:{key},{cert},{ca if client_cert else ''}", args, run)
    assert mine == python
    assert mine["is_socket"] and mine["der_is_the_client_cert"] and mine["fileno"]
    assert mine["same_cipher_as_client"] and mine["same_version_as_client"] and mine["endpoints"]
    assert mine["version"].startswith("TLSv1.")
    if client_cert:
        assert "('DNS', 'client.example')" in mine["getpeercert"]
    else:
        assert mine["getpeercert"] == "None"


@pytest.mark.parametrize("mode", ["threadpool", "forking"])
def test_tls_client_certificate_reaches_on_connect(gen, tmp_path, certs, mode):
    key, cert, ca = (str(certs / n) for n in ("server.key", "server.pem", "ca.pem"))
    args = ["-m", mode, "--ssl-keyfile", key, "--ssl-certfile", cert, "--ssl-cafile", ca]
    script = AT_CONNECT + TLS_CLIENT.replace("c.root.credentials()", "at_connect(c)")

    def run(server):
        return client(gen, script, SERVER_PORT=server.port, KEY=certs / "client.key",
                      CERT=certs / "client.pem", CA=ca)

    python, mine = both(gen, tmp_path, f"ssl:{key},{cert},{ca}", args, run,
                        spec="auth_service:CallingWhoAmIService")
    assert mine == python
    assert "('DNS', 'client.example')" in mine[0][0] and mine[0][1] == "VOID"


def test_tls_credentials_in_the_classic_service(gen, tmp_path, certs):
    """rpyc_classic --ssl-cafile (SSLAuthenticator): the same 'welcome ADDR (credentials)'."""
    require_generation(gen)
    port = free_port()
    log = tmp_path / "d.log"
    ca = str(certs / "ca.pem")
    proc = subprocess.Popen(
        [str(CLASSICD), "-m", "forking", "-p", str(port), "--logfile", str(log), "--log", "file",
         "--ssl-keyfile", str(certs / "server.key"), "--ssl-certfile", str(certs / "server.pem"),
         "--ssl-cafile", ca], env=python_env("rpyc5"), stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_listening(proc, port, lambda: log.read_text() if log.exists() else "")
        script = """\
import json, os, rpyc, ssl
c = rpyc.classic.ssl_connect('127.0.0.1', int(os.environ['SERVER_PORT']), keyfile=os.environ['KEY'],
                             certfile=os.environ['CERT'], ca_certs=os.environ['CA'])
creds = c.root.getconn()._config['credentials']
print(json.dumps([repr(creds), repr(ssl._ssl._test_decode_cert(os.environ['CERT']))]))
"""
        remote, local = client(gen, script, SERVER_PORT=port, KEY=certs / "client.key",
                               CERT=certs / "client.pem", CA=ca)
        assert remote == local
        text = log.read_text()
        assert re.search(r"welcome \('127\.0\.0\.1', \d+\) \(" + re.escape(local) + r"\)", text), \
            text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


# --- allow-lists ---------------------------------------------------------------------------------

CALL_CLIENT = """\
import json, os, socket, rpyc
from rpyc.core.stream import SocketStream
from rpyc.utils.factory import connect_stream
s = socket.create_connection(('127.0.0.1', int(os.environ['SERVER_PORT'])))
port = s.getsockname()[1]
try:
    c = connect_stream(SocketStream(s))
    print(json.dumps([port, c.root.add(1, 2)]))
except EOFError as e:
    print(json.dumps([port, 'EOFError']))
"""


@pytest.mark.parametrize("allow,allowed", [("127.0.0.0/8", True), ("::1/128,127.0.0.1", True),
                                           ("10.0.0.0/8", False), ("::1/128", False)])
def test_allow_from(gen, tmp_path, allow, allowed):
    require_generation(gen)
    server = ours(gen, WHO, tmp_path, ["--allow-from", allow])
    try:
        port, outcome = client(gen, CALL_CLIENT, SERVER_PORT=server.port)
        peer = re.escape(f"('127.0.0.1', {port})")
        if allowed:
            assert outcome == 3
            wait_for(server, f"welcome {peer}")
            assert "not in allow_from" not in server.log()
        else:
            assert outcome == "EOFError"
            wait_for(server, f"refused {peer}: not in allow_from")
            time.sleep(0.2)
            log = server.log()
            assert len(re.findall(f"{peer}", log)) == 2, log  # accepted, refused: once each
            assert f"welcome ('127.0.0.1', {port})" not in log
    finally:
        server.stop()


UNIX_CLIENT = """\
import json, os, rpyc
try:
    c = rpyc.utils.factory.unix_connect(os.environ['SOCKET'])
    print(json.dumps([os.getpid(), c.root.credentials()]))
except EOFError:
    print(json.dumps([os.getpid(), 'EOFError']))
"""


@pytest.mark.parametrize("key,value,allowed", [
    ("--unix-allow-users", "root", True),
    ("--unix-allow-users", str(os.getuid()), True),
    ("--unix-allow-groups", "0,12345", True),
    ("--unix-allow-users", "12345,12346", False),
    ("--unix-allow-groups", "12345", False),
])
def test_unix_allow_lists_by_peercred(gen, tmp_path, key, value, allowed):
    require_generation(gen)
    if os.getuid() != 0 and value in ("root", "0,12345"):
        pytest.skip("the test names root's uid and group")
    path = tmp_path / "s.sock"
    server = ours(gen, WHO, tmp_path, ["--unix-socket", str(path), key, value])
    try:
        pid, outcome = client(gen, UNIX_CLIENT, SOCKET=path)
        if allowed:
            assert outcome == repr({"uid": os.getuid(), "gid": os.getgid(), "pid": pid})
            wait_for(server, re.escape(f"welcome 'unix' ({outcome})"))
        else:
            assert outcome == "EOFError"
            line = (f"refused 'unix' (uid {os.getuid()}, gid {os.getgid()}, pid {pid}): not in "
                    "unix_allow_users or unix_allow_groups")
            wait_for(server, re.escape(line))
            time.sleep(0.2)
            assert server.log().count(f"pid {pid}") == 1
    finally:
        server.stop()


# --- bad configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ('allow-from = ["10.0.0.0/8", "10.0.0.1/8"]\n',
     "{file}:1: key 'allow-from': '10.0.0.1/8' has host bits set: did you mean 10.0.0.0/8?"),
    ('\nallow_from = ["fd00::/129"]\n',
     "{file}:2: key 'allow_from': 'fd00::/129': the prefix length must be a number 0-128"),
    ('unix-allow-users = ["root", "no-such-user-rpyc"]\n',
     "{file}:1: key 'unix-allow-users': unknown user 'no-such-user-rpyc'"),
    ('unix-allow-groups = ["no-such-group-rpyc"]\n',
     "{file}:1: key 'unix-allow-groups': unknown group 'no-such-group-rpyc'"),
    ('authenticator = "auth_service"\n',
     "{file}:1: key 'authenticator': 'auth_service': expected package.module:callable"),
    ('authenticator = "auth_service:not_callable"\n',
     "authenticator 'auth_service:not_callable': auth_service:not_callable is 42, not a callable"),
    ('authenticator = "auth_service:missing"\n',
     "authenticator 'auth_service:missing': auth_service has no attribute 'missing'"),
    ('authenticator = "no_such_module_rpyc:auth"\n',
     "authenticator 'no_such_module_rpyc:auth': importing no_such_module_rpyc failed:"),
])
@pytest.mark.parametrize("check", [True, False])
def test_bad_configuration_exits_78(tmp_path, text, message, check):
    conf = tmp_path / "c.toml"
    conf.write_text(text)
    args = [str(CLASSICD), "-c", str(conf), "-p", str(free_port())]
    if check:
        args.append("--check-config")
    p = subprocess.run(args, env=python_env("rpyc5"), capture_output=True, text=True, timeout=30)
    assert p.returncode == 78, (p.returncode, p.stdout, p.stderr)
    assert message.format(file=conf) in p.stderr, p.stderr


@pytest.mark.parametrize("allow,allowed", [("127.0.0.1", True), ("10.0.0.0/8", False)])
def test_allow_from_on_an_inherited_connection(gen, tmp_path, allow, allowed):
    """Socket activation with Accept=yes: the connection systemd hands over is checked too; a
    refused one is served nothing and the instance exits."""
    require_generation(gen)
    port = free_port()
    log = tmp_path / "accept.log"
    act = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "-a",
                            str(CLASSICD), "--logfile", str(log), "--allow-from", allow],
                           env=python_env("rpyc5"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "systemd-socket-activate did not listen"
                time.sleep(0.05)
        script = CALL_CLIENT.replace("connect_stream(SocketStream(s))",
                                     "rpyc.classic.connect_stream(SocketStream(s))").replace(
                                         "c.root.add(1, 2)", "c.eval('1+2')")
        port_used, outcome = client(gen, script, SERVER_PORT=port)
        peer = f"('127.0.0.1', {port_used})"
        deadline = time.monotonic() + 15
        while log.read_text().count("server has terminated") < 2:  # the probe's, then ours
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
        if allowed:
            assert outcome == 3
            assert f"welcome {peer}" in text
        else:
            assert outcome == "EOFError"
            assert f"refused {peer}: not in allow_from" in text
            assert f"welcome {peer}" not in text
    finally:
        act.terminate()
        act.wait(timeout=10)
