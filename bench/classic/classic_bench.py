#!/usr/bin/python3
"""Classic-server benchmark: rpyc-classicd beside the Python rpyc_classic, same client, same run.

For each server and workload it reports server CPU per operation (the server's process CPU clock,
which includes exited threads, plus reaped children) and the client's wall time per operation.
Server and client are pinned to different CPUs. A raw C TCP echo of the same bytes is the floor
for ping. With --callgrind it also runs each server under valgrind and reports user-space
instructions per operation, from the difference of two runs of different lengths (so start-up
and connection costs cancel out).

Usage: classic_bench.py [--ours PATH] [--seconds S] [--callgrind] [--workloads a,b]
                        [--mode threaded|forking|threadpool]
--mode runs both servers in that mode (rpyc_classic has no threadpool mode: it stays threaded).
"""
import argparse
import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import rpyc
from rpyc.core import brine

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SERVER_CPU, CLIENT_CPU = "1", "0"
MiB = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        time.sleep(0.05)
    raise RuntimeError("server did not listen in time")


def process_cpu_seconds(pid):
    """The process CPU clock of `pid` (all threads, live and exited) plus its reaped children."""
    clock_id = ((~pid) << 3) | 2  # CPUCLOCK_SCHED, process-wide (see clock_getcpuclockid)
    own = time.clock_gettime(clock_id)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    children = (int(fields[13]) + int(fields[14])) / ticks  # cutime, cstime
    return own + children


MODE = ["threaded"]  # set by --mode


def python_mode():
    return "forking" if MODE[0] == "forking" else "threaded"


SERVERS = {
    "python": lambda port, ours: ["/usr/bin/python3", "/usr/bin/rpyc_classic", "-m", python_mode(),
                                  "--host", "127.0.0.1", "-p", str(port), "-q"],
    "ours": lambda port, ours: [ours, "--host", "127.0.0.1", "-p", str(port), "-q", "-m",
                                MODE[0]],
    "echo": lambda port, ours: [os.path.join(os.path.dirname(ours), "..", "..", "bench",
                                             "bench_echo_server"), str(port)],
}


@contextlib.contextmanager
def run_server(command, stop_signal, wrapper=(), env=None):
    """Starts `command(port)` on the server CPU behind `wrapper` (valgrind...), yields (proc,
    port) once it listens, and stops it with `stop_signal`."""
    port = free_port()
    cmd = ["taskset", "-c", SERVER_CPU, *wrapper, *command(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        wait_port(port, proc, timeout=180 if wrapper else 30)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(stop_signal)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def server(kind, ours, wrapper=()):
    return run_server(lambda port: SERVERS[kind](port, ours),
                      signal.SIGINT if kind == "python" else signal.SIGTERM, wrapper)


# ---- workloads: each is (setup(conn) -> state, op(conn, state)) ---------------------------------

def w_ping(conn, _):
    conn.ping()


def w_getpid(conn, _):
    conn.modules.os.getpid()


def w_eval(conn, _):
    assert conn.eval("1+1") == 2


def setup_down(conn):
    conn.execute("import os; blob = os.urandom(1 << 20)")
    return None


def w_down(conn, _):
    data = conn.eval("blob")
    assert len(data) == MiB


def setup_up(conn):
    conn.execute("def sink(b): return len(b)")
    return (conn.namespace["sink"], os.urandom(MiB))


def w_up(conn, state):
    sink, data = state
    assert sink(data) == MiB


def setup_upload(conn):
    return (conn.namespace, os.urandom(MiB))


def w_upload(conn, state):
    # The upload of issue 11: a store into the server's namespace, as `ns["blob"] = data` does
    # (the 5.x client compresses the frame, so the server inflates it).
    ns, data = state
    ns["blob"] = data


WORKLOADS = {
    "ping": (None, w_ping, 1.0),
    "getpid": (None, w_getpid, 1.0),
    "eval": (None, w_eval, 1.0),
    "1MiB-down": (setup_down, w_down, 1.0),
    "1MiB-up": (setup_up, w_up, 1.0),
    "upload": (setup_upload, w_upload, 1.0),
}


def ping_frame():
    """The exact bytes of a 5.x ping request with the default data, as conn.ping() sends."""
    payload = brine.dump((1, 0, (1, (1, ("abcdefghijklmnopqrstuvwxyz" * 20,)))))
    return struct.pack("!LB", len(payload), 0) + payload + b"\n"


def run_echo(port, seconds):
    frame = ping_frame()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        s.sendall(frame)
        got = 0
        while got < len(frame):
            got += len(s.recv(65536))
        n += 1
    s.close()
    return n


def measure(kind, ours, workload, seconds):
    """Returns (ops, server CPU s, client wall s)."""
    with server(kind, ours) as (proc, port):
        if kind == "echo":
            run_echo(port, 0.2)  # warm-up
            c0, t0 = process_cpu_seconds(proc.pid), time.monotonic()
            n = run_echo(port, seconds)
            return n, process_cpu_seconds(proc.pid) - c0, time.monotonic() - t0
        if workload == "connect":
            return measure_connect(proc, port, seconds)
        if workload == "16-clients":
            return measure_concurrent(proc, port, seconds, 16)
        setup, op, _ = WORKLOADS[workload]
        conn = rpyc.classic.connect("127.0.0.1", port)
        state = setup(conn) if setup else None
        for _ in range(3):
            op(conn, state)  # warm-up
        n, c0, t0 = 0, process_cpu_seconds(proc.pid), time.monotonic()
        while time.monotonic() - t0 < seconds:
            op(conn, state)
            n += 1
        result = n, process_cpu_seconds(proc.pid) - c0, time.monotonic() - t0
        conn.close()
        return result


def measure_connect(proc, port, seconds):
    c = rpyc.classic.connect("127.0.0.1", port)  # warm-up: imports, first connection
    c.eval("1+1")
    c.close()
    n, c0, t0 = 0, process_cpu_seconds(proc.pid), time.monotonic()
    while time.monotonic() - t0 < seconds:
        c = rpyc.classic.connect("127.0.0.1", port)
        assert c.eval("1+1") == 2
        c.close()
        n += 1
    time.sleep(0.2)  # let the server finish tearing down the last connection
    return n, process_cpu_seconds(proc.pid) - c0 - 0.0, time.monotonic() - t0 - 0.2


def measure_concurrent(proc, port, seconds, clients):
    conns = [rpyc.classic.connect("127.0.0.1", port) for _ in range(clients)]
    counts = [0] * clients
    stop = threading.Event()

    def loop(i):
        while not stop.is_set():
            assert conns[i].eval("1+1") == 2
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    c0, t0 = process_cpu_seconds(proc.pid), time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    result = sum(counts), process_cpu_seconds(proc.pid) - c0, time.monotonic() - t0
    for c in conns:
        c.close()
    return result


def callgrind_total(start, drive):
    """User-space instructions of a server run under callgrind: `start(wrapper)` is a context
    manager that starts it behind the `wrapper` command and yields (proc, port); `drive(port)`
    runs the workload. Forked children (%p: a profile each) are summed in."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
                   "--trace-children=no"]
        with start(wrapper) as (_, port):
            drive(port)
        total = 0
        for name in os.listdir(d):
            with open(os.path.join(d, name)) as f:
                m = re.search(r"^summary:\s*(\d+)", f.read(), re.M)
                if m:
                    total += int(m.group(1))
        return total


def callgrind_row(label, n1, n2, count):
    """Prints `| label | Python | ours | ratio |`: instructions per op of each server as
    (count(kind, n2) - count(kind, n1)) / (n2 - n1), so start-up and first-connection costs
    cancel out."""
    per = {kind: (count(kind, n2) - count(kind, n1)) / (n2 - n1) for kind in ("python", "ours")}
    print(f"| {label} | {per['python']:,.0f} | {per['ours']:,.0f} | "
          f"{per['python'] / per['ours']:.1f}x |", flush=True)


def callgrind_instructions(kind, ours, workload, ops):
    def drive(port):
        if workload == "connect":
            for _ in range(ops):
                c = rpyc.classic.connect("127.0.0.1", port)
                assert c.eval("1+1") == 2
                c.close()
            time.sleep(1.0)  # let the last child finish and write its profile
        else:
            setup, op, _ = WORKLOADS[workload]
            conn = rpyc.classic.connect("127.0.0.1", port)
            state = setup(conn) if setup else None
            for _ in range(ops):
                op(conn, state)
            conn.close()
    return callgrind_total(lambda wrapper: server(kind, ours, wrapper), drive)


def bench_arguments():
    """The switches every server benchmark here takes: --ours, --seconds, --callgrind."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", default=os.environ.get(
        "RPYC_CLASSICD", os.path.join(ROOT, "build/release/daemons/classicd/rpyc-classicd")))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--callgrind", action="store_true")
    return ap


def main():
    ap = bench_arguments()
    ap.add_argument("--workloads", default="ping,getpid,eval,1MiB-down,1MiB-up,upload,connect,16-clients")
    ap.add_argument("--mode", default="threaded", choices=["threaded", "forking", "threadpool"])
    args = ap.parse_args()
    MODE[0] = args.mode
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    workloads = args.workloads.split(",")

    print(f"server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}, {args.seconds:.0f} s per cell, "
          f"mode {args.mode} (Python: {python_mode()})")
    print(f"{'workload':<12} {'server':<7} {'ops':>7} {'server CPU/op':>14} {'client wall/op':>15}")
    rows = {}
    for w in workloads:
        for kind in ("python", "ours"):
            n, cpu, wall = measure(kind, args.ours, w, args.seconds)
            rows[(w, kind)] = (n, cpu / n, wall / n)
            print(f"{w:<12} {kind:<7} {n:>7} {cpu / n * 1e6:>11.1f} us {wall / n * 1e6:>12.1f} us",
                  flush=True)
        if w == "ping":
            n, cpu, wall = measure("echo", args.ours, w, args.seconds)
            rows[(w, "echo")] = (n, cpu / n, wall / n)
            print(f"{w:<12} {'C echo':<7} {n:>7} {cpu / n * 1e6:>11.1f} us "
                  f"{wall / n * 1e6:>12.1f} us", flush=True)
    print()
    print("| workload | Python server CPU/op | ours | ratio (Python/ours) | client wall/op Python | ours |")
    print("|---|---|---|---|---|---|")
    for w in workloads:
        p, o = rows[(w, "python")], rows[(w, "ours")]
        print(f"| {w} | {p[1] * 1e6:.1f} us | {o[1] * 1e6:.1f} us | {p[1] / o[1]:.1f}x | "
              f"{p[2] * 1e6:.1f} us | {o[2] * 1e6:.1f} us |")
    if ("ping", "echo") in rows:
        e = rows[("ping", "echo")]
        print(f"\nping floor (C echo of the same bytes): {e[1] * 1e6:.1f} us server CPU/op; "
              f"ours/echo = {rows[('ping', 'ours')][1] / e[1]:.2f}x")

    if args.callgrind:
        print("\nuser-space instructions per op (callgrind, (I(n2) - I(n1)) / (n2 - n1)):")
        print("| workload | Python | ours | ratio |")
        print("|---|---|---|---|")
        for w in [w for w in workloads if w in WORKLOADS or w == "connect"]:
            if w.startswith("1MiB") or w == "upload":
                n1, n2 = 20, 120
            elif w == "connect":
                n1, n2 = 20, 70
            else:
                n1, n2 = 200, 1200
            callgrind_row(w, n1, n2, lambda kind, n: callgrind_instructions(kind, args.ours, w, n))


if __name__ == "__main__":
    sys.exit(main())
