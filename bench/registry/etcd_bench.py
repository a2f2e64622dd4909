#!/usr/bin/python3
"""rpyc-registryd with etcd sharing on and off (issue 15), on a throw-away etcd on loopback.

Measures, for UDP QUERY with one registered server (the same client and method as run_bench.py):
  * server CPU per query and user-space instructions per query (callgrind, differenced), with
    etcd off, on (the name known locally only: the cached path), and on with the name also
    mirrored from another registry (the merged path, built per query);
and the REGISTER rate that reaches etcd: N distinct servers registered as fast as the registry
answers, timed until etcd holds their N keys.

Usage: /usr/bin/python3 bench/registry/etcd_bench.py [--build build/release] [--quick]
       /usr/bin/python3 bench/registry/etcd_bench.py --register-only [--servers N] [--rounds R]
"""
import argparse
import base64
import json
import socket
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests/e2e"))

from etcd_support import Etcd  # noqa: E402
from run_bench import REPO, Bench, brine_request, cpu_ns  # noqa: E402


class EtcdBench(Bench):
    def __init__(self, build):
        super().__init__(build)
        self.extra = []

    def commands(self, kind, transport, port, quiet):
        return super().commands(kind, transport, port, quiet) + self.extra


def count_keys(etcd, prefix):
    """The number of keys under `prefix`, from the gateway (etcdctl 3.4 has no --count-only)."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps({"key": base64.b64encode(prefix.encode()).decode(),
                       "range_end": base64.b64encode(end.encode()).decode(), "count_only": True})
    with urllib.request.urlopen(etcd.url + "/v3/kv/range", body.encode(), timeout=5) as r:
        return int(json.loads(r.read()).get("count", 0))


def register_rate(bench, etcd, n):
    server = bench.start("ours", "UDP", True)
    try:
        cpu_before = cpu_ns(server.pid), cpu_ns(etcd.proc.pid)
        start = time.monotonic()
        answered = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            for base in range(0, n, 250):
                for i in range(base, min(n, base + 250)):
                    s.sendto(brine_request("REGISTER", (("RATE",), 10000 + i)), ("127.0.0.1", server.port))
                for _ in range(base, min(n, base + 250)):
                    try:
                        s.recv(100)
                        answered += 1
                    except socket.timeout:
                        break
        replied = time.monotonic() - start
        deadline = time.monotonic() + 120
        while count_keys(etcd, "/rpyc/svc/RATE/") < answered and time.monotonic() < deadline:
            time.sleep(0.05)
        stored = count_keys(etcd, "/rpyc/svc/RATE/")
        total = time.monotonic() - start
        cpu = [(cpu_ns(p) - b) / 1e9 for p, b in zip((server.pid, etcd.proc.pid), cpu_before)]
        return answered, replied, stored, total, cpu
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build/release"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="alternated runs per configuration")
    ap.add_argument("--register-only", action="store_true", help="only the REGISTER rate, --rounds times")
    ap.add_argument("--servers", type=int, default=0, help="distinct servers REGISTERed (default 20,000)")
    args = ap.parse_args()
    b = EtcdBench(Path(args.build))
    if args.register_only:
        n = args.servers or 20000
        for _ in range(args.rounds):
            with Etcd() as etcd:  # a fresh etcd each round
                b.extra = ["--etcd-endpoints", etcd.url, "--registry-id", "bench"]
                report_register(*register_rate(b, etcd, n))
        return
    count = 4000 if args.quick else 40000
    with Etcd() as etcd:
        configs = {
            "etcd off": [],
            "etcd on": ["--etcd-endpoints", etcd.url, "--registry-id", "bench"],
        }
        cpu = {name: [] for name in configs}
        for _ in range(args.rounds):  # alternated, so that load from elsewhere hits each alike
            for name, extra in configs.items():
                b.extra = extra
                cpu[name].append(b.throughput("ours", "UDP", True, count)[1])
        # The same name mirrored from another registry: the merged path.
        value = {"host": "10.9.9.9", "port": 1, "aliases": ["BENCH"], "site": "", "registry-id": "other"}
        etcd.ctl("put", "/rpyc/svc/BENCH/10.9.9.9:1/other", json.dumps(value))
        b.extra = configs["etcd on"]
        cpu["etcd on, name mirrored"] = [b.throughput("ours", "UDP", True, count)[1] for _ in range(args.rounds)]
        instr = {}
        n1, n2 = (100, 300) if args.quick else (500, 1500)
        for name, extra in [("etcd off", []), ("etcd on, name mirrored", configs["etcd on"])]:
            b.extra = extra
            instr[name] = b.instructions("ours", "UDP", n1, n2)
        etcd.ctl("del", "/rpyc/svc/BENCH/10.9.9.9:1/other")
        b.extra = configs["etcd on"]
        instr["etcd on"] = b.instructions("ours", "UDP", n1, n2)
        n = 2000 if args.quick else 20000
        register = register_rate(b, etcd, n)

    print("| UDP QUERY, rpyc-registryd -q | Server CPU/query (us), median of runs | Instructions/query |")
    print("|---|---:|---:|")
    for name in ("etcd off", "etcd on", "etcd on, name mirrored"):
        runs = ", ".join(f"{v:.1f}" for v in cpu[name])
        print(f"| {name} | {statistics.median(cpu[name]):.1f} ({runs}) | {instr[name]:,.0f} |")
    print()
    report_register(*register)


def report_register(answered, replied, stored, total, cpu):
    print(f"* REGISTER: {answered:,} distinct servers answered in {replied:.2f} s; {stored:,} keys in etcd "
          f"after {total:.2f} s: {stored / total:,.0f} registrations/s reach etcd "
          f"(CPU: rpyc-registryd {cpu[0]:.2f} s, etcd {cpu[1]:.2f} s).", flush=True)


if __name__ == "__main__":
    main()
