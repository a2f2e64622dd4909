#!/usr/bin/python3
"""Hosting benchmark: your own rpyc.Service under rpyc-classicd --service beside rpyc's Python
ThreadedServer serving the same class, same client, same run (issue 13).

The service is the packaged example, etc/examples/calculator.py (CalculatorService). Workloads:
  call     conn.root.add(1, 2) on one connection, as written: three requests (getattr of `add`,
           the call, and the release of the bound method's netref: an asynchronous request, which
           the client does not wait for but the server answers all the same)
  bound    add(1, 2) with add = conn.root.add fetched once: the call alone
  connect  rpyc.connect() + conn.root.add(1, 2) + close, one connection after the other
For each it reports the server's CPU per operation (process CPU clock, exited threads included)
and the client's wall time; with --callgrind, user-space instructions per operation from two
callgrind runs of different lengths (start-up and first-connection costs cancel out). Server and
client are placed by --placement:
  split   server and client on different CPUs, as bench/classic/classic_bench.py does (whose
          helpers this uses): every request wakes the server's idle CPU, the way a client on
          another machine does; the kernel's share of that wake-up is the same for both servers
          and, on a virtual machine, often larger than either server's own work
  shared  both on one CPU, as a local client the scheduler puts beside its server: a request is
          a switch between the two processes, without waking another CPU
  both    the two, one table each

Usage: hosting_bench.py [--ours PATH] [--seconds S] [--callgrind] [--workloads call,bound,connect]
                        [--rounds N] [--placement split|shared|both]
"""
import os
import signal
import sys
import time

import rpyc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "classic"))
import classic_bench  # noqa: E402
from classic_bench import (CLIENT_CPU, SERVER_CPU, bench_arguments,  # noqa: E402
                           callgrind_row, callgrind_total, process_cpu_seconds, run_server)

# (server CPU, client CPU) of each placement (the module docstring says why both).
PLACEMENTS = {"split": (SERVER_CPU, CLIENT_CPU), "shared": (CLIENT_CPU, CLIENT_CPU)}

EXAMPLES = os.path.join(ROOT, "etc", "examples")
SERVICE = "calculator:CalculatorService"

# rpyc's own server for the same class, as its documentation writes it (quiet: the reference's
# per-connection lines are info, which Python's logging does not print without a handler).
REFERENCE = """\
import sys
from rpyc.utils.server import ThreadedServer
from calculator import CalculatorService
ThreadedServer(CalculatorService, hostname="127.0.0.1", port=int(sys.argv[1])).start()
"""


def command(kind, port, ours):
    if kind == "python":
        return ["/usr/bin/python3", "-c", REFERENCE, str(port)]
    return [ours, "--service", SERVICE, "--service-path", EXAMPLES, "--host", "127.0.0.1",
            "-p", str(port), "-q", "-c", ""]


def server(kind, ours, wrapper=()):
    return run_server(lambda port: command(kind, port, ours),
                      signal.SIGINT if kind == "python" else signal.SIGTERM, wrapper,
                      env=dict(os.environ, PYTHONPATH=EXAMPLES))


def calls(conn, workload):
    """The operation of `call` or `bound` on `conn`."""
    if workload == "bound":
        add = conn.root.add
        return lambda: add(1, 2)

    def call():
        assert conn.root.add(1, 2) == 3
    return call


def one_connection(port):
    c = rpyc.connect("127.0.0.1", port)
    assert c.root.add(1, 2) == 3
    c.close()


def measure(kind, ours, workload, seconds):
    """(ops, server CPU s, client wall s)."""
    with server(kind, ours) as (proc, port):
        if workload == "connect":
            one_connection(port)  # warm-up: imports, first connection
            n, c0, t0 = 0, process_cpu_seconds(proc.pid), time.monotonic()
            while time.monotonic() - t0 < seconds:
                one_connection(port)
                n += 1
            wall = time.monotonic() - t0
            time.sleep(0.2)  # the server tears the last connection down
            return n, process_cpu_seconds(proc.pid) - c0, wall
        conn = rpyc.connect("127.0.0.1", port)
        op = calls(conn, workload)
        for _ in range(10):
            op()
        n, c0, t0 = 0, process_cpu_seconds(proc.pid), time.monotonic()
        while time.monotonic() - t0 < seconds:
            op()
            n += 1
        result = n, process_cpu_seconds(proc.pid) - c0, time.monotonic() - t0
        conn.close()
        return result


def callgrind_instructions(kind, ours, workload, ops):
    def drive(port):
        if workload == "connect":
            for _ in range(ops):
                one_connection(port)
            time.sleep(1.0)
        else:
            conn = rpyc.connect("127.0.0.1", port)
            op = calls(conn, workload)
            for _ in range(ops):
                op()
            conn.close()
    return callgrind_total(lambda wrapper: server(kind, ours, wrapper), drive)


def cpu_table(args, workloads, placement):
    """Measures the CPU rows of one placement and prints its table."""
    server_cpu, client_cpu = PLACEMENTS[placement]
    classic_bench.SERVER_CPU = server_cpu  # run_server() starts the servers there
    os.sched_setaffinity(0, {int(client_cpu)})
    print(f"\nplacement {placement}: server on CPU {server_cpu}, client on CPU {client_cpu}")
    print(f"{'workload':<8} {'server':<7} {'ops':>7} {'server CPU/op':>14} {'client wall/op':>15}")
    rows = {}
    for w in workloads:
        for r in range(args.rounds):
            for kind in ("python", "ours"):
                n, cpu, wall = measure(kind, args.ours, w, args.seconds)
                rows.setdefault((w, kind), []).append((cpu / n, wall / n))
                print(f"{w:<8} {kind:<7} {n:>7} {cpu / n * 1e6:>11.1f} us "
                      f"{wall / n * 1e6:>12.1f} us", flush=True)
    print()
    print(f"| workload ({placement}) | Python ThreadedServer CPU/op | rpyc-classicd | "
          "ratio (median) |")
    print("|---|---:|---:|---:|")
    for w in workloads:
        p = sorted(c for c, _ in rows[(w, "python")])
        o = sorted(c for c, _ in rows[(w, "ours")])
        span = (lambda v: f"{v[0] * 1e6:.1f}" if len(v) == 1 else
                f"{v[0] * 1e6:.1f}-{v[-1] * 1e6:.1f}")
        med = p[len(p) // 2] / o[len(o) // 2]
        print(f"| {w} | {span(p)} us | {span(o)} us | {med:.1f}x |")


def main():
    ap = bench_arguments()
    ap.add_argument("--rounds", type=int, default=1, help="CPU measurements per cell")
    ap.add_argument("--workloads", default="call,bound,connect")
    ap.add_argument("--placement", default="split", choices=["split", "shared", "both"])
    args = ap.parse_args()
    workloads = args.workloads.split(",")

    print(f"service {SERVICE} ({EXAMPLES}); {args.seconds:.0f} s per cell, "
          f"rpyc {rpyc.__version__} client")
    for placement in (["split", "shared"] if args.placement == "both" else [args.placement]):
        cpu_table(args, workloads, placement)

    if args.callgrind:
        print("\nuser-space instructions per op (callgrind, (I(n2) - I(n1)) / (n2 - n1)):")
        print("| workload | Python ThreadedServer | rpyc-classicd | ratio |")
        print("|---|---:|---:|---:|")
        for w in workloads:
            n1, n2 = (20, 70) if w == "connect" else (200, 1200)
            callgrind_row(w, n1, n2, lambda kind, n: callgrind_instructions(kind, args.ours, w, n))


if __name__ == "__main__":
    sys.exit(main())
