"""One process of the registry storm: UDP QUERY and REGISTER (refresh) requests, encoded by the
real rpyc brine of the generation on sys.path, in windows of `window` datagrams, until `seconds`
have passed; every reply is checked. Past the registry's cap, REGISTERs of new names go out on a
second socket: by design they get no reply (daemons/registryd/README.md).

Input (JSON in argv[1]): port, index, seconds, names (SVC-0 .. SVC-<names-1> are registered,
SVC-k on port 10000 + k), window, overflow (new names per window). Output (JSON): the rpyc
version, requests sent and replies received per command, overflow REGISTERs sent and answered,
errors (first 20) and their count.
"""
import json
import random
import socket
import sys
import time
from collections import Counter

import rpyc
from rpyc.core import brine

H = "127.0.0.1"


def main():
    cfg = json.loads(sys.argv[1])
    port, index, window = cfg["port"], cfg["index"], cfg["window"]
    rng = random.Random(index)
    sent, answered = Counter(), Counter()
    errors, error_count = [], 0
    over_sent = 0
    main_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    main_sock.settimeout(2)
    over_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def error(msg):
        nonlocal error_count
        error_count += 1
        if len(errors) < 20:
            errors.append(msg)

    deadline = time.monotonic() + cfg["seconds"]
    while time.monotonic() < deadline:
        expected = Counter()  # replies this window must bring, as a multiset
        for j in range(window):
            k = rng.randrange(cfg["names"])
            if j % 2 == 0:
                req = brine.dump(("RPYC", "QUERY", (f"svc-{k}",)))
                expected[((H, 10000 + k),)] += 1
                sent["QUERY"] += 1
            else:
                req = brine.dump(("RPYC", "REGISTER", ((f"SVC-{k}",), 10000 + k)))
                expected["OK"] += 1
                sent["REGISTER"] += 1
            main_sock.sendto(req, (H, port))
        for j in range(cfg["overflow"]):
            over_sock.sendto(brine.dump(("RPYC", "REGISTER", ((f"OVER-{index}-{over_sent}",), 1))),
                             (H, port))
            over_sent += 1
        got = Counter()
        for _ in range(window):
            try:
                got[brine.load(main_sock.recv(65536))] += 1
            except socket.timeout:
                break
        for reply, n in got.items():
            answered["REGISTER" if reply == "OK" else "QUERY"] += n
        if got != expected:
            error(f"window: missing {dict(expected - got)}, unexpected {dict(got - expected)}")
    over_sock.settimeout(0.5)
    over_answered = 0
    try:
        while True:
            over_sock.recv(65536)
            over_answered += 1
    except socket.timeout:
        pass
    json.dump({"version": rpyc.__version__, "sent": sent, "answered": answered,
               "overflow_sent": over_sent, "overflow_answered": over_answered,
               "errors": errors, "error_count": error_count}, sys.stdout)


if __name__ == "__main__":
    main()
