"""--register with a hosted service registers its aliases (CALCULATOR), as rpyc's server does:
rpyc.discover("CALCULATOR") and rpyc.connect_by_service("CALCULATOR") find it through
rpyc-registryd (UDP and TCP), with both client generations; the classic name SLAVE does not."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hosting_support import PYTHON, RPYC6_PATH, Server, require_generation  # noqa: E402
from registry_support import Daemon as Registry  # noqa: E402
from registry_support import free_port  # noqa: E402

CLIENT = """
import json, sys, time, rpyc
from rpyc.utils.registry import TCPRegistryClient, UDPRegistryClient
kind, rport, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cls = UDPRegistryClient if kind == 'UDP' else TCPRegistryClient
registrar = cls(ip='127.0.0.1', port=rport)
deadline = time.monotonic() + 15
while True:
    try:  # 6.x raises DiscoveryError where 5.3 returns nothing
        found = [tuple(a) for a in rpyc.discover('CALCULATOR', registrar=registrar)]
    except rpyc.utils.factory.DiscoveryError:
        found = []
    if ('127.0.0.1', port) in found or time.monotonic() > deadline:
        break
    time.sleep(0.2)
try:
    slave = [tuple(a) for a in rpyc.discover('SLAVE', registrar=registrar)]
except Exception as e:
    slave = type(e).__name__
c = rpyc.connect_by_service('CALCULATOR', registrar=registrar)
out = {'version': rpyc.__version__, 'found': ('127.0.0.1', port) in found,
       'slave': ('127.0.0.1', port) in slave if isinstance(slave, list) else slave,
       'add': c.root.add(20, 22), 'name': c.root.get_service_name()}
c.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["UDP", "TCP"])
def test_register_under_the_service_aliases(gen, kind, tmp_path):
    require_generation(gen)
    rport = free_port()
    registry = Registry(["-m", kind, "--host", "127.0.0.1"], port=rport)
    try:
        server = Server("ours", gen, "calc_service:CalculatorService", {}, tmp_path,
                        ["--register", "--registry-type", kind, "--registry-host", "127.0.0.1",
                         "--registry-port", str(rport)])
        try:
            env = dict(os.environ)
            env.pop("PYTHONPATH", None)
            if gen == "rpyc6":
                env["PYTHONPATH"] = str(RPYC6_PATH)
            p = subprocess.run([PYTHON, "-c", textwrap.dedent(CLIENT), kind, str(rport),
                                str(server.port)], env=env, capture_output=True, text=True,
                               timeout=60)
            assert p.returncode == 0, p.stderr + server.output()
            out = json.loads(p.stdout.strip().splitlines()[-1])
            assert out["version"].startswith("5.3" if gen == "rpyc5" else "6."), out
            assert out["found"] and out["slave"] in (False, "DiscoveryError"), out
            assert out["add"] == 42 and out["name"] == "CALCULATOR", out
        finally:
            assert server.stop() == 0
    finally:
        registry.stop()
