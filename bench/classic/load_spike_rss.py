#!/usr/bin/python3
"""RSS of rpyc-classicd around load spikes: the stress suite's 200 mixed clients x 50 requests
(tests/stress/load_client.py, both rpyc generations), ROUNDS times on one daemon; RSS at the start,
right after each round and SETTLE seconds later. With TRIM=gdb, malloc_trim(0) is then called in
the daemon through gdb (what a release by hand would give). One JSON line on stdout.

Usage: [ROUNDS=n] [SETTLE=s] [TRIM=gdb] [MALLOC_ARENA_MAX=n] load_spike_rss.py BINARY MODE [ARGS...]
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ["RPYC_CLASSICD"] = sys.argv[1]  # read by classic_support at import
sys.path.insert(0, str(ROOT / "tests" / "stress"))

import stress_support as ss  # noqa: E402


def main():
    mode = sys.argv[2]
    rounds = int(os.environ.get("ROUNDS", "1"))
    settle = float(os.environ.get("SETTLE", "3"))
    d = ss.classic_support.Daemon(Path(tempfile.mkdtemp()), extra_args=("-m", mode, *sys.argv[3:]))
    try:
        ss.wait_until(lambda: "goodbye (" in d.log(), 10)
        out = {"mode": mode, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX"),
               "start_kib": ss.rss_kib(d.pid)}
        for r in range(rounds):
            t0 = time.monotonic()
            res = ss.collect(ss.start_clients(d.port, 200, seed=1, requests=50), timeout=400)
            out[f"round{r}_seconds"] = round(time.monotonic() - t0, 1)
            out[f"round{r}_errors"] = res["error_count"]
            out[f"round{r}_after_kib"] = ss.rss_kib(d.pid)
            time.sleep(settle)
            out[f"round{r}_settled_kib"] = ss.rss_kib(d.pid)
        out["threads"] = ss.thread_count(d.pid)
        if os.environ.get("TRIM") == "gdb":
            subprocess.run(["gdb", "-p", str(d.pid), "-batch", "-ex", "call (int)malloc_trim(0)"],
                           capture_output=True, timeout=60)
            time.sleep(0.5)
            out["after_gdb_trim_kib"] = ss.rss_kib(d.pid)
        print(json.dumps(out))
    finally:
        d.stop()


if __name__ == "__main__":
    main()
