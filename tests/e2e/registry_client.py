"""Runs registry-client operations with whichever rpyc is on sys.path (5.3.0 or 6.x).

Reads a JSON list of operations on stdin, prints a JSON object {"version": ..., "results": [...]}.
Each operation is [op, transport, host, port, *args]:
  ["register", "UDP", "127.0.0.1", 18811, ["MY"], 18861] -> bool
  ["discover", "TCP", "127.0.0.1", 18811, "MY"]          -> list of [host, port]
  ["rpyc.discover", "UDP", "127.0.0.1", 18811, "MY"]     -> the same through rpyc.discover()
                                                            ([] for its DiscoveryError)
  ["list", "UDP", "127.0.0.1", 18811, null]               -> list of names, or null
  ["unregister", "UDP", "127.0.0.1", 18811, 18861]        -> null
  ["sleep", null, null, null, 0.5]                         -> null
UDP over IPv6 when the host contains ':'.
"""
import json
import sys
import time

import rpyc
from rpyc.utils.registry import TCPRegistryClient, UDPRegistryClient


def client(transport, host, port):
    if transport == "UDP":
        return UDPRegistryClient(ip=host, port=port, timeout=2, ipv6=":" in host)
    return TCPRegistryClient(host, port=port, timeout=2)


def plain(value):
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


def main():
    results = []
    for op, transport, host, port, *args in json.load(sys.stdin):
        if op == "sleep":
            time.sleep(args[0])
            results.append(None)
            continue
        c = client(transport, host, port)
        if op == "register":
            results.append(c.register(tuple(args[0]), args[1]))
        elif op == "discover":
            results.append(plain(c.discover(args[0])))
        elif op == "rpyc.discover":
            try:
                results.append(plain(rpyc.discover(args[0], registrar=c)))
            except rpyc.utils.factory.DiscoveryError:
                results.append([])
        elif op == "list":
            results.append(plain(c.list(args[0]) if args else c.list()))
        elif op == "unregister":
            c.unregister(args[0])
            results.append(None)
        else:
            raise SystemExit(f"unknown op {op}")
    print(json.dumps({"version": rpyc.__version__, "results": results}))


if __name__ == "__main__":
    main()
