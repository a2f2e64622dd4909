"""Differential end-to-end tests of hosting a user's rpyc.Service (rpyc-classicd --service).

The same service module (services/) is served by rpyc's own Python ThreadedServer and by
rpyc-classicd --service; the same client script runs against each, under the client generation
of the case, and the outcomes (a value's repr, or an exception's type and message without the
remote traceback) must be equal. The reference for rpyc 5 clients is python3-rpyc 5.3.0's server
(/usr/bin/python3); for rpyc 6 clients, the 6.x library's own server from $RPYC6_PATH (the two
wire generations differ, so each generation's reference is its own server).
"""

import json
import os
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

PYTHON = "/usr/bin/python3"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SERVICES = HERE / "services"
CLASSICD = Path(os.environ.get("RPYC_CLASSICD", REPO / "build/dev/daemons/classicd/rpyc-classicd"))
RPYC6_PATH = Path(os.environ.get("RPYC6_PATH", REPO.parent / "shared/clients/rpyc6"))
GENERATIONS = ["rpyc5", "rpyc6"]


def require_generation(gen):
    if gen == "rpyc6" and not (RPYC6_PATH / "rpyc" / "__init__.py").exists():
        pytest.skip(f"rpyc 6.x library not found at {RPYC6_PATH} (set RPYC6_PATH)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_env(gen):
    env = dict(os.environ)
    paths = [str(SERVICES)]
    if gen == "rpyc6":
        paths.insert(0, str(RPYC6_PATH))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


REFERENCE_SERVER = """\
import importlib, json, sys
import rpyc
from rpyc.utils.server import ThreadedServer
spec, port, config = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
module, _, name = spec.partition(':')
call = name.endswith('()')
obj = getattr(importlib.import_module(module), name[:-2] if call else name)
if call:
    obj = obj()
if 'safe_attrs' in config:
    config['safe_attrs'] = set(config['safe_attrs'])
print(rpyc.__version__, flush=True)
ThreadedServer(obj, hostname='127.0.0.1', port=port, protocol_config=config).start()
"""


def protocol_switch_value(value):
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set)):
        return ",".join(value)
    return str(value)


class Server:
    """One server of a service: the Python reference or rpyc-classicd."""

    def __init__(self, kind, gen, spec, config, tmp_path, extra_args=()):
        self.kind = kind
        self.port = free_port()
        self.logfile = tmp_path / f"{kind}-{gen}.log"
        self.outfile = tmp_path / f"{kind}-{gen}.out"
        if kind == "python":
            cmd = [PYTHON, "-c", REFERENCE_SERVER, spec, str(self.port), json.dumps(config)]
            env = python_env(gen)
        else:
            if not CLASSICD.exists():
                pytest.fail(f"daemon binary not found: {CLASSICD} (build it or set RPYC_CLASSICD)")
            cmd = [str(CLASSICD), "--host", "127.0.0.1", "-p", str(self.port),
                   "--logfile", str(self.logfile), "--service", spec, *extra_args]
            for key, value in config.items():
                cmd += ["--protocol", f"{key}={protocol_switch_value(value)}"]
            env = python_env("rpyc5")  # the daemon's interpreter imports Debian's rpyc
        with open(self.outfile, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"{kind} server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    pytest.fail(f"{kind} server did not listen within 20 s:\n{self.output()}")
                time.sleep(0.05)

    def output(self):
        text = self.outfile.read_text(errors="replace")
        if self.logfile.exists():
            text += self.logfile.read_text(errors="replace")
        return text

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if self.kind == "python" else signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


CLIENT_PRELUDE = """\
import json, os, sys, rpyc
assert rpyc.__version__.split('.')[0] == os.environ['RPYC_GEN'][-1], rpyc.__version__
REMOTE_TB = '\\n\\n========= Remote Traceback'

class ClientService(rpyc.Service):
    def exposed_hello(self):
        return 'hello from the client'

results = []

def attempt(fn):
    try:
        value = fn()
        results.append(['value', repr(value)])
    except Exception as e:
        results.append(['raise', type(e).__module__, type(e).__name__,
                        str(e).split(REMOTE_TB)[0]])

"""

CONNECT_TCP = """
c = rpyc.connect('127.0.0.1', int(os.environ['SERVER_PORT']), service=ClientService)
"""

CLIENT_EPILOGUE = """
c.close()
print(json.dumps(results))
"""


def run_client(gen, port, ops, timeout=60, setup="", root=True, connect=CONNECT_TCP):
    """Runs `ops` (client code that calls attempt(...)) against `port`, after `setup` (code run
    before the first request; `root` is c.root after it, unless `root` is false); the list of
    outcomes. `connect` is the code that makes the connection `c` (over TCP to `port` unless
    told otherwise)."""
    env = dict(os.environ, RPYC_GEN=gen, SERVER_PORT=str(port))
    env.pop("PYTHONPATH", None)
    if gen == "rpyc6":
        env["PYTHONPATH"] = str(RPYC6_PATH)
    script = (CLIENT_PRELUDE + textwrap.dedent(connect) + textwrap.dedent(setup) +
              ("\nroot = c.root\n" if root else "\n") + textwrap.dedent(ops) + CLIENT_EPILOGUE)
    p = subprocess.run([PYTHON, "-c", script], env=env, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"[{gen}] client exited {p.returncode}\nstdout:\n{p.stdout}\n"
                             f"stderr:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_against(kind, gen, spec, ops, tmp_path, config=None, extra_args=(), setup="",
                root=True):
    """Starts one server (`kind` "python" or "ours") of `spec`, runs `ops` against it, stops it;
    the outcomes."""
    require_generation(gen)
    server = Server(kind, gen, spec, dict(config or {}), tmp_path, extra_args)
    try:
        return run_client(gen, server.port, ops, setup=setup, root=root)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{kind} server output:\n{server.output()}") from None
    finally:
        server.stop()


def assert_same(python, ours):
    assert ours == python, (
        "outcomes differ:\n" + "\n".join(
            f"  {i}: python {p!r}\n     ours   {o!r}" for i, (p, o) in
            enumerate(zip(python, ours)) if p != o) +
        (f"\n  python {len(python)} outcomes, ours {len(ours)}" if len(python) != len(ours) else ""))


def differential(gen, spec, ops, tmp_path, config=None, extra_args=(), setup="", root=True):
    """Runs `ops` against the reference server and rpyc-classicd serving `spec`; asserts the
    same outcomes and returns them."""
    python = run_against("python", gen, spec, ops, tmp_path, config, (), setup, root)
    ours = run_against("ours", gen, spec, ops, tmp_path, config, extra_args, setup, root)
    assert_same(python, ours)
    return ours
