"""rpyc-registryd --dnssd (issue 15): every server registered with the real registry clients (rpyc
5.3.0 and 6.x, UDP and TCP) is published through a private avahi-daemon (avahi_support.py) as a
_rpyc._tcp service with one subtype per alias, TXT aliases= and site=, and an address record
pointing at the registered host; withdrawn when unregistered or pruned; renamed on a collision.
Without Avahi, or with a hung one, the registry answers as before."""
import signal
import time

import pytest

from avahi_support import PrivateAvahi, require_avahi
from registry_support import Daemon, run_client, wait_until

H = "127.0.0.1"


@pytest.fixture
def bus():
    """A private system bus, no avahi-daemon yet."""
    require_avahi()
    with PrivateAvahi() as a:
        yield a.start_bus()


@pytest.fixture
def avahi(bus):
    yield bus.start_avahi()


def registry(avahi, *args, timeout=30, site="lab"):
    return Daemon(["-m", "both", "-t", str(timeout), "--dnssd", "--site", site, *args], extra_env=avahi.env)


def named(name):
    return lambda found: any(s.name == name for s in found)


def gone(name):
    return lambda found: not any(s.name == name for s in found)


@pytest.mark.parametrize("generation", ["rpyc5", "rpyc6"])
@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_registration_is_published_and_withdrawn(avahi, generation, transport):
    port = 18861
    name = f"CALC on {H}:{port}"
    with registry(avahi) as r:
        assert run_client(generation, [["register", transport, H, r.port, ["calc", "Other"], port]]) == [True]
        found = avahi.wait_for(named(name))
        [s] = [s for s in found if s.name == name]
        assert s.type == "_rpyc._tcp"
        # The address record points at the registered server, not at the publishing machine.
        assert (s.host, s.address, s.port) == (f"rpyc-127-0-0-1-{port}.local", H, port)
        assert "aliases=CALC,OTHER" in s.txt and "site=lab" in s.txt and "txtvers=1" in s.txt
        # One subtype per alias: browsable by alias.
        for sub in ("_calc._sub._rpyc._tcp", "_other._sub._rpyc._tcp"):
            assert any(x.name == name for x in avahi.wait_for(named(name), sub)), sub
        assert not avahi.browse("_nothing._sub._rpyc._tcp")
        # A repeat REGISTER (the registrar's keepalive) changes nothing; a new alias is added.
        assert run_client(generation, [["register", transport, H, r.port, ["calc", "Other", "third"], port]]) \
            == [True]
        avahi.wait_for(lambda f: any(s.name == name and "aliases=CALC,OTHER,THIRD" in s.txt for s in f))
        avahi.wait_for(named(name), "_third._sub._rpyc._tcp")
        r.notify.wait_for("avahi up, 1 published", timeout=3)
        # UNREGISTER withdraws it.
        run_client(generation, [["unregister", transport, H, r.port, port]])
        start = time.monotonic()
        avahi.wait_for(gone(name), timeout=10)
        assert time.monotonic() - start < 5
        assert run_client(generation, [["discover", transport, H, r.port, "CALC"]]) == [[]]
        assert "dnssd: publishing through avahi-daemon" in r.log()
        assert "warning" not in r.log().lower(), r.log()
        assert r.stop() == 0


def test_pruned_registration_is_withdrawn(avahi):
    with registry(avahi, timeout=3) as r:
        assert run_client("rpyc6", [["register", "UDP", H, r.port, ["BRIEF"], 18871],
                                    ["register", "TCP", H, r.port, ["KEPT"], 18872]]) == [True, True]
        avahi.wait_for(lambda f: named(f"BRIEF on {H}:18871")(f) and named(f"KEPT on {H}:18872")(f))
        registered = time.monotonic()
        # KEPT is refreshed every second; BRIEF is not, and goes after the 3 s timeout.
        while time.monotonic() - registered < 6:
            run_client("rpyc5", [["register", "UDP", H, r.port, ["KEPT"], 18872]])
            time.sleep(0.5)
            if gone(f"BRIEF on {H}:18871")(avahi.browse()):
                break
        assert time.monotonic() - registered > 2.5
        found = avahi.wait_for(gone(f"BRIEF on {H}:18871"), timeout=5)
        assert named(f"KEPT on {H}:18872")(found)
        assert run_client("rpyc5", [["discover", "UDP", H, r.port, "BRIEF"]]) == [[]]


def test_name_collision_is_renamed(avahi):
    # Two registries publish the same server: the second service is renamed "... #2".
    with registry(avahi, site="one") as a, registry(avahi, site="two") as b:
        assert run_client("rpyc5", [["register", "UDP", H, a.port, ["TWIN"], 18873]]) == [True]
        avahi.wait_for(named(f"TWIN on {H}:18873"))
        assert run_client("rpyc5", [["register", "UDP", H, b.port, ["TWIN"], 18873]]) == [True]
        found = avahi.wait_for(named(f"TWIN on {H}:18873 #2"))
        sites = {s.name: [t for t in s.txt if t.startswith("site=")] for s in found}
        assert sites == {f"TWIN on {H}:18873": ["site=one"], f"TWIN on {H}:18873 #2": ["site=two"]}
        assert wait_until(lambda: f"renamed to TWIN on {H}:18873 #2" in b.log(), 3), b.log()


def test_absent_avahi_is_one_warning_and_published_when_it_starts(bus):
    with registry(bus) as r:
        # The registry serves as before (both clients, both transports).
        for generation in ("rpyc5", "rpyc6"):
            assert run_client(generation, [["register", "UDP", H, r.port, ["EARLY"], 18874],
                                           ["register", "TCP", H, r.port, ["EARLY"], 18875],
                                           ["discover", "UDP", H, r.port, "EARLY"],
                                           ["discover", "TCP", H, r.port, "early"]]) \
                == [True, True, [[H, 18874], [H, 18875]], [[H, 18874], [H, 18875]]]
        r.notify.wait_for("avahi unreachable, 2 to publish", timeout=3)
        assert wait_until(lambda: "dnssd:" in r.log(), 3), r.log()
        time.sleep(6)  # past a retry (every 5 s): still one warning
        assert r.log().count("dnssd:") == 1, r.log()
        bus.start_avahi()
        # Published once avahi-daemon is there (the next retry).
        found = bus.wait_for(lambda f: named(f"EARLY on {H}:18874")(f) and named(f"EARLY on {H}:18875")(f),
                             timeout=15)
        assert all("aliases=EARLY" in s.txt for s in found)
        assert wait_until(lambda: "dnssd: publishing through avahi-daemon (2 servers)" in r.log(), 3), r.log()
        # Stopped again: one more warning; the registry still answers.
        bus.stop_avahi()
        assert wait_until(lambda: r.log().count("dnssd:") == 3, 5), r.log()
        assert run_client("rpyc5", [["discover", "UDP", H, r.port, "EARLY"]]) == [[[H, 18874], [H, 18875]]]
        assert r.stop() == 0


def test_no_bus_at_all(tmp_path):
    with Daemon(["-m", "UDP", "--dnssd"], extra_env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/none"}) as r:
        assert run_client("rpyc5", [["register", "UDP", H, r.port, ["X"], 18876],
                                    ["discover", "UDP", H, r.port, "X"]]) == [True, [[H, 18876]]]
        assert wait_until(lambda: "cannot reach avahi-daemon" in r.log(), 3), r.log()
        assert r.log().count("dnssd:") == 1, r.log()
        assert r.stop() == 0


def test_hung_avahi_never_delays_a_reply(avahi):
    with registry(avahi) as r:
        assert run_client("rpyc5", [["register", "UDP", H, r.port, ["BEFORE"], 18877]]) == [True]
        avahi.wait_for(named(f"BEFORE on {H}:18877"))
        avahi.avahi.send_signal(signal.SIGSTOP)  # D-Bus calls to it now wait for their timeout
        try:
            start = time.monotonic()
            for i in range(5):
                # New servers: each one is a D-Bus call to the hung daemon, on the publishing thread.
                assert run_client("rpyc6", [["register", "UDP", H, r.port, [f"DURING{i}"], 18880 + i],
                                            ["discover", "TCP", H, r.port, f"DURING{i}"],
                                            ["discover", "UDP", H, r.port, "BEFORE"]]) \
                    == [True, [[H, 18880 + i]], [[H, 18877]]]
            assert time.monotonic() - start < 10  # five client processes; no 25 s D-Bus timeout
        finally:
            avahi.avahi.send_signal(signal.SIGCONT)
        avahi.wait_for(lambda f: all(named(f"DURING{i} on {H}:{18880 + i}")(f) for i in range(5)), timeout=20)
        assert r.stop() == 0


def test_unix_socket_ports_are_not_published(avahi):
    with registry(avahi) as r:
        assert run_client("rpyc5", [["register", "UDP", H, r.port, ["SOCK"], "/run/x.sock"],
                                    ["register", "UDP", H, r.port, ["NET"], 18878]]) == [True, True]
        found = avahi.wait_for(named(f"NET on {H}:18878"))
        assert not any(s.name.startswith("SOCK") for s in found)


def test_dnssd_key_in_the_configuration_file(avahi, tmp_path):
    conf = tmp_path / "r.toml"
    conf.write_text('dnssd = true\nsite = "cfg"\nmode = "UDP"\n')
    with Daemon(["-c", str(conf)], extra_env=avahi.env) as r:
        assert run_client("rpyc5", [["register", "UDP", H, r.port, ["FROMFILE"], 18879]]) == [True]
        found = avahi.wait_for(named(f"FROMFILE on {H}:18879"))
        assert any("site=cfg" in s.txt for s in found)
        # Stopping withdraws what it published.
        assert r.stop() == 0
        avahi.wait_for(gone(f"FROMFILE on {H}:18879"), timeout=10)


def test_stop_with_hung_avahi_is_prompt(avahi):
    with registry(avahi) as r:
        assert run_client("rpyc5", [["register", "UDP", H, r.port, ["STUCK"], 18890]]) == [True]
        avahi.wait_for(named(f"STUCK on {H}:18890"))
        avahi.avahi.send_signal(signal.SIGSTOP)
        try:
            # The publishing thread is now inside a D-Bus call that waits for its 25 s timeout.
            assert run_client("rpyc5", [["register", "UDP", H, r.port, ["NEXT"], 18891]]) == [True]
            time.sleep(0.3)
            start = time.monotonic()
            r.proc.send_signal(signal.SIGTERM)
            assert r.proc.wait(timeout=10) == 0
            assert time.monotonic() - start < 4
            assert "dnssd: avahi-daemon does not answer; leaving without withdrawing" in r.log()
        finally:
            avahi.avahi.send_signal(signal.SIGCONT)
