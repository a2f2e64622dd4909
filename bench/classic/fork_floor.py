#!/usr/bin/python3
"""The floor of a process per connection, beside rpyc-classicd --mode forking and rpyc_classic.

In one run:
 1. starts rpyc-classicd --mode forking, makes a warm-up connection, reads the parent's anonymous
    memory (/proc/PID/smaps_rollup) and its mappings, then measures connect + eval("1+1") + close
    in a loop: server CPU per connection (parent + reaped children), the children's page faults
    per connection (cminflt) and the parent's (minflt);
 2. the same loop against rpyc_classic -m forking (the reference);
 3. bench_fork_floor (bench/classic/fork_floor.cc) with that anonymous memory: fork + _exit with
    the child touching no page; touching as many pages as a real child faults (copy-on-write
    writes); and the same with a loopback TCP accept/connect/close per iteration.
Server and floor run on CPU 1, clients on CPU 0 (as classic_bench.py).

Usage: fork_floor.py [--ours PATH] [--floor PATH] [--seconds S] [--iterations N] [--huge]
"""
import argparse
import os
import re
import subprocess
import sys
import time

import rpyc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import classic_bench as cb  # noqa: E402


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def faults(pid):
    """(minflt, cminflt) of `pid`: its own minor faults and those of its reaped children."""
    f = stat_fields(pid)
    return int(f[7]), int(f[8])


def smaps_rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            m = re.match(r"(\w+):\s+(\d+) kB", line)
            if m:
                out[m.group(1)] = int(m.group(2))
    return out


def count_maps(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for _ in f)


def shared_libraries(pid):
    """The shared libraries mapped by `pid` (the dynamic loader and libc are the floor's too)."""
    libs = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            p = line.split()
            if len(p) > 5 and ".so" in p[5] and not re.search(r"/(ld-linux[^/]*|libc\.so\.6)$", p[5]):
                libs.add(p[5])
    return sorted(libs)


def parent_cpu_seconds(pid):
    """The process CPU clock of `pid` alone (its reaped children not included)."""
    return time.clock_gettime(((~pid) << 3) | 2)


def connect_loop(proc, port, seconds):
    """connect + eval + close for `seconds`:
    (n, server CPU s, parent's own CPU s, child faults, parent faults)."""
    c = rpyc.classic.connect("127.0.0.1", port)
    c.eval("1+1")
    c.close()
    time.sleep(0.2)
    f0, cpu0, own0 = faults(proc.pid), cb.process_cpu_seconds(proc.pid), parent_cpu_seconds(proc.pid)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        c = rpyc.classic.connect("127.0.0.1", port)
        assert c.eval("1+1") == 2
        c.close()
        n += 1
    time.sleep(0.2)  # the last child ends and is reaped
    f1, cpu1, own1 = faults(proc.pid), cb.process_cpu_seconds(proc.pid), parent_cpu_seconds(proc.pid)
    return n, cpu1 - cpu0, own1 - own0, (f1[1] - f0[1]) / n, (f1[0] - f0[0]) / n


def run_floor(floor, args):
    out = subprocess.run(["taskset", "-c", cb.SERVER_CPU, floor, *args], check=True,
                         capture_output=True, text=True).stdout
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", out)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", default=os.environ.get(
        "RPYC_CLASSICD", os.path.join(cb.ROOT, "build/release/daemons/classicd/rpyc-classicd")))
    ap.add_argument("--floor", default=os.path.join(cb.ROOT, "build/release/bench/bench_fork_floor"))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--huge", action="store_true", help="also a floor run with MADV_HUGEPAGE")
    ap.add_argument("--no-reference", action="store_true", help="skip rpyc_classic")
    args = ap.parse_args()
    cb.MODE[0] = "forking"
    os.sched_setaffinity(0, {int(cb.CLIENT_CPU)})

    with cb.server("ours", args.ours) as (proc, port):
        c = rpyc.classic.connect("127.0.0.1", port)
        c.eval("1+1")
        c.close()
        time.sleep(0.3)
        rollup, maps = smaps_rollup(proc.pid), count_maps(proc.pid)
        libs = shared_libraries(proc.pid)
        n, cpu, own, child_faults, parent_faults = connect_loop(proc, port, args.seconds)
    ours_us, parent_us = cpu / n * 1e6, own / n * 1e6
    ref_us = float("nan")
    if not args.no_reference:
        pn, pcpu, _ = cb.measure("python", args.ours, "connect", args.seconds)
        ref_us = pcpu / pn * 1e6

    anon = rollup.get("Anonymous", 0)
    print(f"rpyc-classicd parent after PrepareFork: Anonymous {anon} KiB, Rss {rollup.get('Rss')} "
          f"KiB, Private_Dirty {rollup.get('Private_Dirty')} KiB, {maps} mappings")
    print(f"rpyc-classicd per connection: {n} connections, child faults {child_faults:.0f}, "
          f"parent faults {parent_faults:.1f}")
    base = ["--total-anon-kib", str(anon), "--iterations", str(args.iterations)]
    with_libs = base + [a for lib in libs for a in ("--dlopen", lib)]
    rows = []
    zero = run_floor(args.floor, base)
    # A child that writes no page still faults a few (its stack, libc's data): counted in.
    writes = max(0, round(child_faults - zero["child_minflt"]))
    w = ["--child-writes", str(writes)]
    rows.append(("heap only; child touches 0 pages", zero))
    rows.append((f"heap only; child writes {writes} pages", run_floor(args.floor, base + w)))
    rows.append((f"heap only; child writes {writes} pages; + loopback TCP accept/connect/close",
                 run_floor(args.floor, base + w + ["--tcp"])))
    rows.append((f"daemon's {len(libs)} libraries + heap; child writes {writes} pages; + TCP",
                 run_floor(args.floor, with_libs + w + ["--tcp"])))
    if args.huge:
        rows.append((f"heap only, MADV_HUGEPAGE; child writes {writes} pages",
                     run_floor(args.floor, base + w + ["--huge"])))

    print()
    print("| per connection / iteration | server CPU | child faults | mappings | ref / this |")
    print("|---|---:|---:|---:|---:|")
    print(f"| rpyc_classic -m forking (connect, eval, close) | {ref_us:.0f} us | | | 1.0x |")
    print(f"| rpyc_classic / 5 (the 5x target) | {ref_us / 5:.0f} us | | | 5.0x |")
    print(f"| rpyc-classicd --mode forking (connect, eval, close) | {ours_us:.0f} us (parent "
          f"{parent_us:.0f}, children {ours_us - parent_us:.0f}) | "
          f"{child_faults:.0f} | {maps} | {ref_us / ours_us:.1f}x |")
    for name, r in rows:
        print(f"| floor: {name} | {r['cpu_us']:.0f} us (parent {r['self_us']:.0f}, children "
              f"{r['children_us']:.0f}) | {r['child_minflt']:.0f} | {r['maps']:.0f} | "
              f"{ref_us / r['cpu_us']:.1f}x |")


if __name__ == "__main__":
    sys.exit(main())
