#!/usr/bin/python3
"""rpyc-classicd against the Python rpyc_classic, same client, same run (issue 4 benchmark).

    /usr/bin/python3 bench/classic/bench.py [--build build/release] [--quick] [--callgrind]

Server CPU time per request: the server's process CPU clock (all threads, plus reaped children)
read around each workload, with the server pinned to one CPU and the client to the other. The
floor is a raw C TCP echo of the same request bytes (bench/classic/echo.c). With --callgrind,
user-space instructions per request are counted under valgrind (repeatable on a noisy machine).
The client is Debian's rpyc 5.3.0 for every server (the 5.3.0 reference speaks only 5.x).
"""

import argparse
import ctypes
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = "/usr/bin/python3"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SERVER_CPU, CLIENT_CPU = "1", "0"

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def process_cpu_seconds(pid):
    """CPU time of process `pid` (every thread), from its CPU-time clock."""
    clock = ctypes.c_int()
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
        raise OSError("clock_getcpuclockid failed")
    ts = _Timespec()
    if _libc.clock_gettime(clock, ctypes.byref(ts)) != 0:
        raise OSError(ctypes.get_errno(), "clock_gettime")
    return ts.tv_sec + ts.tv_nsec / 1e9


def children_cpu_seconds(pid):
    """cutime + cstime of `pid` (reaped children; forking servers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def server_cpu(pid):
    return process_cpu_seconds(pid) + children_cpu_seconds(pid)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen")


# Each workload: (setup code run once, the code of one operation, ops for a normal run).
WORKLOADS = {
    "ping": ("", "conn.ping()", 5000),
    "getpid": ("", "conn.modules.os.getpid()", 3000),
    "eval": ("", "conn.eval('1+1')", 5000),
    "1MiB_down": ("conn.execute('import os; blob = os.urandom(1 << 20)'); f = conn.eval('lambda: blob')",
                  "f()", 100),
    "1MiB_up": ("data = os.urandom(1 << 20); g = conn.eval('lambda b: None')", "g(data)", 100),
    "connection": ("", None, 200),  # connect + first eval + close
}

WORKER = r"""
import os, sys, time, rpyc
port, setup, op, n, conns = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if op == "None":
    def run(k):
        for _ in range(k):
            c = rpyc.classic.connect("127.0.0.1", int(port)); c.eval("1"); c.close()
    run(5)
else:
    conn = rpyc.classic.connect("127.0.0.1", int(port))
    exec(setup)
    code = compile(op, "<op>", "eval")
    def run(k):
        for _ in range(k):
            eval(code)
    run(max(n // 20, 3))
print("ready", flush=True)
sys.stdin.readline()
t0 = time.perf_counter()
run(n)
print(time.perf_counter() - t0, flush=True)
"""

ECHO_WORKER = r"""
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
# The 5.x PING request frame that conn.ping() sends (520-char str), echoed back byte for byte.
data = ("abcdefghijklmnopqrstuvwxyz" * 20).encode()
payload = b"\x12\x51\x50\x11\x51\x11\x51\x10\x08\x0f" + len(data).to_bytes(4, "big") + data
frame = len(payload).to_bytes(4, "big") + b"\x00" + payload + b"\n"
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def run(k):
    for _ in range(k):
        s.sendall(frame)
        got = 0
        while got < len(frame):
            got += len(s.recv(65536))
run(200)
print("ready", flush=True)
sys.stdin.readline()
t0 = time.perf_counter()
run(n)
print(time.perf_counter() - t0, flush=True)
"""


def run_workers(pid, argvs):
    """Starts the workers (pinned to the client CPU), lets them warm up, then measures."""
    workers = [subprocess.Popen(["taskset", "-c", CLIENT_CPU, PYTHON, "-c", *a],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for a in argvs]
    for w in workers:
        line = w.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"worker failed: {line!r}")
    cpu0 = server_cpu(pid)
    for w in workers:
        w.stdin.write("go\n")
        w.stdin.flush()
    walls = [float(w.stdout.readline()) for w in workers]
    cpu1 = server_cpu(pid)
    for w in workers:
        w.stdin.close()
        w.wait()
    return cpu1 - cpu0, max(walls)


class Server:
    def __init__(self, name, cmd, port=None):
        self.name = name
        self.port = port or free_port()
        cmd = [c.replace("{port}", str(self.port)) for c in cmd]
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *cmd], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        if port == "stdout":
            self.port = int(self.proc.stdout.readline())
        wait_port(self.port, self.proc)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(server, workload, scale):
    setup, op, n = WORKLOADS[workload]
    n = max(int(n * scale), 5)
    cpu, wall = run_workers(server.proc.pid, [[WORKER, str(server.port), setup, str(op), str(n), "1"]])
    return cpu / n, wall / n


def measure_concurrent(server, clients, scale):
    n = max(int(1000 * scale), 20)
    argv = [WORKER, str(server.port), "", "conn.eval('1+1')", str(n), "1"]
    cpu, wall = run_workers(server.proc.pid, [argv] * clients)
    return cpu / (n * clients), wall / n


def measure_echo(echo, scale):
    n = max(int(5000 * scale), 50)
    cpu, wall = run_workers(echo.proc.pid, [[ECHO_WORKER, str(echo.port), str(n)]])
    return cpu / n, wall / n


def callgrind_instructions(cmd, port, workload, n):
    """User-space instructions per operation of the server started by `cmd`, under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
                                 *[c.replace("{port}", str(port)) for c in cmd]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, proc, timeout=300)
            setup, op, _ = WORKLOADS[workload]
            w = subprocess.Popen([PYTHON, "-c", WORKER, str(port), setup, str(op), str(n), "1"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert w.stdout.readline().strip() == "ready"
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL)
            w.stdin.write("go\n")
            w.stdin.flush()
            w.stdout.readline()
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL)
            w.stdin.close()
            w.wait()
            total = 0
            for f in Path(tmp).glob("cg.out.*"):
                for line in f.read_text(errors="replace").splitlines():
                    if line.startswith("summary:") or line.startswith("totals:"):
                        total = max(total, int(line.split()[1]))
                        break
            # Every dump after the zeroing counts the measured window; take the largest part.
            return total / n
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build/release"))
    ap.add_argument("--quick", action="store_true", help="fewer operations (a smoke run)")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions")
    args = ap.parse_args()
    build = Path(args.build)
    classicd = build / "daemons/classicd/rpyc-classicd"
    echo_bin = build / "bench/classic_echo"
    for p in (classicd, echo_bin):
        if not p.exists():
            sys.exit(f"{p} not built (cmake --preset release && cmake --build --preset release)")
    scale = 0.1 if args.quick else 1.0
    ours_cmd = [str(classicd), "-q", "-p", "{port}"]
    ref_cmd = [PYTHON, "/usr/bin/rpyc_classic", "-q", "-p", "{port}"]

    echo = Server("echo", [str(echo_bin)], port="stdout")
    floor = measure_echo(echo, scale)
    echo.stop()

    rows = []
    for name in list(WORKLOADS) + ["16_clients_eval"]:
        results = []
        for cmd in (ours_cmd, ref_cmd):
            s = Server(name, cmd)
            try:
                if name == "16_clients_eval":
                    results.append(measure_concurrent(s, 16, scale))
                else:
                    results.append(measure(s, name, scale))
            finally:
                s.stop()
        rows.append((name, *results))

    print(f"server CPU per operation (server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}); "
          f"raw C echo floor for ping: {floor[0] * 1e6:.1f} us CPU, {floor[1] * 1e6:.1f} us wall")
    print(f"{'workload':16} {'ours CPU':>11} {'python CPU':>11} {'CPU ratio':>9} "
          f"{'ours wall':>11} {'python wall':>11} {'wall ratio':>10}")
    for name, (oc, ow), (pc, pw) in rows:
        print(f"{name:16} {oc * 1e6:9.1f}us {pc * 1e6:9.1f}us {pc / oc:8.1f}x "
              f"{ow * 1e6:9.1f}us {pw * 1e6:9.1f}us {pw / ow:9.1f}x")
    ping_cpu = rows[0][1][0]
    print(f"ping CPU vs echo floor: {ping_cpu / floor[0]:.2f}x")

    if args.callgrind:
        n = 200 if args.quick else 1000
        print("\nuser-space instructions per operation (callgrind)")
        print(f"{'workload':16} {'ours':>12} {'python':>12} {'ratio':>8}")
        for name in ("ping", "getpid", "eval"):
            ours = callgrind_instructions(ours_cmd, free_port(), name, n)
            ref = callgrind_instructions(ref_cmd, free_port(), name, n)
            print(f"{name:16} {ours:12.0f} {ref:12.0f} {ref / ours:7.1f}x")


if __name__ == "__main__":
    main()
