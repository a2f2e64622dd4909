"""rpyc-registryd against the real registry clients: rpyc 5.3.0 (Debian) and rpyc 6.x."""
import signal
import subprocess
import textwrap
import time

import pytest

from registry_support import (PY_REGISTRY, PYTHON, REGISTRAR, Daemon, client_env, free_port,
                              require_binary, run_client, wait_until)

GENERATIONS = ["rpyc5", "rpyc6"]
H = "127.0.0.1"


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_register_discover_unregister(generation, transport):
    with Daemon(["-m", transport]) as d:
        p = d.port
        results = run_client(generation, [
            ["register", transport, H, p, ["MY", "other"], 18861],
            ["discover", transport, H, p, "my"],
            ["discover", transport, H, p, "OTHER"],
            ["discover", transport, H, p, "nobody"],
            ["unregister", transport, H, p, 18861],
            ["sleep", None, None, None, 0.1],
            ["discover", transport, H, p, "MY"],
        ])
        assert results == [True, [[H, 18861]], [[H, 18861]], [], None, None, []]
        log = d.log()
        assert d.stop() == 0
    assert f"DEBUG:REGSRV/{transport}/{p}:registering 127.0.0.1:18861 as MY, other" in log


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_list_and_filter_host(generation, transport):
    with Daemon(["-m", "both", "-l"]) as d:
        p = d.port
        results = run_client(generation, [
            ["register", transport, H, p, ["ZETA"], 1],
            ["register", transport, H, p, ["alpha"], 2],
            ["list", transport, H, p],
            ["list", transport, H, p, H],
            ["list", transport, H, p, "10.9.9.9"],
        ])
        assert results == [True, True, ["ZETA", "ALPHA"], ["ZETA", "ALPHA"], []]
        assert d.stop() == 0


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("args", [[], ["-l", "--listing=false"], ["--listing=0"], ["--listing=no"]])
def test_listing_off_gives_none(generation, args):
    with Daemon(["-m", "both", *args]) as d:
        assert run_client(generation, [["list", "UDP", H, d.port], ["list", "TCP", H, d.port]]) == [None, None]
        assert d.stop() == 0


@pytest.mark.parametrize("generation", GENERATIONS)
def test_ipv6_udp(generation):
    with Daemon(["-m", "both", "--ipv6"]) as d:
        results = run_client(generation, [
            ["register", "UDP", "::1", d.port, ["SIX"], 6],
            ["discover", "UDP", "::1", d.port, "six"],
            ["discover", "UDP", H, d.port, "six"],  # the IPv4 client sees the same registry
        ])
        assert results == [True, [["::1", 6]], [["::1", 6]]]
        assert d.stop() == 0


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_ipv4_peer_of_dual_stack_socket_is_recorded_as_ipv4(generation, transport):
    """--ipv6 binds :: for IPv4 too; an IPv4 server registering there is found at its IPv4
    address (not ::ffff:127.0.0.1, which IPv4-only clients cannot reach), and can unregister."""
    with Daemon(["-m", "both", "--ipv6"]) as d:
        results = run_client(generation, [
            ["register", transport, H, d.port, ["FOUR"], 4],
            ["discover", transport, H, d.port, "four"],
            ["unregister", transport, H, d.port, 4],
            ["sleep", None, None, None, 0.1],
            ["discover", transport, H, d.port, "four"],
        ])
        assert results == [True, [[H, 4]], None, None, []]
        log = d.log()
        assert d.stop() == 0
    assert f"registering {H}:4 as FOUR" in log


def test_pruning_on_timer_and_at_query():
    with Daemon(["-m", "both", "-t", "2", "-l"]) as d:
        p = d.port
        results = run_client("rpyc5", [
            ["register", "UDP", H, p, ["OLD"], 1],
            ["register", "UDP", H, p, ["KEPT"], 2],
            ["sleep", None, None, None, 1.2],
            ["register", "UDP", H, p, ["KEPT"], 2],
            ["discover", "UDP", H, p, "OLD"],
            ["sleep", None, None, None, 1.5],
            # OLD is past the timeout: the timer pruned it, so LIST no longer shows it.
            ["list", "UDP", H, p],
            ["discover", "TCP", H, p, "OLD"],
            ["discover", "TCP", H, p, "KEPT"],
        ])
        assert results[4] == [[H, 1]]
        assert results[6:] == [["KEPT"], [], [[H, 2]]]
        assert d.stop() == 0


THREADED_SERVER = textwrap.dedent("""
    import sys, threading, time
    import rpyc
    from rpyc.utils.registry import UDPRegistryClient
    from rpyc.utils.server import ThreadedServer
    from rpyc.utils.factory import DiscoveryError
    port = int(sys.argv[1])
    registrar = UDPRegistryClient(ip="127.0.0.1", port=port)
    server = ThreadedServer(rpyc.SlaveService, hostname="127.0.0.1", port=0, auto_register=True,
                            registrar=registrar)
    threading.Thread(target=server.start, daemon=True).start()
    found = None
    deadline = time.time() + 10
    while time.time() < deadline and not found:
        try:
            found = rpyc.discover("SLAVE", registrar=UDPRegistryClient(ip="127.0.0.1", port=port))
        except DiscoveryError:
            time.sleep(0.1)
    assert found and found[0][1] == server.port, (found, server.port)
    conn = rpyc.classic.connect(*found[0])
    assert conn.eval("6*7") == 42
    conn.close()
    server.close()  # sends UNREGISTER
    time.sleep(0.2)
    try:
        rpyc.discover("SLAVE", registrar=UDPRegistryClient(ip="127.0.0.1", port=port))
        print("still registered")
    except DiscoveryError:
        print("ok", rpyc.__version__)
""")


@pytest.mark.parametrize("generation", GENERATIONS)
def test_threaded_server_auto_register_found_by_discover(generation):
    with Daemon([]) as d:
        out = subprocess.run([PYTHON, "-c", THREADED_SERVER, str(d.port)], env=client_env(generation),
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("ok"), out.stdout + out.stderr
        assert d.stop() == 0


def run_registrar(args):
    require_binary(REGISTRAR)
    return subprocess.Popen([str(REGISTRAR), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def start_python_registry(mode, port):
    proc = subprocess.Popen([PYTHON, PY_REGISTRY, "-m", mode, "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # The reference has no readiness signal: poll until it answers.
    def answers():
        try:
            return run_client("rpyc5", [["discover", mode, H, port, "X"]]) == [[]]
        except subprocess.CalledProcessError:  # not listening yet
            return False
    if not wait_until(answers, timeout=10, step=0.2):
        proc.kill()
        proc.wait()
        raise AssertionError("rpyc_registry did not start")
    return proc


@pytest.mark.parametrize("registry", ["python", "ours"])
@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_our_registrar(registry, transport):
    port = free_port()
    if registry == "python":
        server = start_python_registry(transport, port)
    else:
        server = Daemon(["-m", transport], port=port)
    try:
        reg = run_registrar(["--registry-type", transport, "--registry-host", H, "--registry-port",
                             str(port), "--aliases", "CLASSIC,slave", "-p", "18999"])
        assert wait_until(lambda: run_client("rpyc5", [["discover", transport, H, port, "slave"]]) ==
                          [[[H, 18999]]], timeout=10, step=0.1)
        assert run_client("rpyc5", [["discover", transport, H, port, "CLASSIC"]]) == [[[H, 18999]]]
        reg.send_signal(signal.SIGTERM)
        out, _ = reg.communicate(timeout=10)
        assert reg.returncode == 0, out
        assert "acknowledged" in out and "unregistering" in out, out
        time.sleep(0.2)
        assert run_client("rpyc5", [["discover", transport, H, port, "slave"]]) == [[]]
    finally:
        if registry == "python":
            server.terminate()
            server.wait()
        else:
            assert server.stop() == 0


def test_ipv6_tcp_raw_socket():
    """rpyc's TCPRegistryClient is IPv4-only, so IPv6 TCP is checked with a plain socket and the
    real brine."""
    import socket
    from rpyc.core import brine
    with Daemon(["-m", "both", "--ipv6"]) as d:
        def ask(request):
            with socket.create_connection(("::1", d.port), timeout=2) as s:
                s.sendall(brine.dump(request))
                return brine.load(s.recv(1500))
        assert ask(("RPYC", "REGISTER", (("V6",), 66))) == "OK"
        assert ask(("RPYC", "QUERY", ("v6",))) == (("::1", 66),)
        assert d.stop() == 0
