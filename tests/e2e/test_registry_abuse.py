"""rpyc-registryd under hostile or broken clients: nothing they do delays anyone else."""
import os
import re
import socket
import threading
import time

from registry_support import REGISTRYD, Daemon, brine_request, run_client, sanitized, udp_ask

H = "127.0.0.1"


def good_query(port):
    return udp_ask(port, brine_request("QUERY", ("NOBODY",)))


def test_garbage_and_oversize_datagrams_get_no_reply_and_one_warning_each():
    bad = [
        b"",
        b"\xff\x00garbage",
        os.urandom(64),
        b"\x12\x08\x0dRPYC",  # truncated
        brine_request("QUERY", ("X",))[:-1],
        brine_request("FETCH", ()),
        brine_request("QUERY", ()),  # wrong arity
        brine_request("REGISTER", (("A",), 1.5)),  # a float port
        b"\x12\x0d\x52\x50\x59\x43" + brine_request("QUERY", ("X",))[7:],  # magic b'RPYC'
        brine_request("QUERY", ("A" * 3000,)),  # oversize: > 1500 bytes
        b"\x00" * 9000,  # oversize
    ]
    with Daemon(["-m", "UDP"]) as d:
        # Each from its own source address (127.0.0.10, .11, ...): warnings are rate-limited per
        # source (5 per 10 s), which test_warnings_are_rate_limited_per_source checks.
        senders = []
        for i, data in enumerate(bad):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.0.{10 + i}", 0))
            s.settimeout(0.3 if i == len(bad) - 1 else 0.01)
            s.sendto(data, (H, d.port))
            senders.append(s)
        try:
            replies = []
            for s in senders:
                try:
                    replies.append(s.recv(65536))
                except socket.timeout:
                    pass
        finally:
            me = [f"{a}:{p}" for a, p in (s.getsockname() for s in senders)]
            for s in senders:
                s.close()
        assert replies == []
        assert good_query(d.port) == ("reply", ())
        log = d.log()
        assert d.stop() == 0
    warnings = [line for line in log.splitlines() if line.startswith("WARNING:")]
    # Empty datagrams are as bad as any other: one warning per bad datagram, each naming the peer.
    assert len(warnings) == len(bad), log
    assert all(f"bad request from {peer}: " in w for peer, w in zip(me, warnings)), warnings
    assert sum("oversize datagram" in w for w in warnings) == 2
    assert any("invalid magic: b'RPYC'" in w for w in warnings)


def test_garbage_over_tcp_is_closed_without_reply():
    with Daemon(["-m", "TCP"]) as d:
        with socket.create_connection((H, d.port), timeout=2) as c:
            c.sendall(b"\xff\xfe garbage")
            assert c.recv(100) == b""  # closed at once, no reply
        assert run_client("rpyc5", [["discover", "TCP", H, d.port, "X"]]) == [[]]
        assert "bad request from 127.0.0.1:" in d.log()
        assert d.stop() == 0


def test_100000_distinct_registrations_cap_and_memory():
    # One source fills the global cap here: its per-source limits are lifted (the per-source
    # cap itself is checked in test_registry_limits.py).
    with Daemon(["-m", "UDP", "-q", "--max-entries-per-source", "100000", "--register-rate-per-source", "0",
                 "--reply-bytes-per-source", "0"]) as d:
        rss_before = d.rss_kib()
        acked = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.02)
            # UDP may drop datagrams when the machine is loaded (the receive buffer fills), so
            # the 100,000 registrations are sent again, at most twice more, until the registry
            # reports the cap. Re-sending refreshes entries: it never adds more than the cap.
            for attempt in range(3):
                sent = 0
                while sent < 100_000:
                    # A window of requests, then its replies (none once the registry is full).
                    for _ in range(100):
                        s.sendto(brine_request("REGISTER", ((f"SERVICE-{sent:06d}",),
                                                            18000 + sent % 1000)), (H, d.port))
                        sent += 1
                    for _ in range(100):
                        try:
                            s.recv(100)
                            acked += 1
                        except socket.timeout:
                            break
                try:
                    status = d.notify.wait_for("65536 servers", timeout=10)
                    break
                except AssertionError:
                    if attempt == 2:
                        raise
        assert "65536 services, 65536 servers" in status
        assert acked <= 3 * 65536  # past the cap a REGISTER gets no 'OK'
        rss = d.rss_kib()
        # An existing entry still refreshes, a query is still answered.
        assert udp_ask(d.port, brine_request("REGISTER", (("SERVICE-000001",), 18001))) == ("reply", "OK")
        assert udp_ask(d.port, brine_request("QUERY", ("service-000001",))) == ("reply", ((H, 18001),))
        assert udp_ask(d.port, brine_request("REGISTER", (("NEW-ONE",), 1)), timeout=0.3) is None
        assert d.stop() == 0
    print(f"RSS before {rss_before} KiB, with 65,536 entries after 100,000 registrations {rss} KiB")
    if not sanitized(REGISTRYD):
        assert rss < 32 * 1024


def slow_client(port, stop, result):
    """Sends a valid QUERY one byte every 0.25 s."""
    data = brine_request("QUERY", ("SLOW",))
    try:
        with socket.create_connection((H, port), timeout=10) as c:
            for b in data:
                if stop.is_set():
                    return
                c.send(bytes([b]))
                time.sleep(0.25)
            c.settimeout(5)
            result.append(c.recv(100))
    except OSError as e:
        result.append(e)


def test_idle_and_slow_tcp_clients_do_not_delay_others():
    with Daemon(["-m", "both", "--connection-timeout-ms", "2000"]) as d:
        idle = socket.create_connection((H, d.port))
        stop, result = threading.Event(), []
        slow = threading.Thread(target=slow_client, args=(d.port, stop, result))
        slow.start()
        time.sleep(0.3)
        ops = []
        for i in range(10):
            ops += [["register", "TCP", H, d.port, [f"S{i}"], i], ["discover", "TCP", H, d.port, f"s{i}"],
                    ["discover", "UDP", H, d.port, f"s{i}"]]
        t0 = time.monotonic()
        results = run_client("rpyc5", ops)
        elapsed = time.monotonic() - t0
        assert results[1::3] == [[[H, i]] for i in range(10)]
        assert results[2::3] == [[[H, i]] for i in range(10)]
        # 30 requests, all answered while the idle and the slow connection were open.
        assert elapsed < 1.5, elapsed
        # The idle connection is closed at its deadline; so is the slow one (24 bytes x 0.25 s).
        idle.settimeout(5)
        assert idle.recv(10) == b""
        stop.set()
        slow.join()
        idle.close()
        log = d.log()
        assert d.stop() == 0
    assert len(re.findall(r"bad request from 127\.0\.0\.1:\d+: connection timed out", log)) >= 1, log


def test_connection_cap_evicts_the_oldest():
    with Daemon(["-m", "TCP", "--max-connections", "20"]) as d:
        idle = [socket.create_connection((H, d.port)) for _ in range(50)]
        t0 = time.monotonic()
        assert run_client("rpyc5", [["register", "TCP", H, d.port, ["X"], 1],
                                    ["discover", "TCP", H, d.port, "X"]]) == [True, [[H, 1]]]
        assert time.monotonic() - t0 < 1.5
        # The first idle connections were closed to make room.
        idle[0].settimeout(2)
        assert idle[0].recv(10) == b""
        for c in idle:
            c.close()
        assert "connections open (max-connections): closing the oldest" in d.log()
        assert d.stop() == 0


def test_big_query_reply_is_truncated_to_a_valid_tuple():
    with Daemon(["-m", "UDP", "--register-rate-per-source", "0"]) as d:
        for port in range(200):
            assert udp_ask(d.port, brine_request("REGISTER", (("MANY",), port))) == ("reply", "OK")
        kind, servers = udp_ask(d.port, brine_request("QUERY", ("MANY",)))
        assert 0 < len(servers) < 200
        assert servers[-1] == (H, 199)  # the newest are kept, still oldest first
        assert run_client("rpyc6", [["discover", "UDP", H, d.port, "MANY"]])[0] == [list(s) for s in servers]
        assert "reply to 127.0.0.1:" in d.log() and "truncated to 1500 bytes" in d.log()
        assert d.stop() == 0
