"""Round trips that rpyc's clients (Nagle on) could stall for a delayed ACK (40 ms on Linux): a
callback with a fresh proxy (the client replies to our DEL, then sends its next request) and a
64 KiB upload (the client writes 64,000 bytes, then the rest). Found by tests/stress: before the
daemon ACKed every read at once, each took 40-48 ms instead of about 1 ms."""


def test_fresh_proxy_callbacks_and_64k_uploads_are_not_held_by_delayed_acks(client, native_only):
    out = client.run("""
        import random, time
        conn = connect()
        conn.execute("def cb(f, i):\\n    return f(i) + 1\\n")
        cb, zlib_mod = conn.namespace["cb"], conn.modules.zlib
        data = random.Random(1).randbytes(65536)
        def median(fn):
            times = []
            for i in range(21):
                t = time.perf_counter()
                fn(i)
                times.append(time.perf_counter() - t)
            return sorted(times)[10]
        def call_back(i):
            assert cb(lambda x: 2 * x, i) == 2 * i + 1
        def upload(i):
            assert zlib_mod.crc32(data) == 0x%08x
        print("CALLBACK", median(call_back))
        print("UPLOAD", median(upload))
        conn.close()
    """ % __import__("zlib").crc32(__import__("random").Random(1).randbytes(65536)))
    times = dict(line.split() for line in out.splitlines())
    # 40 ms is the delayed-ACK floor; a served round trip takes about 1 ms here, even loaded.
    assert float(times["CALLBACK"]) < 0.02, times
    assert float(times["UPLOAD"]) < 0.02, times
