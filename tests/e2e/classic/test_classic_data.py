"""Moving data: large values both ways, obtain/deliver, upload/download, teleport."""


def test_large_values_both_ways(client):
    out = client.run("""
        conn = connect()
        blob = os.urandom(16 << 20)
        echo = conn.eval("lambda b: b")
        assert echo(blob) == blob                       # 16 MiB up and down
        down = conn.eval("bytes(range(256)) * 65536")   # 16 MiB down, compressible
        assert len(down) == 16 << 20 and down[:256] == bytes(range(256))
        assert conn.eval("len")(blob) == 16 << 20
        tup = conn.eval("tuple(range(10000))")
        assert tup == tuple(range(10000))
        assert conn.eval("lambda t: sum(t)")(tuple(range(10000))) == sum(range(10000))
        conn.execute("import sys; sys.set_int_max_str_digits(0)")
        sys.set_int_max_str_digits(0)
        big = 7 ** 11834  # 10,001 digits
        assert len(str(big)) > 10000
        assert conn.eval("lambda v: v + 1")(big) == big + 1
        assert conn.eval("-(10 ** 10000)") == -(10 ** 10000)
        conn.close()
        print("OK")
    """, timeout=120)
    assert out.strip().endswith("OK")


def test_obtain_and_deliver(client):
    out = client.run("""
        conn = connect()
        remote = conn.eval("{'k': [1, 2, {'n': None}]}")
        local = rpyc.classic.obtain(remote)
        assert type(local) is dict and local == {"k": [1, 2, {"n": None}]}
        delivered = rpyc.classic.deliver(conn, {"set": {1, 2}})
        # A real dict on the server (unpickled there), not a proxy of the client's.
        assert conn.eval("lambda d: type(d) is dict and sorted(d['set']) == [1, 2]")(delivered)
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")


def test_upload_and_download(client, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 1000)
    out = client.run(f"""
        conn = connect()
        rpyc.classic.upload(conn, {str(src)!r}, {str(tmp_path / "remote_copy")!r})
        rpyc.classic.download(conn, {str(tmp_path / "remote_copy")!r}, {str(tmp_path / "back")!r})
        rpyc.classic.upload(conn, {str(src / "a.txt")!r}, {str(tmp_path / "single.txt")!r})
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")
    assert (tmp_path / "back" / "a.txt").read_text() == "alpha"
    assert (tmp_path / "back" / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 1000
    assert (tmp_path / "single.txt").read_text() == "alpha"


def test_teleport_function(client):
    out = client.run("""
        conn = connect()
        def compute(n):
            import os
            return (os.getpid(), sum(i * i for i in range(n)))
        remote_compute = rpyc.classic.teleport_function(conn, compute)
        pid, total = remote_compute(10)
        assert total == 285
        assert pid == conn.modules.os.getpid() and pid != os.getpid()
        conn.close()
        print("OK")
    """)
    assert out.strip().endswith("OK")
