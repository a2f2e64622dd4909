"""Registry storm: several processes (half rpyc 5.3.0's brine, half 6.x's) send UDP QUERY and
REGISTER (refresh) requests at rpyc-registryd as fast as it answers, plus REGISTERs of new names
past its cap, while one TCP client sits idle and another sends a QUERY at 1 byte/s. Every
well-formed request within the cap is answered, correctly; the ones past the cap get no reply
(by design, daemons/registryd/README.md); the slow client gets its answer; the memory stays
where it was when the registry filled up (the cap bounds it).

Short form: 4 processes for 25 s, a cap of 4,000; long form (RPYC_STRESS=long): 8 processes for
120 s, a cap of 20,000.
"""
import json
import socket
import subprocess
import threading
import time

import stress_support as ss
from registry_support import Daemon, brine_request

H = "127.0.0.1"
SECONDS = 120 if ss.LONG else 25
CONNECTION_TIMEOUT_S = 40  # long enough for the slow client's 22-byte QUERY at 1 byte/s


def fill(port, names):
    """Registers SVC-0 .. SVC-<names-1> (one server each) in lockstep windows: every one 'OK'."""
    acked = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for start in range(0, names, 8):
            batch = range(start, min(start + 8, names))
            for k in batch:
                s.sendto(brine_request("REGISTER", ((f"SVC-{k}",), 10000 + k)), (H, port))
            for _ in batch:
                try:
                    acked += s.recv(100) == brine_ok()
                except socket.timeout:
                    return acked  # an unanswered REGISTER ends the fill (the assert says so)
    return acked


def brine_ok():
    from rpyc.core import brine
    return brine.dump("OK")


def idle_client(port, stop, out):
    """Connects and sends nothing; records when the registry closed it (its deadline)."""
    while not stop.is_set():
        t0 = time.monotonic()
        with socket.create_connection((H, port), timeout=CONNECTION_TIMEOUT_S + 20) as c:
            data = c.recv(100)
        if not stop.is_set():  # not the daemon's shutdown at the end of the test
            out.append(("closed", round(time.monotonic() - t0, 1), data))


def slow_client(port, stop, out):
    """Sends a well-formed QUERY one byte a second, then reads the answer."""
    request = brine_request("QUERY", ("SVC-1",))
    t0 = time.monotonic()
    with socket.create_connection((H, port), timeout=CONNECTION_TIMEOUT_S + 20) as c:
        for b in request:
            c.send(bytes([b]))
            if stop.wait(1.0):
                out.append(("stopped", round(time.monotonic() - t0, 1)))
                return
        reply = c.recv(1000)
    from rpyc.core import brine
    out.append(("answered", round(time.monotonic() - t0, 1), brine.load(reply)))


def test_udp_storm_with_idle_and_slow_tcp_clients():
    cap = ss.STORM_CAP
    # Every request comes from 127.0.0.1: the per-source limits (test_registry_limits.py) would
    # answer the storm's REGISTERs with silence, so they are lifted here.
    with Daemon(["-m", "both", "-q", "-t", "3600", "--max-entries", str(cap),
                 "--max-entries-per-source", str(cap), "--register-rate-per-source", "0",
                 "--reply-bytes-per-source", "0",
                 "--connection-timeout-ms", str(CONNECTION_TIMEOUT_S * 1000)]) as d:
        rss_empty = d.rss_kib()
        assert fill(d.port, cap) == cap
        d.notify.wait_for(f"{cap} servers", timeout=5)
        rss_full = d.rss_kib()

        stop, idle_out, slow_out = threading.Event(), [], []
        tcp = [threading.Thread(target=idle_client, args=(d.port, stop, idle_out), daemon=True),
               threading.Thread(target=slow_client, args=(d.port, stop, slow_out))]
        for t in tcp:
            t.start()
        time.sleep(0.5)
        gens = ss.generations()
        procs = []
        for i in range(ss.STORM_PROCESSES):
            gen = gens[i % len(gens)]
            cfg = dict(port=d.port, index=i, seconds=SECONDS, names=cap, window=8,
                       overflow=ss.STORM_OVERFLOW)
            p = subprocess.Popen([ss.PYTHON, str(ss.HERE / "storm_client.py"), json.dumps(cfg)],
                                 env=ss.client_env(gen), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            p.gen = gen
            procs.append(p)
        peak = rss_full
        while any(p.poll() is None for p in procs):
            peak = max(peak, d.rss_kib())
            time.sleep(0.5)
        results = []
        for p in procs:
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, f"[{p.gen}] storm client exited {p.returncode}: {err[-3000:]}"
            r = json.loads(out)
            assert r["version"].split(".")[0] == p.gen[-1], (r["version"], p.gen)
            results.append(r)
        tcp[1].join(timeout=CONNECTION_TIMEOUT_S + 30)
        stop.set()
        rss_end = d.rss_kib()
        status = last_status(d.notify)
        query_ok = udp_query(d.port)
        log = d.log()
        assert d.stop() == 0

    sent = sum(r["sent"]["QUERY"] + r["sent"]["REGISTER"] for r in results)
    answered = sum(r["answered"].get("QUERY", 0) + r["answered"].get("REGISTER", 0) for r in results)
    overflow_sent = sum(r["overflow_sent"] for r in results)
    overflow_answered = sum(r["overflow_answered"] for r in results)
    errors = [e for r in results for e in r["errors"]]
    figures = dict(processes=ss.STORM_PROCESSES, seconds=SECONDS, cap=cap, sent=sent,
                   answered=answered, per_second=round(answered / SECONDS),
                   errors=sum(r["error_count"] for r in results),
                   overflow_sent=overflow_sent, overflow_answered=overflow_answered,
                   rss_kib_empty=rss_empty, rss_kib_full=rss_full, rss_kib_peak=peak,
                   rss_kib_end=rss_end, slow=slow_out, idle=[x[:2] for x in idle_out])
    print(figures)
    ss.record("registry_storm", **figures)

    assert not errors, errors[:10]
    assert answered == sent > 0
    assert overflow_sent > 0 and overflow_answered == 0
    # The slow client was answered (1 byte/s does not block the storm nor get it dropped)...
    assert slow_out and slow_out[0][0] == "answered", slow_out
    assert slow_out[0][2] == ((H, 10001),), slow_out
    # ... and the idle one was only closed at its deadline, if the storm lasted that long.
    assert all(t >= CONNECTION_TIMEOUT_S - 1 and data == b"" for _, t, data in idle_out), idle_out
    assert query_ok == ((H, 10001),)
    # The cap holds the state, and so the memory: nothing grew once the registry was full.
    assert f"{cap} servers" in status, status
    assert rss_end - rss_full < 2048 and peak - rss_full < 4096, figures
    assert "ERROR" not in log, log[-3000:]


def udp_query(port):
    from rpyc.core import brine
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(brine_request("QUERY", ("svc-1",)), (H, port))
        return brine.load(s.recv(1000))


def last_status(notify):
    """The latest STATUS= line the registry sent (it sends one each second when it changes)."""
    notify.sock.settimeout(1.5)
    try:
        while True:
            notify.messages.append(notify.sock.recv(4096).decode())
    except socket.timeout:
        pass
    return [m for m in notify.messages if "STATUS=" in m][-1]
