"""Security hardening of rpyc-classicd (issue 12), against the built binary:
- the exposure rule: a listener reachable beyond loopback without client-certificate verification
  is refused (exit 78) unless allow_unauthenticated_remote says so, which is logged as a warning;
  inherited (socket-activated) listeners are checked too; loopback and Unix sockets are quiet;
- TLS 1.2 suites (ECDHE with AES-GCM or ChaCha20 only, the server's order), session resumption,
  a CRL (also re-read on SIGHUP);
- warnings about the private key file's mode and owner and the certificate's expiry;
- peer-supplied text in the log (a client certificate's subject) escaped: no forged line, and no
  two subjects logged alike.

Daemons bound to a wildcard address run in a network namespace of their own (`unshare -n`, only
its loopback up), so nothing here is reachable from outside; the clients join it with nsenter.
"""

import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time

import pytest

import sanitizer_support

from robust_support import (CLASSICD, GETROOT, PYTHON, Daemon, by_value, client_env, frame,
                            free_port, make_ca, make_cert, native_only, openssl, request, tls_args,
                            wait_for)

pytestmark = [native_only]

# Loopback up, plus a non-loopback address (10.99.0.1) on the namespace's own lo (this kernel has
# no dummy or veth links).
NS_SHELL = 'ip link set lo up && ip addr add 10.99.0.1/32 dev lo && exec "$@"'
REMOTE_WORDS = "is reachable beyond loopback without client-certificate verification"
GETROOT_5 = frame(request("rpyc5", 0, GETROOT, by_value(b"\x02")))


def in_netns(cmd):
    """`cmd` in a new network namespace whose loopback is up (exec'ed: the pid is cmd's)."""
    return ["unshare", "-n", "sh", "-c", NS_SHELL, "sh", *cmd]


def _own_netns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except FileNotFoundError:
        return True  # gone: nsenter fails, and says so


def netns_client(pid, script, gen="rpyc5", timeout=60):
    """A real rpyc client run inside the network namespace of process `pid` (not before
    `unshare` has made it: until then the pid is still in ours)."""
    wait_for(lambda: _own_netns(pid), 10, "the network namespace")
    p = subprocess.run(["nsenter", "-t", str(pid), "-n", PYTHON, "-c",
                        "import rpyc, ssl, sys\n" + script],
                       env=client_env(gen), capture_output=True, text=True, timeout=timeout)
    return p


class NsDaemon:
    """rpyc-classicd alone in a network namespace, bound to `host` (default 0.0.0.0)."""

    def __init__(self, tmp_path, args=(), host="0.0.0.0", activate=None):
        self.port = free_port()
        self.logfile = tmp_path / "ns-classicd.log"
        daemon = [str(CLASSICD), "--logfile", str(self.logfile), "--log", "file", *args]
        if activate is None:
            cmd = in_netns([*daemon[:1], "--host", host, "-p", str(self.port), *daemon[1:]])
        else:  # socket activation: systemd-socket-activate binds and execs the daemon
            cmd = in_netns(["systemd-socket-activate", "-l", f"{activate}:{self.port}", *daemon])
        self.out = tmp_path / "ns-classicd.out"
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)

    def log(self):
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def output(self):
        return self.out.read_text(errors="replace")

    def wait_serving(self):
        wait_for(lambda: "server started on" in self.log() or self.proc.poll() is not None, 20,
                 "the daemon to start")
        assert self.proc.poll() is None, f"exited {self.proc.returncode}\n{self.output()}{self.log()}"

    def client(self, script):
        return netns_client(self.proc.pid, script.replace("PORT", str(self.port)))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


# --- the exposure rule ---------------------------------------------------------------------------

def run_ns(args, host, timeout=30):
    port = free_port()
    return port, subprocess.run(in_netns([str(CLASSICD), "--host", host, "-p", str(port),
                                          "--log", "stderr", *args]),
                                capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("host,tls", [("0.0.0.0", None), ("::", None), ("10.99.0.1", None),
                                      ("0.0.0.0", "no-ca")])
def test_remote_listener_without_client_certificates_is_refused(certs, host, tls):
    args = tls_args(certs, cafile=False) if tls else []
    port, r = run_ns(args, host)
    assert r.returncode == 78, (r.returncode, r.stderr)
    shown = f"[{host}]:{port}"
    assert f"listener {shown} {REMOTE_WORDS}" in r.stderr, r.stderr
    assert "refusing to serve" in r.stderr and "allow_unauthenticated_remote = true" in r.stderr
    assert "--ssl-cafile" in r.stderr and "--allow-unauthenticated-remote" in r.stderr
    assert "server started" not in r.stderr


def test_remote_listener_with_client_certificates_is_served_quietly(tmp_path, certs):
    d = NsDaemon(tmp_path, tls_args(certs))
    try:
        d.wait_serving()
        r = d.client(f"""
c = rpyc.classic.ssl_connect("127.0.0.1", PORT, keyfile={str(certs / 'client.key')!r},
                             certfile={str(certs / 'client.pem')!r}, ca_certs={str(certs / 'ca.pem')!r})
print(c.eval("6*7"))
""")
        assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr
        assert "beyond loopback" not in d.log(), d.log()
        assert "security: TLS, client certificates required\n" in d.log()
    finally:
        assert d.stop() == 0


def test_reload_that_would_expose_is_refused(tmp_path, certs):
    conf = tmp_path / "c.toml"
    tls = (f'ssl-keyfile = "{certs / "server.key"}"\nssl-certfile = "{certs / "server.pem"}"\n')
    conf.write_text(tls + f'ssl-cafile = "{certs / "ca.pem"}"\n')
    d = NsDaemon(tmp_path, ["-c", str(conf)])
    no_cert = """
try:
    c = rpyc.classic.ssl_connect("127.0.0.1", PORT, ca_certs=CA)
    c.eval("1")
except Exception as e:
    print("refused", type(e).__name__)
""".replace("CA", repr(str(certs / "ca.pem")))
    try:
        d.wait_serving()
        conf.write_text(tls)  # the CA file dropped: no client certificates any more
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the running configuration" in d.log(), 10, "the reload refused")
        line = [x for x in d.log().splitlines() if "keeping the running configuration" in x][0]
        assert "ERROR" in line and f"reload: listener [0.0.0.0]:{d.port} {REMOTE_WORDS}" in line
        r = d.client(no_cert)
        assert r.stdout.startswith("refused"), (r.stdout, r.stderr)
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("how", ["switch", "toml"])
def test_override_serves_with_a_warning_at_every_start(tmp_path, how):
    if how == "switch":
        args = ["--allow-unauthenticated-remote"]
    else:
        conf = tmp_path / "c.toml"
        conf.write_text("allow_unauthenticated_remote = true\n")
        args = ["-c", str(conf)]
    for start in range(2):
        (tmp_path / str(start)).mkdir()
        d = NsDaemon(tmp_path / str(start), args)
        try:
            d.wait_serving()
            r = d.client('print(rpyc.classic.connect("127.0.0.1", PORT).eval("1+1"))')
            assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr
            warned = [line for line in d.log().splitlines() if REMOTE_WORDS in line]
            assert len(warned) == 1, d.log()
            assert "WARN" in warned[-1] and "[0.0.0.0]:" in warned[-1]
            assert "(allowed by allow_unauthenticated_remote)" in warned[-1]
            assert ("security: plain TCP, no TLS, no client certificates, "
                    "allow_unauthenticated_remote on") in d.log()
        finally:
            assert d.stop() == 0


@pytest.mark.parametrize("host", ["127.1", "127.0.0.2", "::1"])
def test_loopback_addresses_are_not_warned(tmp_path, host):
    sock = tmp_path / "c.sock"
    d = Daemon(tmp_path, extra_args=["--unix-socket", str(sock)], host=host)
    try:
        d.wait_for_log(f"server started on unix:{sock}")
        assert "WARN" not in d.log(), d.log()
        assert "security: plain TCP, no TLS, no client certificates\n" in d.log()
    finally:
        assert d.stop() == 0


def test_inherited_remote_listener_is_refused(tmp_path):
    d = NsDaemon(tmp_path, activate="0.0.0.0")
    wait_for(lambda: d.proc.poll() is not None or d.client(
        "import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=5).close()"
    ).returncode == 0, 20, "systemd-socket-activate listening")
    assert d.proc.wait(timeout=20) == 78, d.output()
    assert f"listener inherited fd (0.0.0.0:{d.port}) {REMOTE_WORDS}" in d.log(), d.log()
    assert "refusing to serve" in d.log()


def test_inherited_remote_listener_with_the_override(tmp_path):
    d = NsDaemon(tmp_path, ["--allow-unauthenticated-remote"], activate="0.0.0.0")
    try:
        r = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the first connection starts the daemon
            r = d.client('print(rpyc.classic.connect("127.0.0.1", PORT).eval("3*3"))')
            if r.returncode == 0:
                break
            time.sleep(0.1)
        assert r.returncode == 0 and r.stdout.strip() == "9", r.stderr
        assert f"listener inherited fd (0.0.0.0:{d.port}) {REMOTE_WORDS}" in d.log(), d.log()
    finally:
        assert d.stop() == 0




@pytest.mark.parametrize("style", [["-a"], ["--inetd", "-a"]])
def test_inherited_connection_over_a_remote_address_is_refused(tmp_path, style):
    """Accept=yes (and inetd style): the daemon sees only the connection; one that came in over
    a non-loopback address (10.99.0.1 in the namespace) is refused, a local one served."""
    port = free_port()
    log = tmp_path / "acc.log"
    args = ["-m", "stdio"] if "--inetd" in style else []
    act = subprocess.Popen(["unshare", "-n", "sh", "-c", NS_SHELL, "sh",
                            "systemd-socket-activate", *style, "-l", f"0.0.0.0:{port}",
                            str(CLASSICD), *args, "--logfile", str(log), "--log", "file"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    script = f"""
import socket
socket.create_connection(("10.99.0.1", {port}), timeout=5).close()
"""
    try:
        wait_for(lambda: netns_client(act.pid, script).returncode == 0, 20, "listening")
        wait_for(lambda: log.exists() and "refusing to serve" in log.read_text(), 20,
                 "the first (remote) connection refused")
        remote = netns_client(act.pid, f"""
try:
    print(rpyc.classic.connect("10.99.0.1", {port}).eval("1+1"))
except Exception as e:
    print("refused", type(e).__name__)
""")
        assert remote.stdout.startswith("refused"), (remote.stdout, remote.stderr)
        text = log.read_text()
        what = "stdio connection" if "--inetd" in style else "inherited connection"
        assert f"listener {what} (10.99.0.1:{port}) {REMOTE_WORDS}" in text, text
        local = netns_client(act.pid, f'print(rpyc.classic.connect("127.0.0.1", {port}).eval("1+1"))')
        assert local.returncode == 0 and local.stdout.strip() == "2", local.stderr
    finally:
        act.terminate()
        act.wait(timeout=10)


# --- TLS: suites, resumption -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsa_certs(tmp_path_factory):
    """A server with an RSA key, to offer static-RSA suites."""
    d = tmp_path_factory.mktemp("rsa")
    make_ca(d, "ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=server", "-keyout",
            "server.key", "-out", "server.csr", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", "server.pem", cwd=d)
    make_cert(d, "ca", "client")
    return d


def tls12(certs, ciphers):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(certs / "ca.pem"))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    return ctx


def handshake(port, ctx, session=None):
    """(negotiated cipher, session, reused?), or the error that refused it (with TLS 1.3 a
    refused client certificate shows on the first read). Reads the root: tickets come then."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        with ctx.wrap_socket(raw, session=session) as s:
            s.sendall(GETROOT_5)
            head = s.recv(5)
            if len(head) < 5:
                return ConnectionError("closed before the reply")
            length = struct.unpack("!LB", head)[0]
            body = b""
            while len(body) < length + 1:
                chunk = s.recv(4096)
                if not chunk:
                    return ConnectionError("closed in the reply")
                body += chunk
            assert b"SlaveService" in body
            return s.cipher()[0], s.session, s.session_reused
    except (ssl.SSLError, OSError) as e:
        return e
    finally:
        raw.close()


@pytest.mark.parametrize("kind,cipher,accepted", [
    ("ec", "ECDHE-ECDSA-AES128-GCM-SHA256", True),
    ("ec", "ECDHE-ECDSA-CHACHA20-POLY1305", True),
    ("ec", "ECDHE-ECDSA-AES128-SHA", False),      # CBC, SHA-1
    ("ec", "ECDHE-ECDSA-AES256-SHA384", False),   # CBC
    ("rsa", "ECDHE-RSA-AES256-GCM-SHA384", True),
    ("rsa", "AES128-GCM-SHA256", False),          # static RSA: no forward secrecy
    ("rsa", "AES256-SHA", False),                 # static RSA, CBC, SHA-1
    ("rsa", "ECDHE-RSA-AES128-SHA", False),
])
def test_tls12_suites(tmp_path, certs, rsa_certs, kind, cipher, accepted):
    pki = certs if kind == "ec" else rsa_certs
    d = Daemon(tmp_path, extra_args=tls_args(pki))
    try:
        got = handshake(d.port, tls12(pki, cipher))
        if accepted:
            assert not isinstance(got, Exception), got
            assert got[0] == cipher
        else:
            assert isinstance(got, ssl.SSLError), got
            wait_for(lambda: "no shared cipher" in d.log(), 10, "the refusal logged")
    finally:
        assert d.stop() == 0


def test_tls12_server_order_wins(tmp_path, certs):
    d = Daemon(tmp_path, extra_args=tls_args(certs))
    try:
        got = handshake(d.port, tls12(certs, "ECDHE-ECDSA-CHACHA20-POLY1305:"
                                              "ECDHE-ECDSA-AES128-GCM-SHA256"))
        assert not isinstance(got, Exception), got
        assert got[0] == "ECDHE-ECDSA-AES128-GCM-SHA256", got
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("mode", ["threaded", "threadpool", "forking"])
@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_session_resumption(tmp_path, certs, mode, version):
    d = Daemon(tmp_path, extra_args=["-m", mode, *tls_args(certs)])
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(certs / "ca.pem"))
        ctx.check_hostname = False
        ctx.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
        ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
        first = handshake(d.port, ctx)
        assert not isinstance(first, Exception), first
        assert first[1] is not None and not first[2]
        again = handshake(d.port, ctx, session=first[1])
        assert not isinstance(again, Exception), (again, d.log())
        assert again[2], "the session was not resumed"
        assert "session id context uninitialized" not in d.log()
    finally:
        assert d.stop() == 0


# --- peer-supplied text in the log ----------------------------------------------------------------

@pytest.mark.parametrize("mode", ["threaded", "forking"])
def test_client_certificate_subject_is_logged_escaped(tmp_path, crl_pki, mode):
    """Two client certificates, one whose CN holds a CR LF and a forged log line, one whose CN
    spells OpenSSL's escape of that out (a backslash, "x0D"...): neither forges a line, and their
    subjects are logged differently (OpenSSL's escaping left a backslash as it is: alike)."""
    forged = "INFO:SLAVE:forged welcome ('6.6.6.6', 1)"  # no "/": -subj splits at it
    for name, cn in (("crlf", "evil\r\n" + forged), ("spelled", "evil\\\\x0D\\\\x0A" + forged)):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=crl_pki)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", cwd=crl_pki)
    args = ["--ssl-keyfile", str(crl_pki / "server.key"), "--ssl-certfile",
            str(crl_pki / "server.pem"), "--ssl-cafile", str(crl_pki / "ca.pem")]
    d = Daemon(tmp_path, extra_args=["-m", mode, *args])
    try:
        for name in ("crlf", "spelled"):
            got = connect_as(d, crl_pki, name)
            assert not isinstance(got, Exception), got
        wait_for(lambda: d.log().count("(client certificate /CN=evil") == 2, 10, "both subjects")
        log = d.log()
        assert not any(line.startswith("INFO:SLAVE:forged") for line in log.splitlines()), log
        subjects = [line.split("(client certificate ", 1)[1] for line in log.splitlines()
                    if "(client certificate /CN=evil" in line]
        assert len(set(subjects)) == 2, subjects
        assert "/CN=evil\\r\\nINFO:SLAVE:forged" in log, subjects
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("mode", ["threaded", "forking"])
def test_unix_socket_client_path_is_not_logged(tmp_path, mode):
    """A Unix-socket client bound to a path (or an abstract name) holding a line break and a
    forged line: the daemon logs it as 'unix', never with its address."""
    forged = "INFO:SLAVE:forged welcome ('6.6.6.6', 1)"
    sock = tmp_path / "c.sock"
    d = Daemon(tmp_path, extra_args=["-m", mode, "--unix-socket", str(sock)])
    try:
        for name in (str(tmp_path / ("x\n" + forged.replace("/", "_"))), "\0abstract\n" + forged):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(name)
            s.connect(str(sock))
            s.sendall(GETROOT_5)
            assert s.recv(5)
            s.close()
        wait_for(lambda: d.log().count("goodbye 'unix'") >= 2, 10, "both clients served")
        assert not any(line.startswith("INFO:SLAVE:forged") for line in d.log().splitlines())
    finally:
        assert d.stop() == 0


# --- TLS: a CRL ----------------------------------------------------------------------------------

CA_CNF = """\
[ca]
default_ca = CA_default
[CA_default]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 2
"""


@pytest.fixture
def crl_pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    make_ca(d, "ca")
    for name in ("server", "client", "revoked"):
        make_cert(d, "ca", name)
    (d / "ca.cnf").write_text(CA_CNF)
    (d / "index.txt").write_text("")
    (d / "crlnumber").write_text("01\n")
    return d


def gencrl(d, out, revoke=None):
    if revoke:
        openssl("ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.pem", "-revoke",
                f"{revoke}.pem", cwd=d)
    openssl("ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.pem", "-gencrl",
            "-out", out, cwd=d)


def connect_as(d, pki, who):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki / "ca.pem"))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(pki / f"{who}.pem"), str(pki / f"{who}.key"))
    return handshake(d.port, ctx)


@pytest.mark.parametrize("mode", ["threaded", "forking"])
def test_crl_refuses_revoked_client_certificates_and_is_reread_on_sighup(tmp_path, crl_pki,
                                                                         mode):
    pki = crl_pki
    gencrl(pki, "empty.crl")
    shutil.copy(pki / "empty.crl", pki / "live.crl")
    d = Daemon(tmp_path, extra_args=["-m", mode, *tls_args(pki), "--ssl-crlfile",
                                     str(pki / "live.crl")])
    try:
        d.wait_for_log("security: TLS, client certificates required, revocations checked (CRL)")
        assert not isinstance(connect_as(d, pki, "revoked"), Exception)  # not revoked yet
        gencrl(pki, "revoking.crl", revoke="revoked")
        shutil.copy(pki / "revoking.crl", pki / "live.crl")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for_log("reload: TLS certificate and key reloaded")
        assert not isinstance(connect_as(d, pki, "client"), Exception)
        assert isinstance(connect_as(d, pki, "revoked"), OSError)
        wait_for(lambda: "certificate revoked" in d.log(), 10, "the refusal logged")
    finally:
        assert d.stop() == 0
    # At start, too.
    d = Daemon(tmp_path, extra_args=[*tls_args(pki), "--ssl-crlfile", str(pki / "revoking.crl")])
    try:
        assert isinstance(connect_as(d, pki, "revoked"), OSError)
        assert not isinstance(connect_as(d, pki, "client"), Exception)
    finally:
        assert d.stop() == 0


def test_crl_needs_a_ca_file_and_a_valid_crl(tmp_path, crl_pki):
    r = subprocess.run([str(CLASSICD), *tls_args(crl_pki, cafile=False), "--ssl-crlfile",
                        str(crl_pki / "ca.pem")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 64 and "--ssl-crlfile requires --ssl-cafile" in r.stderr, r.stderr
    port = free_port()
    r = subprocess.run([str(CLASSICD), "-p", str(port), "--log", "stderr", *tls_args(crl_pki),
                        "--ssl-crlfile", str(crl_pki / "ca.pem")],  # a certificate, no CRL
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and f"CRL file {crl_pki / 'ca.pem'}" in r.stderr, r.stderr


# --- warnings about the key and the certificate ----------------------------------------------------

def start_and_log(tmp_path, pki, run="run"):
    """The log of a TLS daemon started (in its own directory `run`) and stopped."""
    (tmp_path / run).mkdir()
    d = Daemon(tmp_path / run, extra_args=tls_args(pki))
    try:
        d.wait_for_log("server started on")
        return d.log()
    finally:
        assert d.stop() == 0


def test_key_file_mode_and_owner_warnings(tmp_path, crl_pki):
    key = crl_pki / "server.key"
    os.chmod(key, 0o600)
    assert "private key file" not in start_and_log(tmp_path, crl_pki, "0600")
    for mode, whom in ((0o640, "its group"), (0o604, "others")):
        os.chmod(key, mode)
        log = start_and_log(tmp_path, crl_pki, oct(mode))
        assert f"private key file {key} is readable by {whom} (mode {mode:04o})" in log, log
    if os.geteuid() == 0:
        os.chmod(key, 0o600)
        os.chown(key, 65534, -1)
        log = start_and_log(tmp_path, crl_pki, "owner")
        assert (f"private key file {key} is owned by uid 65534, not by the daemon's user "
                "(uid 0)") in log, log


@pytest.mark.parametrize("days,words", [("10", "expires on"), ("-1", "expired on"),
                                        ("60", None)])
def test_certificate_expiry_warning(tmp_path, crl_pki, days, words):
    make_cert(crl_pki, "ca", "server", days=days)
    os.chmod(crl_pki / "server.key", 0o600)
    log = start_and_log(tmp_path, crl_pki)
    cert = crl_pki / "server.pem"
    if words is None:
        assert "server certificate" not in log, log
    else:
        line = [x for x in log.splitlines() if f"server certificate {cert} {words}" in x]
        assert line and "WARN" in line[0], log
        if days == "10":
            assert "(in 9 days)" in line[0] or "(in 10 days)" in line[0], line


# --- the build machine's paths -------------------------------------------------------------------

def test_code_file_is_relative_to_the_source_tree(tmp_path):
    """The journal's CODE_FILE comes from __FILE__: "libcore/log/log.cc", not the checkout path."""
    rodata = tmp_path / "rodata"
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.rodata", str(CLASSICD),
                    str(rodata)], check=True)
    data = rodata.read_bytes()
    assert b"CODE_FILE=libcore/log/log.cc" in data
    if sanitizer_support.sanitizer(CLASSICD) is None:
        # ASan/UBSan builds keep the compiler's path of every source in their own metadata, by
        # design (their reports must find the sources), so only unsanitized builds can show that
        # no other string carries the checkout path.
        assert b"/libcore/log/log.cc" not in data
