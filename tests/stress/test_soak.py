"""Soak: a steady mixed load (16 connections at once, both rpyc generations, each reconnecting
every 40 requests) against rpyc-classicd in threaded, threadpool and forking mode for 60 s
(short form) or 10 min (RPYC_STRESS=long). After warm-up the daemon's RSS (in forking mode: the
parent's) stays within 5% (the median of the first third of the samples against that of the last
third); when the clients leave every connection's object table is empty, the daemon's fds are
back to the baseline, the interpreter holds no more objects than before (threaded, threadpool)
and no child is left, zombie or not (forking).
"""
import re
import statistics
import subprocess
import threading
import time

import pytest

import stress_support as ss

LIFETIME = re.compile(r"(\d+) objects lent at disconnect, (\d+) after release")
PROBE = """
import sys, rpyc
conn = rpyc.classic.connect("127.0.0.1", int(sys.argv[1]))
conn.execute("import gc\\nfor _ in range(3): gc.collect()")
print(conn.eval("len(gc.get_objects())"))
conn.close()
"""


def interpreter_objects(port):
    """Objects the daemon's interpreter tracks, seen from a fresh connection (not forking)."""
    out = subprocess.run([ss.PYTHON, "-c", PROBE, str(port)], env=ss.client_env("rpyc5"),
                         capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout)


def goodbyes(d):
    return d.log().count("goodbye ('127.0.0.1'")


@pytest.mark.parametrize("mode", ["threaded", "threadpool", "forking"])
def test_soak(classicd, mode):
    d = classicd(mode)
    # Warm-up load: imports, code caches and allocator arenas in place before the baseline.
    warm = ss.collect(ss.start_clients(d.port, ss.SOAK_CONNECTIONS, seed=2, requests=ss.SOAK_BATCH),
                      timeout=300)
    assert warm["error_count"] == 0, warm["errors"][:10]
    expected = ss.SOAK_CONNECTIONS + 1  # + the readiness probe of classic_support.Daemon
    assert ss.wait_until(lambda: goodbyes(d) >= expected, 30), ss.diagnose(d)
    assert ss.wait_until(lambda: not ss.children(d.pid), 10), ss.children(d.pid)
    objects_before = interpreter_objects(d.port) if mode != "forking" else None
    expected += 1 if objects_before is not None else 0
    assert ss.wait_until(lambda: goodbyes(d) >= expected, 30)
    fds_before = ss.fd_count(d.pid)

    t0 = time.monotonic()
    procs = ss.start_clients(d.port, ss.SOAK_CONNECTIONS, seed=3, seconds=ss.SOAK_SECONDS,
                             batch=ss.SOAK_BATCH)
    # The clients' output is read while they run (a full pipe would stop them); sampled until
    # the load stops, i.e. until the first client process is done.
    results = []
    reader = threading.Thread(target=lambda: results.append(
        ss.collect(procs, timeout=ss.SOAK_SECONDS + 300)))
    reader.start()
    samples, max_children, max_zombies = [], 0, 0
    while all(p.poll() is None for p in procs) and time.monotonic() - t0 < ss.SOAK_SECONDS:
        samples.append((time.monotonic() - t0, ss.rss_kib(d.pid)))
        kids = ss.children(d.pid)
        max_children = max(max_children, len(kids))
        max_zombies = max(max_zombies, sum(state == "Z" for state in kids.values()))
        time.sleep(0.5)
    reader.join()
    assert results, "the client processes did not finish"
    r = results[0]
    elapsed = time.monotonic() - t0
    expected += r["connections"]
    settled = ss.wait_until(lambda: goodbyes(d) >= expected, 30)
    left = ss.wait_until(lambda: not ss.children(d.pid), 10)
    fds_back = ss.wait_until(lambda: ss.fd_count(d.pid) == fds_before, 10)
    fds_after = ss.fd_count(d.pid)
    zombies_after = sum(state == "Z" for state in ss.children(d.pid).values())
    lifetimes = LIFETIME.findall(d.log())
    objects_after = interpreter_objects(d.port) if objects_before is not None else None

    # The RSS under load moves with the requests in flight (16 connections, 64 KiB payloads,
    # thread stacks): judged is the drift of its median, first third against last third.
    judged = [rss for t, rss in samples if t >= ss.SOAK_WARMUP]
    third = max(1, len(judged) // 3)
    base = statistics.median(judged[:third])
    end = statistics.median(judged[-third:])
    lo, hi = min(judged), max(judged)
    served = sum(r["counts"].values())
    lat = sorted(r["latencies_us"])
    figures = dict(mode=mode, seconds=round(elapsed), connections=r["connections"], served=served,
                   errors=r["error_count"], p50_ms=round(ss.percentile(lat, 0.5) / 1000, 2),
                   p99_ms=round(ss.percentile(lat, 0.99) / 1000, 2),
                   rss_kib_start=round(base), rss_kib_end=round(end), rss_kib_min=lo, rss_kib_max=hi,
                   rss_drift_pct=round(100 * (end - base) / base, 2),
                   rss_spread_pct=round(100 * (hi - lo) / base, 2), fds_before=fds_before,
                   fds_after=fds_after, lent_after_release=sum(int(a) for _, a in lifetimes),
                   objects_before=objects_before, objects_after=objects_after,
                   max_children=max_children, max_zombies_seen=max_zombies,
                   zombies_after=zombies_after)
    print(figures, "RSS samples (s, KiB):", samples)
    ss.record(f"soak[{mode}]", **figures)

    assert r["error_count"] == 0, r["errors"][:10]
    assert served > 0 and r["connections"] >= ss.SOAK_CONNECTIONS
    assert settled, ss.diagnose(d)
    # Forking mode: the readiness probe, closed before its first byte, never reached a child and
    # has a goodbye but no lifetime line.
    with_space = expected - (mode == "forking")
    assert len(lifetimes) == with_space, (len(lifetimes), with_space)
    assert all(a == "0" for _, a in lifetimes), [x for x in lifetimes if x[1] != "0"][:10]
    assert fds_back, (fds_after, fds_before)
    assert left and zombies_after == 0, ss.children(d.pid)
    assert len(judged) >= 10, samples
    assert abs(end - base) <= 0.05 * base, (base, end, judged)
    if objects_before is not None:
        # The probe itself adds a few objects (its namespace, imports); nothing per connection.
        assert objects_after - objects_before < 0.01 * objects_before, (objects_before, objects_after)
