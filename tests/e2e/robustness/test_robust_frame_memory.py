"""Memory follows the bytes received, not the lengths announced (issue 12).

A frame header may announce up to --max-frame-size payload bytes (64 MiB by default) and then send
nothing more. Reserving the announced length at once let 50 such headers commit 3.3 GB (the
kernel's Committed_AS) while the daemon's RSS barely moved, since the pages were never touched: so
this test watches VmData (the private writable mappings, which is what a process adds to
Committed_AS) as well as VmRSS. The daemon must stay within a small bound per connection, serve a
real client meanwhile, and still take a large frame that does arrive in full.
"""

import os
import socket
import struct
import time
from pathlib import Path

import pytest

import sanitizer_support
from robust_support import (CLASSICD, PING, REPLY, Daemon, RawPeer, b_bytes, b_tuple, by_value,
                            frame, native_only, request, rss_kb, run_client, wait_for)

pytestmark = native_only

CONNECTIONS = 50
ANNOUNCED = 64 << 20  # the default --max-frame-size: a length the daemon must accept


def vm_data_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1])
    raise AssertionError("no VmData")


def open_peers(port, n):
    peers = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        peers.append(s)
    return peers


@pytest.mark.parametrize("mode", ["threaded", "threadpool"])
def test_announced_lengths_reserve_no_memory(tmp_path, mode):
    if sanitizer_support.sanitizer(CLASSICD):
        pytest.skip("sanitizer runtimes reserve shadow memory of their own")
    d = Daemon(tmp_path, extra_args=["-m", mode])
    try:
        # The same number of connections that send nothing: their threads and stacks are the
        # baseline, so only what the headers cost is measured.
        idle = open_peers(d.port, CONNECTIONS)
        time.sleep(1.0)
        base_data, base_rss = vm_data_kb(d.pid), rss_kb(d.pid)
        for s in idle:
            s.close()
        time.sleep(0.5)

        peers = open_peers(d.port, CONNECTIONS)
        # Each announces 64 MiB and sends the first 1000 payload bytes of it, then 1000 more a
        # moment later (a daemon that reads only when bytes are there makes room on the second).
        header = struct.pack("!LB", ANNOUNCED, 0)
        for s in peers:
            s.sendall(header + b"\x00" * 1000)
        time.sleep(0.5)
        for s in peers:
            s.sendall(b"\x00" * 1000)
        time.sleep(1.5)
        grown_data = vm_data_kb(d.pid) - base_data
        grown_rss = rss_kb(d.pid) - base_rss
        for s in peers:
            s.close()
        # Before: 50 x 64 MiB = 3.2 GiB of VmData. Now at most a first read's room (64 KiB, and
        # the allocator's rounding) per connection: allow 1 MiB each.
        limit = CONNECTIONS * 1024
        assert grown_data < limit, f"VmData grew by {grown_data} kB for {CONNECTIONS} headers"
        assert grown_rss < limit, f"VmRSS grew by {grown_rss} kB for {CONNECTIONS} headers"

        # A large frame that does arrive in full is still taken: a PING of 8 MiB comes back.
        peer = RawPeer(d.port, log=d.log)
        try:
            blob = os.urandom(8 << 20)
            peer.send(frame(request("rpyc5", 1, PING, by_value(b_tuple(b_bytes(blob))))))
            msg = peer.reply("rpyc5")
            assert msg is not None and msg[0] == REPLY and msg[1] == 1, msg and msg[:2]
            assert msg[2] == (1, blob)
        finally:
            peer.close()
        # And a real client is served.
        out = run_client("rpyc5", "import rpyc; c = rpyc.classic.connect('127.0.0.1', {port}); "
                                  "print(c.eval('6*7'))", port=d.port)
        assert out.strip().endswith("42"), out
        assert d.proc.poll() is None, d.log()[-3000:]
    finally:
        assert d.stop() == 0
