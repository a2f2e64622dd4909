#!/usr/bin/python3
"""User-space instructions per request of rpyc-classicd builds, side by side, under callgrind.

classic_bench.py --callgrind measures both servers as I(n2) - I(n1) over two runs of different
lengths; for our daemon that difference moves by a few hundred instructions per op from run to run
(start-up and teardown do not cancel exactly). This script compares builds of our daemon only, in
the same sitting, alternating them, with a steadier measure for the per-request workloads: one run
per build and workload, counters zeroed (callgrind_control -z) after a warm-up of 50 ops and dumped
after N more, so only the steady state is counted. `connect` has no steady state within one
connection: it is measured as classic_bench.py does (20 and 70 connections).

Usage: instructions.py [--ops N] [--rounds R] [--workloads ping,eval,getpid,connect] BINARY...
Prints one row per round and workload, one column per binary.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import classic_bench as cb  # noqa: E402

import rpyc  # noqa: E402


def summary(path):
    with open(path) as f:
        m = re.search(r"^summary:\s*(\d+)", f.read(), re.M)
    return int(m.group(1)) if m else 0


def steady(binary, workload, ops):
    setup, op, _ = cb.WORKLOADS[workload]
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        port = cb.free_port()
        cmd = ["taskset", "-c", cb.SERVER_CPU, "valgrind", "--tool=callgrind",
               f"--callgrind-out-file={out}", binary, "--host", "127.0.0.1", "-p", str(port),
               "-q", "-m", "threaded"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            cb.wait_port(port, proc, timeout=120)
            conn = rpyc.classic.connect("127.0.0.1", port)
            state = setup(conn) if setup else None
            for _ in range(50):
                op(conn, state)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(ops):
                op(conn, state)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            conn.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        # The dump after -d is the first numbered part; the final one (at exit) is the file itself.
        return summary(out + ".1") / ops


def connect(binary):
    n1, n2 = 20, 70
    i1 = cb.callgrind_instructions("ours", binary, "connect", n1)
    i2 = cb.callgrind_instructions("ours", binary, "connect", n2)
    return (i2 - i1) / (n2 - n1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workloads", default="ping,eval,getpid,connect")
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    os.sched_setaffinity(0, {int(cb.CLIENT_CPU)})
    print("| round | workload | " + " | ".join(args.binaries) + " |")
    print("|---|---|" + "---|" * len(args.binaries))
    for r in range(1, args.rounds + 1):
        for w in args.workloads.split(","):
            row = [connect(b) if w == "connect" else steady(b, w, args.ops) for b in args.binaries]
            print(f"| {r} | {w} | " + " | ".join(f"{x:,.0f}" for x in row) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
