#!/usr/bin/python3
"""Server CPU per connection (connect, eval("1+1"), close), split into user and system time from
/proc/PID/stat, for rpyc-classicd or the reference ("python"). Server on CPU 1, client on CPU 0.

Usage: connect_cpu_split.py BINARY|python CONNECTIONS [daemon switches...]
"""
import os
import signal
import socket
import subprocess
import sys
import time

import rpyc

binary, n = sys.argv[1], int(sys.argv[2])
extra = sys.argv[3:]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
if binary == "python":
    cmd = ["/usr/bin/python3", "/usr/bin/rpyc_classic", "-m", "threaded", "--host", "127.0.0.1", "-p", str(port), "-q"]
else:
    cmd = [binary, "--host", "127.0.0.1", "-p", str(port), "-q", *extra]
os.sched_setaffinity(0, {0})
p = subprocess.Popen(["taskset", "-c", "1", *cmd])
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", port)).close(); break
    except OSError: time.sleep(0.05)
c = rpyc.classic.connect("127.0.0.1", port); c.eval("1+1"); c.close()
def st():
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]), int(f[12])
u0, s0 = st(); t0 = time.monotonic()
for i in range(n):
    c = rpyc.classic.connect("127.0.0.1", port); assert c.eval("1+1") == 2; c.close()
time.sleep(0.3)
u1, s1 = st(); t = time.monotonic() - t0
tick = 1e6 / os.sysconf("SC_CLK_TCK")
print(f"{binary} {' '.join(extra)}: user {(u1-u0)*tick/n:.0f} us  sys {(s1-s0)*tick/n:.0f} us  total {((u1-u0)+(s1-s0))*tick/n:.0f} us /conn  wall {t/n*1e6:.0f} us")
p.send_signal(signal.SIGINT if binary == "python" else signal.SIGTERM); p.wait()
