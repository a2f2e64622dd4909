#!/usr/bin/python3
"""Registry benchmark: rpyc-registryd beside the reference rpyc_registry (and a raw C UDP echo as
the floor), all driven by the same client (registry_query_client) in the same run.

Measures, for QUERY over UDP and TCP:
  * queries per second (one outstanding request),
  * server CPU time per query (sum of /proc/PID/task/*/schedstat run time, ns), server pinned
    to CPU 0 and client to CPU 1,
  * user-space instructions per query (valgrind --tool=callgrind; two runs of different length,
    differenced so start-up cost cancels out),
and the server's RSS holding 100,000 registrations.

Usage: /usr/bin/python3 bench/registry/run_bench.py [--build build/release] [--quick]
"""
import argparse
import glob
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = "/usr/bin/python3"
PY_REGISTRY = "/usr/bin/rpyc_registry"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ns(pid):
    total = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        total += int(Path(f).read_text().split()[0])
    return total


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def brine_request(cmd, args):
    from rpyc.core import brine
    return brine.dump(("RPYC", cmd, args))


class Server:
    def __init__(self, name, cmd, port, udp, valgrind_out=None, stop_signal=signal.SIGTERM):
        self.name, self.port, self.udp, self.stop_signal = name, port, udp, stop_signal
        prefix = ["taskset", "-c", "0"]
        if valgrind_out:
            prefix += ["valgrind", "--tool=callgrind", f"--callgrind-out-file={valgrind_out}", "-q"]
        # SIG_DFL for SIGINT: a shell's background job starts with SIGINT ignored, and the
        # reference only stops (and callgrind only writes its profile) on KeyboardInterrupt.
        self.proc = subprocess.Popen(prefix + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.pid = self.proc.pid

    def stop(self):
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Bench:
    def __init__(self, build):
        self.client = build / "bench/registry/registry_query_client"
        self.ours = build / "daemons/registryd/rpyc-registryd"
        self.echo = build / "bench/registry/udp_echo"
        for p in (self.client, self.ours, self.echo):
            if not p.exists():
                sys.exit(f"{p} missing: cmake --preset release && cmake --build --preset release")

    def commands(self, kind, transport, port, quiet):
        if kind == "ours":
            # One client stands for many here (and 100,000 REGISTERs come from one address): the
            # per-source limits would measure themselves, so they are lifted.
            return [str(self.ours), "-m", transport, "-p", str(port), "--max-entries-per-source", "65536",
                    "--register-rate-per-source", "0", "--reply-bytes-per-source", "0",
                    *(["-q"] if quiet else [])]
        if kind == "python":
            return [PY, PY_REGISTRY, "-m", transport, "-p", str(port), *(["-q", "1"] if quiet else [])]
        return [str(self.echo), str(port)]

    def query(self, transport, port, count, check=True):
        out = subprocess.run(["taskset", "-c", "1", str(self.client), transport.lower(), str(port), str(count),
                              "BENCH"], capture_output=True, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(f"client failed: {out.stdout} {out.stderr}")
        n, seconds, failures = out.stdout.split()
        return int(n), float(seconds), int(failures)

    def start(self, kind, transport, quiet, valgrind_out=None):
        port = free_port()
        server = Server(kind, self.commands(kind, transport, port, quiet), port, transport == "UDP", valgrind_out,
                        signal.SIGINT if kind == "python" else signal.SIGTERM)
        deadline = time.time() + (120 if valgrind_out else 20)
        while time.time() < deadline:
            if self.query(transport, port, 1, check=False)[2] == 0:
                break
            time.sleep(0.2)
        else:
            server.stop()
            raise RuntimeError(f"{kind} {transport} did not start")
        if kind != "echo":  # one registered server, so a QUERY reply carries one entry
            if transport == "UDP":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(5)
                    s.sendto(brine_request("REGISTER", (("BENCH",), 18812)), ("127.0.0.1", port))
                    s.recv(100)
            else:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.send(brine_request("REGISTER", (("BENCH",), 18812)))
                    s.recv(100)
        return server

    def throughput(self, kind, transport, quiet, count):
        server = self.start(kind, transport, quiet)
        try:
            self.query(transport, server.port, min(200, count))  # warm-up
            before = cpu_ns(server.pid)
            n, seconds, _ = self.query(transport, server.port, count)
            cpu = cpu_ns(server.pid) - before
        finally:
            server.stop()
        return n / seconds, cpu / n / 1000.0

    def instructions(self, kind, transport, n1, n2):
        totals = []
        for n in (n1, n2):
            with tempfile.TemporaryDirectory() as d:
                out = os.path.join(d, "callgrind.out")
                server = self.start(kind, transport, True, valgrind_out=out)
                self.query(transport, server.port, n)
                server.stop()
                text = Path(out).read_text()
                line = next(l for l in text.splitlines() if l.startswith(("summary:", "totals:")))
                totals.append(int(line.split()[1]))
        return (totals[1] - totals[0]) / (n2 - n1)

    def rss_100k(self, kind):
        server = self.start(kind, "UDP", True)
        try:
            before = rss_kib(server.pid)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.05)
                for base in range(0, 100_000, 250):
                    for i in range(base, base + 250):
                        s.sendto(brine_request("REGISTER", ((f"SERVICE-{i:06d}",), 18000 + i % 1000)),
                                 ("127.0.0.1", server.port))
                    for _ in range(250):
                        try:
                            s.recv(100)
                        except socket.timeout:
                            break
            time.sleep(0.5)
            return before, rss_kib(server.pid)
        finally:
            server.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build/release"))
    ap.add_argument("--quick", action="store_true", help="fewer queries (smoke run)")
    args = ap.parse_args()
    b = Bench(Path(args.build))
    scale = 0.1 if args.quick else 1.0
    counts = {("ours", "UDP"): 40000, ("python", "UDP"): 8000, ("echo", "UDP"): 40000,
              ("ours", "TCP"): 10000, ("python", "TCP"): 4000}
    rows = []
    for transport in ("UDP", "TCP"):
        for kind, quiet in (("ours", True), ("ours", False), ("python", True), ("python", False),
                            ("echo", True)):
            if kind == "echo" and transport == "TCP":
                continue
            count = max(200, int(counts[(kind, transport)] * scale))
            qps, us = b.throughput(kind, transport, quiet, count)
            label = {"ours": "rpyc-registryd", "python": "rpyc_registry (5.3.0)", "echo": "raw C UDP echo"}[kind]
            if kind != "echo":
                label += " -q" if quiet else " (debug log)"
            rows.append((transport, label, kind, quiet, qps, us))
            print(f"{transport} {label}: {qps:,.0f} q/s, {us:.1f} us CPU/query", file=sys.stderr)
    instr = {}
    n1, n2 = (100, 300) if args.quick else (500, 1500)
    for transport in ("UDP", "TCP"):
        for kind in ("ours", "python"):
            instr[(kind, transport)] = b.instructions(kind, transport, n1, n2)
            print(f"{transport} {kind}: {instr[(kind, transport)]:,.0f} instructions/query", file=sys.stderr)
    rss = {kind: b.rss_100k(kind) for kind in ("ours", "python")}

    print("| Transport | Server | Queries/s | Server CPU/query (us) | User-space instructions/query |")
    print("|---|---|---:|---:|---:|")
    for transport, label, kind, quiet, qps, us in rows:
        ins = f"{instr[(kind, transport)]:,.0f}" if quiet and (kind, transport) in instr else ""
        print(f"| {transport} | {label} | {qps:,.0f} | {us:.1f} | {ins} |")
    print()
    for transport in ("UDP", "TCP"):
        ratio = instr[("python", transport)] / instr[("ours", transport)]
        print(f"* {transport}: {ratio:,.0f}x fewer user-space instructions per query than the reference.")
    ours_udp = next(r[5] for r in rows if r[0] == "UDP" and r[2] == "ours" and r[3])
    echo_udp = next(r[5] for r in rows if r[2] == "echo")
    print(f"* UDP server CPU per query: {ours_udp / echo_udp:.2f}x the raw C UDP echo.")
    for kind, (before, after) in rss.items():
        name = "rpyc-registryd" if kind == "ours" else "rpyc_registry"
        print(f"* RSS after 100,000 distinct registrations, {name}: {after / 1024:.1f} MiB "
              f"(idle {before / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
