"""rpyc-classicd as a daemon: serving modes, socket activation, TLS, registration, limits.

Every test starts the built binary and talks to it with the real rpyc client of each generation
(python3-rpyc 5.3.0 and the 6.x library in $RPYC6_PATH).
"""

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import sanitizer_support
from classic_support import (CLASSICD, PYTHON, REFERENCE, RPYC6_PATH, GENERATIONS, Daemon, free_port,
                             wait_for, zombies_of)

REGISTRYD = Path(os.environ.get("RPYC_REGISTRYD",
                                Path(__file__).resolve().parents[3] /
                                "build/dev/daemons/registryd/rpyc-registryd"))

pytestmark = pytest.mark.skipif(REFERENCE, reason="rpyc-classicd's own daemon behaviour")


def client_env(gen):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if gen == "rpyc6":
        if not (RPYC6_PATH / "rpyc" / "__init__.py").exists():
            pytest.skip(f"rpyc 6.x client library not found at {RPYC6_PATH} (set RPYC6_PATH)")
        env["PYTHONPATH"] = str(RPYC6_PATH)
    return env


def run_client(gen, script, timeout=60, check=True, **fmt):
    """Runs a client script under generation `gen`; returns (returncode, stdout, stderr)."""
    code = "import os, sys, time, rpyc\n" + textwrap.dedent(script).format(**fmt)
    p = subprocess.run([PYTHON, "-c", code], env=client_env(gen), capture_output=True, text=True,
                       timeout=timeout)
    if check:
        assert p.returncode == 0, f"[{gen}] client exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.returncode, p.stdout, p.stderr


def wait_port(port, timeout=20):
    def ok():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    wait_for(ok, timeout, f"port {port} listening")


@pytest.fixture(params=GENERATIONS)
def gen(request):
    client_env(request.param)  # skips when rpyc6 is missing
    return request.param


# --- oneshot -------------------------------------------------------------------------------------

def test_oneshot_prints_the_contract_serves_one_connection_and_exits(gen, tmp_path):
    log = tmp_path / "c.log"
    p = subprocess.Popen([str(CLASSICD), "-m", "oneshot", "-p", "0", "--logfile", str(log)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    second = p.stdout.readline()
    assert first == b"rpyc-oneshot\n", first
    host, port = second.decode().rstrip("\n").split("\t")
    assert host == "127.0.0.1" and int(port) > 0, second
    run_client(gen, """
        c = rpyc.classic.connect("127.0.0.1", {port})
        assert c.eval("6*7") == 42
        c.close()
    """, port=port)
    assert p.wait(timeout=15) == 0
    assert p.stdout.read() == b"", "nothing else on stdout"
    text = log.read_text()
    assert "goodbye" in text and "server has terminated" in text, text
    # Every line, the runtime's own included, names the port the kernel chose, never port 0.
    names = set(re.findall(r"(?:DEBUG|INFO|WARNING|ERROR):(SLAVE/[^:]+):", text))
    assert names == {f"SLAVE/{port}"}, (names, text)
    # No second connection: the process is gone.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()


# --- stdio ---------------------------------------------------------------------------------------

def test_stdio_over_pipes_same_root_as_tcp(gen, tmp_path):
    log = tmp_path / "stdio.log"
    _, out, _ = run_client(gen, """
        import subprocess
        proc = subprocess.Popen([{exe!r}, "-m", "stdio", "--logfile", {log!r}],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        c = rpyc.classic.connect_stream(rpyc.PipeStream(proc.stdout, proc.stdin))
        # The same root as over TCP: SlaveService (no reverse handshake towards the client).
        assert c.root.get_service_name() == "SLAVE", c.root.get_service_name()
        assert c.modules.os.getpid() != os.getpid()
        # Nothing the interpreter prints can reach the protocol stream.
        c.execute("print('to stdout'); import os; os.write(1, b'raw fd 1' + bytes([10])); os.system('echo from-shell')")
        c.execute("import sys; sys.stderr.write('to stderr' + chr(10)); sys.stderr.flush()")
        assert c.eval("1+1") == 2
        c.close()
        print("RC", proc.wait(timeout=15))
    """, exe=str(CLASSICD), log=str(log))
    assert "RC 0" in out, out
    text = log.read_text()
    assert "to stdout" in text and "raw fd 1" in text and "from-shell" in text, text
    assert "goodbye" in text


def test_stdio_under_inetd_style_socket_activation(gen, tmp_path):
    port = free_port()
    log = tmp_path / "inetd.log"
    act = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--inetd", "-a",
                            str(CLASSICD), "-m", "stdio", "--logfile", str(log)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        run_client(gen, """
            for i in range(2):   # a fresh server process per connection
                c = rpyc.classic.connect("127.0.0.1", {port})
                assert c.eval("sum(range(10))") == 45
                c.close()
        """, port=port)
        wait_for(lambda: log.read_text().count("server has terminated") >= 2, 15, "two exits")
    finally:
        act.terminate()
        act.wait(timeout=10)


def test_socket_activation_of_a_listening_socket(gen, tmp_path):
    port = free_port()
    log = tmp_path / "act.log"
    act = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}",
                            str(CLASSICD), "--logfile", str(log)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        run_client(gen, """
            conns = [rpyc.classic.connect("127.0.0.1", {port}) for _ in range(3)]
            pids = {{c.modules.os.getpid() for c in conns}}
            assert len(pids) == 1, pids    # one daemon serves the inherited socket
            for c in conns: c.close()
        """, port=port)
        assert "server started on inherited fd" in log.read_text()
    finally:
        act.send_signal(signal.SIGTERM)
        assert act.wait(timeout=15) == 0


# --- forking -------------------------------------------------------------------------------------


@pytest.mark.parametrize("crash", ["__import__('os')._exit(3)",
                                   "__import__('ctypes').string_at(0)"])
def test_forking_child_crash_affects_nobody(gen, tmp_path, crash):
    d = Daemon(tmp_path, extra_args=["-m", "forking"])
    try:
        _, out, _ = run_client(gen, """
            a = rpyc.classic.connect("127.0.0.1", {port})
            b = rpyc.classic.connect("127.0.0.1", {port})
            pa, pb = a.modules.os.getpid(), b.modules.os.getpid()
            assert pa != pb and {parent} not in (pa, pb), (pa, pb)
            try:
                a.execute({crash!r})
            except EOFError:
                pass
            else:
                raise AssertionError("the crashing child answered")
            assert b.eval("2**10") == 1024
            c = rpyc.classic.connect("127.0.0.1", {port})
            assert c.eval("'ok'") == "ok"
            b.close(); c.close()
            print("OK")
        """, port=d.port, parent=d.pid, crash=crash)
        assert "OK" in out
        wait_for(lambda: "goodbye" in d.log() and not zombies_of(d.pid), 10, "children reaped")
        if "ctypes" in crash and sanitizer_support.sanitizer(CLASSICD) == "asan":
            d.wait_for_log("exited with status 1")  # ASan caught the SEGV, reported it, exited
            sanitizer_support.discard_reports("SEGV on unknown address 0x000000000000")
        elif "ctypes" in crash:
            d.wait_for_log("was killed by signal 11")
        else:
            d.wait_for_log("exited with status 3")
    finally:
        assert d.stop() == 0


def test_forking_child_killed_from_outside_frees_its_slot(gen, tmp_path):
    # --max-connections 2: the slot of a child killed with SIGKILL is given back when it is
    # reaped; the other child keeps serving, and a thread that client code starts in a child runs
    # while that child waits for the client (the parent keeps the GIL; a child must not).
    d = Daemon(tmp_path, extra_args=["-m", "forking", "--max-connections", "2"])
    try:
        _, out, _ = run_client(gen, """
            import signal

            def connect(what):  # refused while all slots are taken (the readiness probe's too)
                deadline = time.monotonic() + 10
                while True:
                    try:
                        c = rpyc.classic.connect("127.0.0.1", {port})
                        c.eval("1")
                        return c
                    except (EOFError, ConnectionError):
                        assert time.monotonic() < deadline, what
                        time.sleep(0.1)

            a = connect("first")
            b = connect("second")
            pa = a.modules.os.getpid()
            b.execute("import threading, time\\n"
                      "box = []\\n"
                      "threading.Thread(target=lambda: (time.sleep(0.05), box.append(1))).start()")
            time.sleep(0.5)  # b's child waits in recv meanwhile
            assert b.eval("len(box)") == 1, "the child's thread did not run while it was idle"
            os.kill(pa, signal.SIGKILL)
            # Refused until the parent has reaped a's child.
            c = connect("the killed child's slot was not freed")
            assert c.eval("'third'") == "third"
            assert b.eval("2**10") == 1024
            b.close(); c.close()
            print("KILLED", pa)
        """, port=d.port)
        killed = int(out.split("KILLED")[1])
        line = re.compile(rf"child {killed} serving \('127\.0\.0\.1', \d+\) "
                          r"was killed by signal 9")
        wait_for(lambda: line.search(d.log()), 10, "the kill logged")
        wait_for(lambda: not zombies_of(d.pid), 10, "no zombies")
    finally:
        assert d.stop() == 0


def test_forking_child_threading_state_and_forks_of_its_own(gen, tmp_path):
    # The parent skips threading's at-fork reset in its children (it has nothing to reset there)
    # and each child puts it back: in a child, threading sees only its main thread, and a fork
    # that client code makes while one of its threads runs gets the full reset (the grandchild
    # sees one thread, not the parent's stale entry for the other).
    d = Daemon(tmp_path, extra_args=["-m", "forking"])
    try:
        _, out, _ = run_client(gen, """
            for _ in range(2):  # the second child too: the parent's state did not drift
                c = rpyc.classic.connect("127.0.0.1", {port})
                c.execute("import threading")
                assert c.eval("threading.active_count()") == 1
                assert c.eval("threading.current_thread() is threading.main_thread()")
                c.execute('''
            import os
            ev = threading.Event()
            t = threading.Thread(target=ev.wait, daemon=True)
            t.start()
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.write(w, repr((threading.active_count(),
                                  threading.current_thread() is threading.main_thread(),
                                  len(threading.enumerate()))).encode())
                os._exit(0)
            os.close(w)
            seen = os.read(r, 100).decode()
            os.close(r)
            os.waitpid(pid, 0)
            running = threading.active_count()
            ev.set()
            t.join()
            ''')
                assert c.eval("seen") == "(1, True, 1)", c.eval("seen")
                assert c.eval("running") == 2
                assert c.eval("threading.active_count()") == 1
                c.close()
            print("OK")
        """, port=d.port)
        assert "OK" in out
    finally:
        assert d.stop() == 0


# --- Unix socket ---------------------------------------------------------------------------------

def test_unix_socket_listener(gen, tmp_path):
    path = tmp_path / "classicd.sock"
    path.write_bytes(b"")  # not a socket: refused
    bad = subprocess.run([str(CLASSICD), "-p", "0", "--unix-socket", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 78 and "is not a socket" in bad.stderr, bad.stderr
    path.unlink()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a stale socket file is replaced
    d = Daemon(tmp_path, extra_args=["--unix-socket", str(path)])
    try:
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        run_client(gen, """
            c = rpyc.classic.unix_connect({path!r})
            assert c.eval("3*3") == 9
            c.close()
        """, path=str(path))
    finally:
        assert d.stop() == 0
    assert not path.exists()


# --- limits --------------------------------------------------------------------------------------

def test_max_connections_per_peer_is_enforced(gen, tmp_path):
    d = Daemon(tmp_path, extra_args=["--max-connections-per-peer", "2"])
    try:
        _, out, _ = run_client(gen, """
            a = rpyc.classic.connect("127.0.0.1", {port})
            b = rpyc.classic.connect("127.0.0.1", {port})
            try:
                c = rpyc.classic.connect("127.0.0.1", {port})
                c.eval("1")
            except (EOFError, ConnectionError, OSError):
                print("REFUSED")
            a.close()
            time.sleep(0.5)
            c = rpyc.classic.connect("127.0.0.1", {port})
            assert c.eval("1+1") == 2
            b.close(); c.close()
        """, port=d.port)
        assert "REFUSED" in out
        assert "max_connections_per_peer" in d.log()
    finally:
        assert d.stop() == 0


def test_idle_timeout_closes_a_silent_connection(tmp_path):
    d = Daemon(tmp_path, extra_args=["--idle-timeout", "1"])
    try:
        with socket.create_connection(("127.0.0.1", d.port)) as s:
            s.settimeout(10)
            t0 = time.monotonic()
            assert s.recv(10) == b""
            assert time.monotonic() - t0 < 5
        d.wait_for_log("idle timeout")
    finally:
        assert d.stop() == 0


# --- TLS -----------------------------------------------------------------------------------------

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)


def make_cert(d, ca, name):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
            f"{name}.key", "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_cert(d, "ca", "server")
    make_cert(d, "ca", "client")
    make_cert(d, "otherca", "intruder")
    return d


def tls_daemon(tmp_path, certs, cafile=True, mode="threaded"):
    args = ["-m", mode, "--ssl-keyfile", str(certs / "server.key"), "--ssl-certfile", str(certs / "server.pem")]
    if cafile:
        args += ["--ssl-cafile", str(certs / "ca.pem")]
    return Daemon(tmp_path, extra_args=args)


@pytest.mark.parametrize("mode", ["threaded", "threadpool", "forking"])
def test_tls_with_client_certificates(gen, tmp_path, certs, mode):
    d = tls_daemon(tmp_path, certs, mode=mode)
    try:
        run_client(gen, """
            c = rpyc.classic.ssl_connect("127.0.0.1", {port}, keyfile={key!r}, certfile={cert!r},
                                         ca_certs={ca!r})
            assert c.eval("'tls'") == "tls"
            c.close()
        """, port=d.port, key=str(certs / "client.key"), cert=str(certs / "client.pem"),
           ca=str(certs / "ca.pem"))
        d.wait_for_log("client certificate")
        # Negative: no client certificate, a certificate from another CA.
        for key, cert in [(None, None), ("intruder.key", "intruder.pem")]:
            rc, _, err = run_client(gen, """
                c = rpyc.classic.ssl_connect("127.0.0.1", {port}, keyfile={key}, certfile={cert})
                c.eval("1")
            """, check=False, port=d.port, key=repr(key and str(certs / key)),
               cert=repr(cert and str(certs / cert)))
            assert rc != 0, "connected without a valid client certificate"
        d.wait_for_log("TLS handshake with 127.0.0.1:")
        # The readiness probe (a TCP connect, then close) left during the handshake: a debug
        # line, not a failure.
        failures = [l for l in d.log().splitlines() if "TLS handshake with" in l and "failed" in l]
        assert len(failures) >= 2 and all("ERROR" in l for l in failures), failures
        assert any("certificate" in l for l in failures), failures
    finally:
        assert d.stop() == 0


def test_tls_threadpool_client_and_server_threads_call_through_one_connection(gen, tmp_path, certs):
    # Threadpool mode over TLS: four server-side Python threads call a client callback while two
    # client threads call the server, all on one connection. A server thread waiting for its reply
    # reads the client's requests off the socket (or out of the TLS layer) with it, where the
    # event loop never sees them again: whoever read them must serve them. Each call is bounded
    # (sync_request_timeout 20 s, the server's futures 60 s), so a request left unserved fails it.
    d = tls_daemon(tmp_path, certs, cafile=False, mode="threadpool")
    try:
        _, out, _ = run_client(gen, """
            import threading
            c = rpyc.classic.ssl_connect("127.0.0.1", {port}, ca_certs={ca!r})
            c._config["sync_request_timeout"] = 20
            bg = rpyc.BgServingThread(c)
            def cb(w, i):
                return w * 1000 + i
            c.execute('''if True:
                import concurrent.futures
                def fan_out(f, workers, calls):
                    ex = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
                    futures = [ex.submit(lambda w=w: [f(w, i) for i in range(calls)])
                               for w in range(workers)]
                    ex.shutdown(wait=False)
                    return lambda: [fut.result(timeout=60) for fut in futures]
            ''')
            collect = c.namespace["fan_out"](cb, 4, 50)
            errors = []
            def client_calls(k):
                try:
                    for i in range(100):
                        assert c.builtins.divmod(k * 1000 + i, 7) == divmod(k * 1000 + i, 7)
                except Exception as e:
                    errors.append(repr(e))
            threads = [threading.Thread(target=client_calls, args=(k,)) for k in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            results = collect()
            assert not errors, errors
            assert [list(r) for r in results] == [[w * 1000 + i for i in range(50)]
                                                  for w in range(4)]
            bg.stop()
            c.close()
            print("OK")
        """, timeout=120, port=d.port, ca=str(certs / "ca.pem"))
        assert out.strip().endswith("OK")
    finally:
        assert d.stop() == 0


def test_tls_refuses_tls_1_1_and_reloads_on_sighup(tmp_path, certs):
    import ssl
    d = tls_daemon(tmp_path, certs, cafile=False)
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with socket.create_connection(("127.0.0.1", d.port)) as s:
            with pytest.raises((ssl.SSLError, OSError)):
                ctx.wrap_socket(s).do_handshake()
        d.wait_for_log("TLS handshake with 127.0.0.1:")

        def server_serial():
            c2 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            c2.check_hostname = False
            c2.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", d.port)) as s:
                with c2.wrap_socket(s) as t:
                    return t.getpeercert(binary_form=True)
        before = server_serial()
        # Replace the certificate in place, then SIGHUP: new connections get the new one.
        make_cert(certs, "ca", "server")
        os.kill(d.pid, signal.SIGHUP)
        d.wait_for_log("TLS certificate and key reloaded")
        assert server_serial() != before
    finally:
        assert d.stop() == 0


# --- registration --------------------------------------------------------------------------------

def start_registry(kind, mode, port, tmp_path):
    if kind == "ours":
        if not REGISTRYD.exists():
            pytest.fail(f"registry binary not found: {REGISTRYD}")
        cmd = [str(REGISTRYD), "-m", mode, "-p", str(port), "--host", "127.0.0.1",
               "--logfile", str(tmp_path / "reg.log")]
    else:
        cmd = [PYTHON, "/usr/bin/rpyc_registry", "-m", mode, "-p", str(port)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.8)
    return p


def discover(mode, port, generation="rpyc5"):
    code = textwrap.dedent(f"""
        import rpyc
        assert rpyc.__version__.startswith({'"5.3"' if generation == 'rpyc5' else '"6."'}), rpyc.__version__
        from rpyc.utils.registry import UDPRegistryClient, TCPRegistryClient
        cls = {'UDPRegistryClient' if mode == 'UDP' else 'TCPRegistryClient'}
        print(sorted(tuple(x) for x in cls(ip="127.0.0.1", port={port}).discover("SLAVE")))
    """)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if generation == "rpyc6":
        env["PYTHONPATH"] = str(RPYC6_PATH)
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip() or "[]")


@pytest.mark.parametrize("kind", ["ours", "python"])
@pytest.mark.parametrize("mode", ["UDP", "TCP"])
def test_registration_seen_and_gone_after_sigterm(tmp_path, kind, mode):
    rport = free_port()
    reg = start_registry(kind, mode, rport, tmp_path)
    try:
        d = Daemon(tmp_path, extra_args=["--register", "--registry-type", mode,
                                         "--registry-host", "127.0.0.1",
                                         "--registry-port", str(rport)])
        try:
            wait_for(lambda: ("127.0.0.1", d.port) in discover(mode, rport), 10, "registered")
        finally:
            assert d.stop() == 0
        wait_for(lambda: ("127.0.0.1", d.port) not in discover(mode, rport), 10, "unregistered")
    finally:
        reg.terminate()
        reg.wait(timeout=10)


def register_with(tmp_path, mode, rport, advertise):
    return Daemon(tmp_path, extra_args=["--register", "--registry-type", mode, "--registry-host", "127.0.0.1",
                                        "--registry-port", str(rport), "--registry-advertise-host", advertise])


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("mode", ["UDP", "TCP"])
def test_advertised_host_beyond_nat_is_recorded_by_registryd(tmp_path, mode, generation):
    """--registry-advertise-host with an address that is not this machine's (a NAT's outside
    address) goes in the request (the extension, docs/differences.md): rpyc-registryd records it,
    rpyc's clients find the server there, and the UNREGISTER at shutdown removes it."""
    rport = free_port()
    reg = start_registry("ours", mode, rport, tmp_path)
    try:
        d = register_with(tmp_path, mode, rport, "203.0.113.7")
        try:
            wait_for(lambda: discover(mode, rport, generation) == [("203.0.113.7", d.port)], 10, "registered")
        finally:
            assert d.stop() == 0
        wait_for(lambda: discover(mode, rport, generation) == [], 10, "unregistered")
    finally:
        reg.terminate()
        reg.wait(timeout=10)


@pytest.mark.parametrize("kind", ["ours", "python"])
def test_advertised_address_of_this_machine_is_the_source_for_any_registry(tmp_path, kind):
    """An address of this machine (127.0.0.2: all of 127/8 is local) is bound as the source
    address, so rpyc's own registry records it as well as rpyc-registryd, with the plain REGISTER."""
    rport = free_port()
    reg = start_registry(kind, "UDP", rport, tmp_path)
    try:
        d = register_with(tmp_path, "UDP", rport, "127.0.0.2")
        try:
            wait_for(lambda: discover("UDP", rport) == [("127.0.0.2", d.port)], 10, "registered")
        finally:
            assert d.stop() == 0
        wait_for(lambda: discover("UDP", rport) == [], 10, "unregistered")
    finally:
        reg.terminate()
        reg.wait(timeout=10)


def test_advertised_host_in_the_request_is_refused_by_rpycs_registry(tmp_path):
    """rpyc's registry does not take the extension: nothing is registered (neither address),
    and the daemon says why in its warning."""
    rport = free_port()
    reg = start_registry("python", "UDP", rport, tmp_path)
    try:
        d = register_with(tmp_path, "UDP", rport, "203.0.113.7")
        try:
            d.wait_for_log("REGISTER with the advertised host 203.0.113.7 in the request", timeout=10)
            assert discover("UDP", rport) == []
        finally:
            assert d.stop() == 0
    finally:
        reg.terminate()
        reg.wait(timeout=10)


# --- lifecycle -----------------------------------------------------------------------------------

def test_usage_errors_and_warnings(tmp_path):
    r = subprocess.run([str(CLASSICD), "--vdb"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 64 and "obsolete upstream" in r.stderr, r.stderr
    r = subprocess.run([str(CLASSICD), "--register", "--registry-type", "TCP"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 64 and "requires --registry-host" in r.stderr, r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("port = 1\nnope = 2\n")
    r = subprocess.run([str(CLASSICD), "-c", str(bad), "--check-config"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 78 and f"{bad}:2: key 'nope': unknown key" in r.stderr, r.stderr
    # A remote listener without client certificates: tests/e2e/robustness/test_robust_security.py.


def test_sd_notify_ready_status_stopping(tmp_path):
    """READY=1 after listening (with the interpreter up), STATUS=, STOPPING=1 on SIGTERM."""
    sock_path = str(tmp_path / "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(sock_path)
    ns.settimeout(20)
    port = free_port()
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="400000")
    env.pop("WATCHDOG_PID", None)
    p = subprocess.Popen([str(CLASSICD), "-p", str(port), "--logfile", str(tmp_path / "n.log")],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        msgs = []
        while not any("READY=1" in m for m in msgs):
            msgs.append(ns.recv(4096).decode())
        ready = next(m for m in msgs if "READY=1" in m)
        assert "STATUS=0 connections" in ready, ready
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # listening already
        while not any("WATCHDOG=1" in m for m in msgs):
            msgs.append(ns.recv(4096).decode())
        p.send_signal(signal.SIGHUP)
        while not any("RELOADING=1" in m for m in msgs):
            msgs.append(ns.recv(4096).decode())
        p.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in msgs):
            msgs.append(ns.recv(4096).decode())
        assert p.wait(timeout=15) == 0
    finally:
        if p.poll() is None:
            p.kill()
        ns.close()


# --- more limits ---------------------------------------------------------------------------------

def test_max_connections_is_enforced(gen, tmp_path):
    d = Daemon(tmp_path, extra_args=["--max-connections", "1"])
    try:
        # The fixture's readiness probe may still be counted for a moment.
        wait_for(lambda: "goodbye" in d.log(), 10, "probe connection gone")
        _, out, _ = run_client(gen, """
            a = rpyc.classic.connect("127.0.0.1", {port})
            assert a.eval("1") == 1
            try:
                b = rpyc.classic.connect("127.0.0.1", {port})
                b.eval("1")
            except (EOFError, ConnectionError, OSError):
                print("REFUSED")
            assert a.eval("2") == 2
            a.close()
        """, port=d.port)
        assert "REFUSED" in out
        assert "(max_connections)" in d.log()
    finally:
        assert d.stop() == 0


def test_max_frame_size_closes_only_that_connection(tmp_path):
    import struct
    d = Daemon(tmp_path, extra_args=["--max-frame-size", "4096"])
    try:
        with socket.create_connection(("127.0.0.1", d.port)) as s:
            s.settimeout(10)
            s.sendall(struct.pack("!LB", 1 << 20, 0) + b"x" * 100)
            assert s.recv(100) == b""
        wait_for(lambda: "closed:" in d.log(), 10, "error line")
        line = next(l for l in d.log().splitlines() if "closed:" in l)
        assert "ERROR" in line, line
    finally:
        assert d.stop() == 0


def test_tls_handshake_timeout(tmp_path, certs):
    d = Daemon(tmp_path, extra_args=["--ssl-keyfile", str(certs / "server.key"),
                                     "--ssl-certfile", str(certs / "server.pem"),
                                     "--tls-handshake-timeout", "1"])
    try:
        with socket.create_connection(("127.0.0.1", d.port)) as s:
            s.settimeout(10)
            t0 = time.monotonic()
            assert s.recv(10) == b""   # closed without a word
            assert time.monotonic() - t0 < 5
        d.wait_for_log("timed out after 1000 ms")
    finally:
        assert d.stop() == 0


def test_socket_activation_of_a_connected_socket(gen, tmp_path):
    """Accept=yes: systemd passes the connection itself; it is served like stdio, then exit 0."""
    port = free_port()
    log = tmp_path / "accept.log"
    act = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "-a",
                            str(CLASSICD), "--logfile", str(log)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        wait_for(lambda: log.exists() and "server has terminated" in log.read_text(), 15,
                 "the probe's instance exits")
        run_client(gen, """
            c = rpyc.classic.connect("127.0.0.1", {port})
            assert c.eval("'accepted'") == "accepted"
            c.close()
        """, port=port)
        wait_for(lambda: log.read_text().count("server has terminated") >= 2, 15, "second exit")
        assert "serving an inherited connection from ('127.0.0.1', " in log.read_text()
    finally:
        act.terminate()
        act.wait(timeout=10)


JOURNAL_SCRIPT = textwrap.dedent("""\
    "$CLASSICD" -p "$PORT" --log journal & CPID=$!
    for i in $(seq 100); do "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $PORT)).close()" 2>/dev/null && break; sleep 0.1; done
    "$PYTHON" -c "import rpyc; c = rpyc.classic.connect('127.0.0.1', $PORT); c.eval('1'); c.close()"
    sleep 0.5
    kill -TERM $CPID; wait $CPID
    journalctl --no-pager -o json SYSLOG_IDENTIFIER=rpyc-classicd
""")


def test_journal_fields(tmp_path):
    from journal_support import run_with_journald
    port = free_port()
    env = dict(os.environ, CLASSICD=str(CLASSICD), PORT=str(port), PYTHON=PYTHON)
    env.pop("PYTHONPATH", None)
    _, entries = run_with_journald(JOURNAL_SCRIPT, env)
    welcome = [e for e in entries if e.get("MESSAGE", "").startswith("welcome ")]
    assert welcome, entries
    w = welcome[-1]
    assert w["RPYC_PEER"] == "127.0.0.1" and w["RPYC_MODE"] == "threaded" and w["RPYC_CONN"]
    assert w["RPYC_LOGGER"] == f"SLAVE/{port}" and w["PRIORITY"] == "6"
    assert any("server has terminated" in e.get("MESSAGE", "") for e in entries)


# --- threadpool ----------------------------------------------------------------------------------

def test_threadpool_idle_clients_hold_no_thread(gen, tmp_path):
    d = Daemon(tmp_path, extra_args=["-m", "threadpool", "--threads", "2"])
    try:
        _, out, _ = run_client(gen, """
            conns = [rpyc.classic.connect("127.0.0.1", {port}) for _ in range(40)]
            for i, c in enumerate(conns):
                c.execute(f"me = {{i}}")
            for i, c in enumerate(conns):
                assert c.eval("me") == i
                # A callback into the client while the request is served (nested requests).
                assert tuple(c.modules.builtins.map(lambda x: x * 2, [1, 2])) == (2, 4)
            print("THREADS", open("/proc/{pid}/status").read().split("Threads:")[1].split()[0])
            for c in conns:
                c.close()
        """, port=d.port, pid=d.pid)
        threads = int(out.split("THREADS")[1].split()[0])
        assert threads <= 1 + 2, threads  # the loop and two workers for 40 open clients
        wait_for(lambda: d.log().count("goodbye") >= 41, 10, "every goodbye")
    finally:
        assert d.stop() == 0


def test_logfile_is_reopened_on_sighup(tmp_path):
    d = Daemon(tmp_path)
    try:
        rotated = tmp_path / "classicd.log.1"
        d.logfile.rename(rotated)
        os.kill(d.pid, signal.SIGHUP)
        wait_for(lambda: d.logfile.exists(), 10, "a new log file")
        socket.create_connection(("127.0.0.1", d.port)).close()
        d.wait_for_log("goodbye")
        assert "server started" in rotated.read_text()
        assert "server started" not in d.log()
    finally:
        assert d.stop() == 0
