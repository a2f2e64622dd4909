"""A throw-away etcd for the registry's e2e tests (docs: /work/shared/DISCOVERY.md recipes): its own
data dir, free loopback ports, --unsafe-no-fsync, output to a log file; killed at the end. Nothing
depends on a system etcd service."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from registry_support import free_port

ETCD = Path("/usr/bin/etcd")
ETCDCTL = Path("/usr/bin/etcdctl")


def require_etcd():
    if not ETCD.exists() or not ETCDCTL.exists():
        pytest.skip("etcd-server/etcd-client are not installed (.ci/setup installs them)")


class Etcd:
    """One member (or, with `cluster`, one of several: see Cluster) on 127.0.0.1."""

    def __init__(self, name="t", data_dir=None, client_port=None, peer_port=None, cluster=None,
                 token=None, fast=False, tls_dir=None):
        require_etcd()
        self.name = name
        self.owned_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="etcd-")
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.cluster = cluster or f"{name}=http://127.0.0.1:{self.peer_port}"
        self.token = token
        self.fast = fast
        self.tls_dir = tls_dir  # https with client certificates (make_certificates)
        self.log_path = self.data_dir.rstrip("/") + ".log"
        self.proc = None

    @property
    def url(self):
        return f"{'https' if self.tls_dir else 'http'}://127.0.0.1:{self.client_port}"

    def start(self, wait=True):
        curl = self.url
        purl = f"http://127.0.0.1:{self.peer_port}"
        args = [str(ETCD), "--name", self.name, "--data-dir", os.path.join(self.data_dir, "data"),
                "--unsafe-no-fsync", "--listen-client-urls", curl, "--advertise-client-urls", curl,
                "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
                "--initial-cluster", self.cluster]
        if self.token:
            args += ["--initial-cluster-token", self.token]
        if self.fast:
            args += ["--heartbeat-interval", "50", "--election-timeout", "500"]
        if self.tls_dir:
            t = self.tls_dir
            args += ["--cert-file", f"{t}/server.pem", "--key-file", f"{t}/server.key",
                     "--trusted-ca-file", f"{t}/ca.pem", "--client-cert-auth"]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_healthy()
        return self

    def healthy(self):
        context = None
        if self.tls_dir:
            import ssl
            context = ssl.create_default_context(cafile=f"{self.tls_dir}/ca.pem")
            context.load_cert_chain(f"{self.tls_dir}/client.pem", f"{self.tls_dir}/client.key")
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1, context=context) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def wait_healthy(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"etcd exited: {Path(self.log_path).read_text()[-2000:]}")
            if self.healthy():
                return
            time.sleep(0.1)
        raise AssertionError(f"etcd not healthy within {timeout} s: "
                             f"{Path(self.log_path).read_text()[-2000:]}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def ctl(self, *args, endpoints=None):
        tls = []
        if self.tls_dir:
            t = self.tls_dir
            tls = ["--cacert", f"{t}/ca.pem", "--cert", f"{t}/client.pem", "--key", f"{t}/client.key"]
        out = subprocess.run([str(ETCDCTL), "--endpoints", endpoints or self.url, *tls, *args],
                             env=dict(os.environ, ETCDCTL_API="3"), capture_output=True, text=True,
                             timeout=10)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def close(self):
        self.kill()
        if self.owned_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            if os.path.exists(self.log_path):
                os.unlink(self.log_path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def get_prefix_json(etcd, prefix):
    """{key: (value, lease)} of every key under `prefix`, through etcdctl."""
    import base64
    data = json.loads(etcd.ctl("get", "--prefix", prefix, "-w", "json"))
    out = {}
    for kv in data.get("kvs", []):
        out[base64.b64decode(kv["key"]).decode()] = (base64.b64decode(kv["value"]).decode(),
                                                     kv.get("lease", 0))
    return out


def make_certificates(directory):
    """A CA, a server certificate for 127.0.0.1 (serverAuth and clientAuth: etcd's gateway presents
    it to its own gRPC port) and a client certificate, made with the openssl tool."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    script = ("set -e; k='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';"
              " openssl req -x509 $k -keyout ca.key -out ca.pem -days 2 -subj /CN=rpyc-test-ca;"
              " for n in server client; do"
              "  openssl req $k -keyout $n.key -out $n.csr -subj /CN=$n;"
              "  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
              "   -extfile $n.ext -out $n.pem;"
              " done")
    subprocess.run(["bash", "-c", script], cwd=d, check=True, capture_output=True, timeout=30)
    return str(d)
