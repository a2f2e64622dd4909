#!/usr/bin/python3
"""rpyc-registryd with DNS-SD publishing off and on (issue 15), on a private dbus-daemon and
avahi-daemon (tests/e2e/avahi_support.py; needs root).

Measures, for N new servers (one UDP client, batches of 250 in flight, the same loop as
etcd_bench.py), the REGISTERs answered per second and the CPU time of the registry's loop thread
per REGISTER (/proc/PID/task/PID/schedstat), for new servers and for the same servers again (the
registrars' keepalives), with --dnssd off, on, and on with avahi-daemon stopped
by SIGSTOP (every D-Bus call of the publishing thread then hangs): replies must not wait on Avahi.
Past avahi-daemon's 1024 entry groups per client the rest are refused (warnings), which does not
matter here. With avahi-daemon running it first registers --visible servers and times until
`avahi-browse -p _rpyc._tcp` lists them all (at most 60 s).

Usage: /usr/bin/python3 bench/registry/dnssd_bench.py [--build build/dev] [-n 5000] [--visible 500]
       [--runs 3]
"""
import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/e2e"))

from avahi_support import PrivateAvahi  # noqa: E402


def register_rate(port, n, first_port):
    """Registers n distinct servers; returns (answered, seconds)."""
    from rpyc.core import brine
    start = time.monotonic()
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        for base in range(0, n, 250):
            batch = range(base, min(n, base + 250))
            for i in batch:
                s.sendto(brine.dump(("RPYC", "REGISTER", ((f"SVC{i}",), first_port + i))), ("127.0.0.1", port))
            for _ in batch:
                try:
                    s.recv(100)
                    answered += 1
                except socket.timeout:
                    break
    return answered, time.monotonic() - start


def browsable(avahi, n, limit=60.0):
    """Follows `avahi-browse -p _rpyc._tcp` until it has listed n services or `limit` seconds
    passed; returns (count, seconds)."""
    start = time.monotonic()
    proc = subprocess.Popen(["timeout", str(limit), "avahi-browse", "-p", "_rpyc._tcp"], env=avahi.env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = set()
    try:
        for line in proc.stdout:
            if line.startswith("+;"):
                seen.add(line)
                if len(seen) >= n:
                    break
    finally:
        proc.kill()
        proc.wait()
    return len(seen), time.monotonic() - start


def loop_cpu_ns(pid):
    """CPU time of the registry's loop thread (the main thread), in ns (schedstat)."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0])


def run(registryd, avahi, args, n, mode, n_visible):
    """One registry, n new servers; returns (REGISTERs/s, loop CPU us per REGISTER, browsable)."""
    port = 20000 + os.getpid() % 20000
    env = dict(avahi.env, NOTIFY_SOCKET="")
    # -t long: nothing is pruned; no per-source limits (one client sends everything).
    proc = subprocess.Popen([registryd, "-p", str(port), "-q", "-t", "3600", "--max-entries-per-source",
                             "1000000", "--register-rate-per-source", "0", "--reply-bytes-per-source", "0",
                             *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)  # up, and avahi-daemon done with the previous run's goodbyes
        if mode == "hung":
            avahi.avahi.send_signal(signal.SIGSTOP)
        visible = None
        if mode == "on":  # first a batch avahi can publish and a browser on this host can hold
            answered, secs = register_rate(port, n_visible, 60000)
            assert answered == n_visible, f"{answered} of {n_visible} answered"
            count, after = browsable(avahi, n_visible)
            visible = f"{count} of {n_visible} browsable after {after + secs:.1f} s"
        cpu = loop_cpu_ns(proc.pid)
        answered, secs = register_rate(port, n, 10000)
        cpu = loop_cpu_ns(proc.pid) - cpu
        assert answered == n, f"{answered} of {n} answered"
        refresh = loop_cpu_ns(proc.pid)  # the same servers again: the registrars' keepalives
        again, _ = register_rate(port, n, 10000)
        refresh = loop_cpu_ns(proc.pid) - refresh
        assert again == n, f"{again} of {n} refreshes answered"
        return n / secs, (cpu / n / 1000, refresh / n / 1000), visible
    finally:
        if mode == "hung":
            avahi.avahi.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=str(REPO / "build/dev"))
    p.add_argument("-n", type=int, default=5000)
    # Below avahi-daemon's defaults: 1024 entry groups per client (objects-per-client-max), and a
    # browser on the same host sees what its cache holds (cache-entries-max 4096: ~800 services).
    p.add_argument("--visible", type=int, default=500)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    registryd = str(Path(a.build) / "daemons/registryd/rpyc-registryd")
    with PrivateAvahi() as avahi:
        avahi.start_bus()
        avahi.start_avahi()
        for mode, args in (("off", []), ("on", ["--dnssd"]), ("hung", ["--dnssd"])):
            results = [run(registryd, avahi, args, a.n, mode, a.visible) for _ in range(a.runs)]
            rates = [r for r, _, _ in results]
            cpus = [c for _, (c, _), _ in results]
            refresh = [c for _, (_, c), _ in results]
            line = (f"dnssd {mode:4}: {a.n} new servers: answered/s median {statistics.median(rates):,.0f} "
                    f"({', '.join(f'{r:,.0f}' for r in rates)}); loop CPU per REGISTER median "
                    f"{statistics.median(cpus):.1f} us ({', '.join(f'{c:.1f}' for c in cpus)}), per refresh "
                    f"{statistics.median(refresh):.1f} us ({', '.join(f'{c:.1f}' for c in refresh)})")
            if mode == "on":
                line += "; " + ", ".join(v for _, _, v in results)
            print(line, flush=True)


if __name__ == "__main__":
    main()
