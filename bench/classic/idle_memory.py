#!/usr/bin/python3
"""Memory per idle connection: rpyc-classicd beside the Python rpyc_classic, same run.

Opens N client connections (each makes one eval, then stays idle) and reports the server's memory
growth per connection: PSS summed over the server and its children (/proc/PID/smaps_rollup), so
forking's shared copy-on-write pages are counted once, not per child. rpyc_classic has no
threadpool mode; it runs threaded then.

Usage: idle_memory.py [--ours PATH] [--clients N] [--mode threaded|forking|threadpool]
"""
import argparse
import os
import resource
import signal
import socket
import subprocess
import time

import rpyc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pss_kib(pid):
    """PSS of `pid` and all its descendants, in KiB."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as f:
                pids += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return total


def measure(cmd, port, clients):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                c = rpyc.classic.connect("127.0.0.1", port)
                c.eval("1+1")
                c.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        time.sleep(0.5)
        base = pss_kib(proc.pid)
        conns = []
        for _ in range(clients):
            c = rpyc.classic.connect("127.0.0.1", port)
            c.eval("1+1")
            conns.append(c)
        time.sleep(1.0)
        grown = pss_kib(proc.pid) - base
        for c in conns:
            c.close()
        return grown / clients
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", default=os.environ.get(
        "RPYC_CLASSICD", os.path.join(ROOT, "build/release/daemons/classicd/rpyc-classicd")))
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--mode", default="threaded", choices=["threaded", "forking", "threadpool"])
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * args.clients + 256), hard))
    py_mode = "forking" if args.mode == "forking" else "threaded"
    rows = {}
    for kind in ("python", "ours"):
        port = free_port()
        if kind == "python":
            cmd = ["/usr/bin/python3", "/usr/bin/rpyc_classic", "-m", py_mode, "-p", str(port),
                   "-q"]
        else:
            cmd = [args.ours, "-m", args.mode, "-p", str(port), "-q",
                   "--max-connections", str(args.clients + 10),
                   # every client comes from 127.0.0.1: lift the per-peer cap (64 by default)
                   "--max-connections-per-peer", "0"]
        rows[kind] = measure(cmd, port, args.clients)
        print(f"{kind:<7} {args.mode if kind == 'ours' else py_mode:<10} {args.clients} idle "
              f"clients: {rows[kind]:8.1f} KiB PSS per connection", flush=True)
    print(f"ratio (Python/ours): {rows['python'] / max(rows['ours'], 0.1):.1f}x")


if __name__ == "__main__":
    main()
