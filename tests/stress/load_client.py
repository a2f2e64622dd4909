"""One client process of the stress suite: N threads, each with its own classic connection made by
the real rpyc client of the generation on sys.path (Debian's 5.3.0, or 6.x via PYTHONPATH).

Input (JSON in argv[1]): port, threads, requests (per connection), or seconds (soak: run until then,
reconnecting every `batch` requests), seed. Output (JSON on stdout): the rpyc version, the
count of requests per kind, the errors (first 20 messages and their count), every latency in
microseconds, the server pids seen and the connections made.

Each request is checked against what the client computes itself. The kinds, in turn:
  eval      conn.eval("A*B+I")                           == A*B+I
  getpid    conn.modules.os.getpid() (getattr + call)    the same pid for the whole connection
  upload    conn.modules.zlib.crc32(64 KiB of random bytes) == zlib.crc32(same)
  download  a server function returning 64 KiB made from the request number, compared byte for byte
  callback  a server function calling a client function back: f(i) + 1 == 2*i + 1
"""
import hashlib
import json
import random
import sys
import threading
import time
import zlib

import rpyc

KINDS = ("eval", "getpid", "upload", "download", "callback")
BLOB = 64 * 1024
SERVER_CODE = """
import hashlib
def stress_blob(i):
    return hashlib.sha256(str(i).encode()).digest() * 2048
def stress_callback(f, i):
    return f(i) + 1
"""


def expected_blob(i):
    return hashlib.sha256(str(i).encode()).digest() * (BLOB // 32)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(KINDS, 0)
        self.latencies = []
        self.errors = []
        self.error_count = 0
        self.pids = set()
        self.connections = 0

    def error(self, msg):
        with self.lock:
            self.error_count += 1
            if len(self.errors) < 20:
                self.errors.append(msg)


def session(port, requests, first, rng, stats):
    """One connection doing `requests` mixed requests; returns normally even on errors."""
    try:
        conn = rpyc.classic.connect("127.0.0.1", port)
    except Exception as e:  # noqa: BLE001 - every failure is counted, none is fatal to the run
        stats.error(f"connect: {e!r}")
        return
    with stats.lock:
        stats.connections += 1
    lat, counts = [], dict.fromkeys(KINDS, 0)
    try:
        conn._config["sync_request_timeout"] = 300  # a slow reply is a latency, not an error
        conn.execute(SERVER_CODE)
        blob_fn, callback_fn = conn.namespace["stress_blob"], conn.namespace["stress_callback"]
        os_mod, zlib_mod = conn.modules.os, conn.modules.zlib
        pid = None
        a, b = rng.randrange(1 << 20), rng.randrange(1 << 20)
        for n in range(first, first + requests):
            kind = KINDS[n % len(KINDS)]
            t0 = time.perf_counter()
            try:
                if kind == "eval":
                    got, want = conn.eval(f"{a}*{b}+{n}"), a * b + n
                elif kind == "getpid":
                    got = os_mod.getpid()
                    want = pid = pid or got
                elif kind == "upload":
                    data = rng.randbytes(BLOB)
                    t0 = time.perf_counter()
                    got, want = zlib_mod.crc32(data), zlib.crc32(data)
                elif kind == "download":
                    got = blob_fn(n)
                    want = expected_blob(n)
                else:
                    got, want = callback_fn(lambda x: 2 * x, n), 2 * n + 1
            except Exception as e:  # noqa: BLE001
                stats.error(f"{kind} #{n}: {e!r}")
                if conn.closed:
                    return
                continue
            lat.append(int((time.perf_counter() - t0) * 1e6))
            if got != want:
                stats.error(f"{kind} #{n}: wrong reply {str(got)[:80]!r} != {str(want)[:80]!r}")
            else:
                counts[kind] += 1
        with stats.lock:
            stats.pids.add(pid)
    except Exception as e:  # noqa: BLE001
        stats.error(f"session setup: {e!r}")
    finally:
        with stats.lock:
            stats.latencies += lat
            for k, v in counts.items():
                stats.counts[k] += v
        try:
            conn.close()
        except Exception as e:  # noqa: BLE001
            stats.error(f"close: {e!r}")


def worker(cfg, index, stats, start):
    rng = random.Random(cfg["seed"] * 1000 + index)
    start.wait()
    if "seconds" in cfg:  # soak: reconnect every batch until the deadline
        deadline = time.monotonic() + cfg["seconds"]
        n = 0
        while time.monotonic() < deadline:
            session(cfg["port"], cfg["batch"], n, rng, stats)
            n += cfg["batch"]
    else:
        session(cfg["port"], cfg["requests"], 0, rng, stats)


def main():
    cfg = json.loads(sys.argv[1])
    stats = Stats()
    start = threading.Barrier(cfg["threads"])
    threads = [threading.Thread(target=worker, args=(cfg, i, stats, start)) for i in range(cfg["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    json.dump({"version": rpyc.__version__, "counts": stats.counts, "errors": stats.errors,
               "error_count": stats.error_count, "latencies_us": stats.latencies,
               "pids": sorted(p for p in stats.pids if p), "connections": stats.connections},
              sys.stdout)


if __name__ == "__main__":
    main()
