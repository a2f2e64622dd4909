"""rpyc-registryd per-source limits (issue 12): what one source address can cost the registry,
the servers registered with it, its log and a forged source. "Different sources" are 127.0.0.x
addresses; the legitimate party is always the real rpyc registry client (from 127.0.0.1).
Every loop is bounded."""
import socket
import time

from registry_support import REPO, Daemon, brine_request, run_client, udp_ask

H = "127.0.0.1"


def sender(address):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setblocking(False)
    return s


def drain(s, timeout=0.0):
    """Reads every reply queued on `s` (waiting up to `timeout` for the first); returns them."""
    out = []
    if timeout:
        s.settimeout(timeout)
    else:
        s.setblocking(False)
    for _ in range(100_000):
        try:
            out.append(s.recv(65536))
        except (BlockingIOError, socket.timeout):
            break
        if timeout:
            s.settimeout(0.05)  # then until the replies stop coming
    s.setblocking(False)
    return out


def flood(s, port, data_of, count, window=50):
    """Sends count datagrams in windows (so the daemon keeps up); returns the replies."""
    replies = []
    for i in range(0, count, window):
        for j in range(i, min(i + window, count)):
            s.sendto(data_of(j), (H, port))
        time.sleep(0.005)
        replies += drain(s)
    return replies + drain(s, 0.3)


def test_one_source_cannot_fill_the_registry_and_lock_servers_out():
    # The attack, scaled down: a global cap of 5,000 entries, and one source sending
    # REGISTERs of 100 names each (10,000 entries' worth).
    with Daemon(["-m", "UDP", "--max-entries", "5000"]) as d:
        names = lambda j: tuple(f"JUNK{j:03d}-{k:02d}" for k in range(100))  # noqa: E731
        with sender("127.0.0.2") as s:
            flood(s, d.port, lambda j: brine_request("REGISTER", (names(j), 1)), 100, window=10)
        # A real rpyc server still registers and is found.
        assert run_client("rpyc5", [["register", "UDP", H, d.port, ["SLAVE"], 18861],
                                    ["discover", "UDP", H, d.port, "SLAVE"]]) == [True, [[H, 18861]]]
        log = d.log()
        assert d.stop() == 0
    assert "127.0.0.2 has 1024 entries (max-entries-per-source)" in log, log[-2000:]


def test_register_rate_per_source_spares_a_real_server_re_registering():
    with Daemon(["-m", "UDP"]) as d:
        with sender("127.0.0.3") as s:
            t0 = time.monotonic()
            replies = flood(s, d.port, lambda j: brine_request("REGISTER", (("FAST",), j % 10)), 400)
            elapsed = time.monotonic() - t0
        # A burst of 100 (5 s at 20/s), then 20 per second.
        assert 100 <= len(replies) <= 100 + 20 * elapsed + 2, (len(replies), elapsed)
        # Other sources are not affected; a real server re-registering keeps working.
        ops = []
        for _ in range(5):
            ops += [["register", "UDP", H, d.port, ["SLAVE"], 18861], ["sleep", None, None, None, 0.2]]
        assert run_client("rpyc5", ops)[0::2] == [True] * 5
        log = d.log()
        assert d.stop() == 0
    assert "REGISTER rate of 127.0.0.3 over 20/s" in log, log


def test_10000_registers_from_one_source_write_few_log_lines():
    with Daemon(["-m", "UDP"]) as d:
        with sender("127.0.0.4") as s:
            flood(s, d.port, lambda j: brine_request("REGISTER", ((f"S{j % 50}",), 1)), 10_000, window=100)
        assert run_client("rpyc5", [["discover", "UDP", H, d.port, "S1"]]) == [[["127.0.0.4", 1]]]
        log = d.log()
        assert d.stop() == 0
    lines = log.splitlines()
    # 50 requests logged per 10 s, a few warnings (5 per 10 s), counts of what was left out.
    assert len(lines) < 150, len(lines)
    assert sum("registering 127.0.0.4:1 as" in line for line in lines) == 50, log


def test_udp_replies_to_one_source_stay_within_its_budget():
    with Daemon(["-m", "UDP", "-l"]) as d:
        with sender("127.0.0.5") as reg:
            # 73 servers: a QUERY reply near the 1,500-byte limit (x71 a 21-byte QUERY).
            for port in range(73):
                reg.sendto(brine_request("REGISTER", (("BIG",), 20000 + port)), (H, d.port))
            assert len(drain(reg, 1.0)) == 73
            # 150 long names: a LIST reply near its 15,000-byte limit.
            for j in range(15):
                names = tuple(f"{j:02d}{k}" + "N" * 92 for k in range(10))
                reg.sendto(brine_request("REGISTER", (names, 1)), (H, d.port))
            assert len(drain(reg, 1.0)) == 15
        query = brine_request("QUERY", ("BIG",))
        assert len(query) == 21
        with sender("127.0.0.6") as victim:
            t0 = time.monotonic()
            replies = flood(victim, d.port, lambda j: query, 2000)
            elapsed = time.monotonic() - t0
            got = sum(len(r) for r in replies)
            assert len(replies[0]) > 1400
            # One second's worth at once, then 64 KiB/s: not the 2000 x 1.4 KB asked for.
            assert 65536 <= got <= 65536 * (1 + elapsed) + 1500, (got, elapsed)
            # LIST replies (x938 a 16-byte LIST) count against the same budget.
            time.sleep(1.1)
            t0 = time.monotonic()
            lists = flood(victim, d.port, lambda j: brine_request("LIST", ((None,),)), 200)
            elapsed = time.monotonic() - t0
            assert len(lists[0]) > 14000 and len(brine_request("LIST", ((None,),))) == 16
            assert sum(len(r) for r in lists) <= 65536 * (1 + elapsed) + 15000, (len(lists), elapsed)
        # Another source is answered at once.
        assert udp_ask(d.port, query)[1][-1] == ("127.0.0.5", 20072)
        log = d.log()
        assert d.stop() == 0
    assert "reply budget of 127.0.0.6 (65536 bytes/s) exceeded" in log, log


def test_warnings_are_rate_limited_per_source():
    with Daemon(["-m", "UDP"]) as d:
        with sender("127.0.0.7") as noisy:
            flood(noisy, d.port, lambda j: b"\xff garbage %d" % j, 30, window=30)
        with sender("127.0.0.8") as other:
            other.sendto(b"\xff other", (H, d.port))
            drain(other, 0.3)
        log = d.log()
        assert d.stop() == 0
    warnings = [line for line in log.splitlines() if line.startswith("WARNING:")]
    assert sum("bad request from 127.0.0.7:" in w for w in warnings) == 5, log
    assert sum("bad request from 127.0.0.8:" in w for w in warnings) == 1, log


def test_peer_strings_cannot_forge_log_lines():
    forged = "X\r\nWARNING:REGSRV/UDP/1:forged"
    with Daemon(["-m", "both"]) as d:
        with sender("127.0.0.9") as s:
            s.sendto(brine_request("REGISTER", ((forged,), "/run/a\nDEBUG:forged")), (H, d.port))
            s.sendto(brine_request("QUERY", (forged,)), (H, d.port))
            s.sendto(brine_request("\nCRITICAL:forged", ()), (H, d.port))
            assert len(drain(s, 1.0)) == 2
        with socket.create_connection((H, d.port), timeout=2) as c:
            c.sendall(brine_request("QUERY", ("Y\nDEBUG:forged-tcp",)))
            assert c.recv(100) == brine_request("QUERY", ())[-1:]  # (), the empty tuple
        log = d.log()
        assert d.stop() == 0
    assert not any(line.startswith(("DEBUG:forged", "CRITICAL:forged", "WARNING:REGSRV/UDP/1:"))
                   for line in log.splitlines()), log
    assert "registering 127.0.0.9:/run/a\\nDEBUG:forged as X\\r\\nWARNING:REGSRV/UDP/1:forged" in log, log
    assert "querying for 'Y\\nDEBUG:FORGED-TCP'" in log, log


def test_shipped_config_listens_on_the_loopback_only():
    with Daemon(["-m", "both", "-c", str(REPO / "etc/rpyc-registryd.toml")]) as d:
        assert run_client("rpyc5", [["register", "UDP", H, d.port, ["SLAVE"], 18861]]) == [True]
        log = d.log()
        assert d.stop() == 0
    assert f"server started on 127.0.0.1:{d.port}" in log, log
    assert "0.0.0.0" not in log
