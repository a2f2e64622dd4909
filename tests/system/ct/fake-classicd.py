#!/usr/bin/python3
# NOT our daemon. A stand-in with the issue-5 command-line surface (-c, --check-config, -m stdio,
# LISTEN_FDS, sd_notify, journal fields), built on Debian's rpyc 5.3.0 server, used ONLY to
# dry-run the classicd checks of ct/inside.sh before the real runtime exists:
#   RPYC_SYSTEM_FAKE_CLASSICD=1 tests/system/run.sh 070
# It proves the harness and that the shipped units' sandbox lets a Python interpreter serve;
# it proves nothing about rpyc-classicd. CI never sets that variable.
import os
import signal
import socket
import sys

args = sys.argv[1:]
if "--help" in args:
    print("  -c,--config TEXT\n  --check-config\n  -m,--mode TEXT  threaded|stdio")
    sys.exit(0)
if "--check-config" in args:
    sys.exit(0)
mode = args[args.index("-m") + 1] if "-m" in args else "threaded"

import rpyc  # noqa: E402
from rpyc.core import SlaveService  # noqa: E402
from rpyc.core.stream import SocketStream  # noqa: E402
from rpyc.utils.server import ThreadedServer  # noqa: E402


def journal(message, **fields):
    lines = ["MESSAGE=" + message, "SYSLOG_IDENTIFIER=rpyc-classicd", "RPYC_MODE=" + mode]
    lines += ["%s=%s" % kv for kv in fields.items()]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto("\n".join(lines).encode() + b"\n", "/run/systemd/journal/socket")
    except OSError:
        pass


def notify(text):
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(text.encode(), "\0" + path[1:] if path[0] == "@" else path)


def serve_one(sock):
    peer = "%s:%d" % sock.getpeername()[:2]
    journal("accepted " + peer, RPYC_PEER=peer)
    conn = rpyc.connect_stream(SocketStream(sock), SlaveService)
    try:
        conn.serve_all()
    finally:
        journal("goodbye " + peer, RPYC_PEER=peer)


inherited = int(os.environ.get("LISTEN_FDS", "0")) if os.environ.get("LISTEN_PID") == str(os.getpid()) else 0
if mode == "stdio":
    serve_one(socket.socket(fileno=0))
    sys.exit(0)


class Server(ThreadedServer):
    def _authenticate_and_serve_client(self, sock):
        peer = "%s:%d" % sock.getpeername()[:2]
        journal("accepted " + peer, RPYC_PEER=peer)
        try:
            super()._authenticate_and_serve_client(sock)
        finally:
            journal("goodbye " + peer, RPYC_PEER=peer)


srv = Server(SlaveService, hostname="127.0.0.1", port=0 if inherited else 18812)
if inherited:
    srv.listener.close()
    srv.listener = socket.socket(fileno=3)
signal.signal(signal.SIGHUP, lambda *_: notify("RELOADING=1\nREADY=1"))
signal.signal(signal.SIGTERM, lambda *_: (notify("STOPPING=1"), os._exit(0)))
notify("READY=1\nSTATUS=fake classicd serving (dry run of the harness)")
srv.start()
