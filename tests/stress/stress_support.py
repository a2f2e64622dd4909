"""Support for the load, soak and registry storm tests: the form (short or long), client process
fan-out per rpyc generation, and /proc readings of the daemon (RSS, fds, children, zombies).

RPYC_STRESS=long selects the long form (the full figures of issue 7); anything else, or unset,
the short form that CI runs. The daemons come from $RPYC_CLASSICD / $RPYC_REGISTRYD like the
end-to-end tests (tests/e2e/classic/classic_support.py, tests/e2e/registry_support.py).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "e2e" / "classic"), str(HERE.parent / "e2e")]

import classic_support  # noqa: E402  (the classic daemon wrapper of the e2e tests)
from registry_support import wait_until  # noqa: E402,F401  (used by the tests through here)

PYTHON = "/usr/bin/python3"
RPYC6_PATH = classic_support.RPYC6_PATH
LONG = os.environ.get("RPYC_STRESS", "short") == "long"
FORM = "long" if LONG else "short"

# The figures of each form. Short: what CI runs in its budget; long: issue 7's numbers.
LOAD_CLIENTS = 200                                # connections at once, half per generation
LOAD_REQUESTS = 1000 if LONG else 50              # mixed requests per connection
SOAK_SECONDS = 600 if LONG else 60
SOAK_WARMUP = 60 if LONG else 15                  # RSS samples before this are not judged
SOAK_CONNECTIONS = 16                             # at once, reconnecting every SOAK_BATCH
SOAK_BATCH = 40
STORM_PROCESSES = 8 if LONG else 4              # UDP clients, for 120 s (long) or 25 s
STORM_CAP = 20_000 if LONG else 4_000             # --max-entries
STORM_OVERFLOW = 5 if LONG else 1                 # new names past the cap per window of 8

# All figures measured in this session, printed at the end (conftest.py) and written to
# $RPYC_STRESS_REPORT as JSON when set.
FIGURES = []


def record(name, **figures):
    FIGURES.append({"test": name, "form": FORM, **figures})


def generations():
    gens = ["rpyc5"]
    if (RPYC6_PATH / "rpyc" / "__init__.py").exists():
        gens.append("rpyc6")
    elif os.environ.get("RPYC_STRESS_REQUIRE_RPYC6") == "1":
        pytest.fail(f"rpyc 6.x client library not found at {RPYC6_PATH}")
    return gens


def client_env(gen):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if gen == "rpyc6":
        env["PYTHONPATH"] = str(RPYC6_PATH)
    return env


def start_clients(port, connections, seed, **work):
    """Starts load_client.py processes: `connections` at once, split evenly between the rpyc
    generations, at most 25 threads (connections) per process. `work` is requests=N, or
    seconds=S and batch=B (soak). Returns the running processes."""
    gens = generations()
    procs = []
    per_gen = connections // len(gens)
    for g, gen in enumerate(gens):
        left = per_gen + (connections % len(gens) if g == 0 else 0)
        while left > 0:
            threads = min(25, left)
            left -= threads
            cfg = dict(port=port, threads=threads, seed=seed * 100 + len(procs), **work)
            p = subprocess.Popen([PYTHON, str(HERE / "load_client.py"), json.dumps(cfg)],
                                 env=client_env(gen), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            p.gen = gen
            procs.append(p)
    return procs


def collect(procs, timeout):
    """Waits for load_client.py processes; returns their merged results."""
    merged = {"counts": {}, "errors": [], "error_count": 0, "latencies_us": [], "pids": set(),
              "connections": 0, "versions": set()}
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"clients still running after {timeout} s")
        if p.returncode != 0 or not out:
            merged["error_count"] += 1
            merged["errors"].append(f"[{p.gen}] client process exited {p.returncode}: {err[-2000:]}")
            continue
        r = json.loads(out)
        merged["versions"].add(r["version"])
        assert r["version"].split(".")[0] == p.gen[-1], (r["version"], p.gen)
        for k, v in r["counts"].items():
            merged["counts"][k] = merged["counts"].get(k, 0) + v
        merged["errors"] += [f"[{p.gen}] {e}" for e in r["errors"]]
        merged["error_count"] += r["error_count"]
        merged["latencies_us"] += r["latencies_us"]
        merged["pids"].update(r["pids"])
        merged["connections"] += r["connections"]
    return merged


def percentile(sorted_values, q):
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


# --- /proc readings ---------------------------------------------------------------------------

def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def children(pid):
    """{child pid: state letter} of the direct children of `pid`."""
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            kids[int(entry)] = fields[0]
    return kids


def diagnose(daemon):
    """What a stuck daemon is doing: connection lines in its log, its threads, their stacks."""
    log = daemon.log()
    pid = daemon.pid
    lines = [f"welcome: {log.count('welcome (')}, goodbye: {log.count('goodbye (')}",
             f"threads: {len(os.listdir(f'/proc/{pid}/task'))}, fds: {fd_count(pid)}"]
    gdb = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 12"],
                         capture_output=True, text=True, timeout=60) if Path("/usr/bin/gdb").exists() else None
    if gdb:
        lines.append(gdb.stdout[-20000:])
    return "\n".join(lines)
