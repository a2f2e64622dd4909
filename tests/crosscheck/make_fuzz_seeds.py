#!/usr/bin/python3
"""Writes the fuzzers' seed corpora from the golden vectors of docs/protocol.md, produced by the real
rpyc library (Debian's 5.3.0): brine values for brine_fuzz, message payloads of both
generations for message_fuzz (and brine_fuzz), frame streams for frame_fuzz, request sessions
for dispatch_fuzz, registry client datagrams for request_fuzz, and the shipped configuration
files plus command lines for config_fuzz.

Run from anywhere with /usr/bin/python3; it rewrites libcore/{brine,channel,protocol}/fuzz_seeds/,
libcore/protocol/dispatch_fuzz_seeds/, daemons/registryd/fuzz_seeds/ and
daemons/classicd/fuzz_seeds/.
"""

import hashlib
import io
import pathlib
import zlib

from rpyc.core import brine
from rpyc.core.channel import Channel

ROOT_DIR = pathlib.Path(__file__).resolve().parents[2]

VALUES = [
    None, True, False, NotImplemented, Ellipsis,
    0, -1, -48, 159, 160, -49, 255, 2**64, 2**64 - 1, -2**63, -(2**100), 10**300,
    b'', b'x', b'abcd', b'abcde', b'x' * 255, b'x' * 256,
    '', '\u00e9', 'abc', 'RPYC',
    (), (1,), (1, 2, (3, 4)), (1, (2, ('a',))), tuple(range(5)), tuple(range(300)),
    frozenset(), frozenset({1}), frozenset({1, 2}),
    slice(1, None, 2), 1.5, -0.0, float('inf'), float('nan'), 1 + 2j,
    ((1, ('builtins.list', 30, 40)), (4, ('rpyc.core.service.SlaveService', 1000, 2000))),
]


class Sink:
    """The stream side of a Channel: collects what is written."""
    MAX_IO_CHUNK = 64000

    def __init__(self):
        self.data = io.BytesIO()

    def write(self, data):
        self.data.write(data)


def frames(payloads, compress=True):
    sink = Sink()
    channel = Channel(sink, compress=compress)
    for p in payloads:
        channel.send(p)
    return sink.data.getvalue()


def message_payloads():
    """The golden messages of docs/protocol.md §3.3 in both generations."""
    v5 = [
        brine.dump((1, 0, (3, (1, ())))),
        brine.dump((1, 7, (2, (1, ())))),
        brine.dump((2, 3, (1, 2))),
        brine.dump((3, 4, 1)),
        brine.dump((1, 160, (1, (1, ('hi',))))),
        brine.dump((1, 6, (15, (2, ((3, ('builtins.list', 30, 40)), (1, 1)))))),
        brine.dump((1, 3, (7, (2, ((3, ('builtins.method', 10, 20)), (1, ('1+1',)), (1, ())))))),
        brine.dump((2, 0, (4, ('rpyc.core.service.SlaveService', 1000, 2000)))),
    ]
    v6 = [bytes([p[1] - 0x50]) + b'\x11' + p[2:] for p in v5]
    return v5 + v6


def v6(payload):
    """The 6.x form of a 5.x message payload (a one-byte message type, then (seq, args))."""
    return bytes([payload[1] - 0x50]) + b'\x11' + payload[2:]


# The objects dispatch_fuzz's in-memory object space lends (see dispatch_fuzz.cc).
ROOT = ('rpyc.core.service.SlaveService', 100, 1)
MODULES = ('rpyc.core.service.ModuleNamespace', 101, 2)
FUNC = ('builtins.function', 102, 3)
CLS = ('builtins.FakeClass', 103, 0)
INST = ('builtins.FakeClass', 103, 4)
PEER_LIST = ('builtins.list', 30, 40)


def val(x):
    return (1, x)


def ref(id_pack):  # one of the server's objects, sent back to it (LABEL_LOCAL_REF)
    return (3, id_pack)


def tup(*items):
    return (2, tuple(items))


def requests(*calls):
    """(handler, boxed) pairs as 5.x request payloads, numbered from seq 0."""
    return [brine.dump((1, seq, (h, boxed))) for seq, (h, boxed) in enumerate(calls)]


def dispatch_sessions():
    """Request sequences a classic client sends, against dispatch_fuzz's objects (5.x)."""
    basic = requests(
        (3, val(())),                                                   # GETROOT
        (4, tup(ref(ROOT), val('func'))),                               # GETATTR
        (7, tup(ref(FUNC), val((1, 'x', (2, 3))), val(()))),            # CALL, plain args
        (7, tup(ref(FUNC), tup(ref(ROOT), val(5)), val(()))),           # CALL, a ref in args
        (8, tup(ref(ROOT), val('cls'), val(()), val(()))),              # CALLATTR
        (15, tup(ref(FUNC), val(1))),                                   # DEL
        (15, tup(ref(ROOT), val(2))),
        (15, tup(ref(FUNC), val(1))),                                   # DEL of a released ref
        (2, val(())),                                                   # CLOSE
    )
    objects = requests(
        (3, val(())),
        (3, val(())),
        (4, tup(ref(ROOT), val('cls'))),
        (7, tup(ref(CLS), val(()), val(()))),
        (9, tup(ref(INST))),                                            # REPR
        (10, tup(ref(INST))),                                           # STR
        (12, tup(ref(INST))),                                           # HASH
        (13, tup(ref(ROOT))),                                           # DIR
        (11, tup(ref(ROOT), ref(ROOT), val('__eq__'))),                 # CMP
        (16, val(INST)),                                                # INSPECT
        (17, tup(ref(INST), val(10))),                                  # BUFFITER
        (14, tup(ref(INST))),                                           # PICKLE
        (6, tup(ref(ROOT), val('y'), val(5))),                          # SETATTR
        (4, tup(ref(ROOT), val('y'))),
        (5, tup(ref(ROOT), val('y'))),                                  # DELATTR
        (5, tup(ref(ROOT), val('y'))),
        (4, tup(ref(ROOT), val('stop'))),
        (4, tup(ref(ROOT), val('notify'))),
        (15, tup(ref(INST), val(5))),
        (15, tup(ref(ROOT), val(1))),
    )
    # GETATTR 'callback' makes the server call GETROOT on the client (seq 0 of its own): the
    # client serves a PING meanwhile, then replies; the second callback gets an exception.
    nested = requests((3, val(())), (4, tup(ref(ROOT), val('callback'))))
    nested += [
        brine.dump((1, 2, (1, val(('hi',))))),
        brine.dump((2, 0, (4, PEER_LIST))),
        brine.dump((1, 3, (4, tup(ref(ROOT), val('callback'))))),
        brine.dump((3, 1, ((('builtins', 'ValueError'), ('x',), (), 'tb\n')))),
        brine.dump((2, 99, val(None))),                                 # a reply nobody awaits
        brine.dump((1, 4, (15, tup(ref(ROOT), val(1))))),
    ]
    hostile = requests(
        (3, val(())),
        (99, val(())),                                                  # unknown handler
        (True, val(('x',))),                                            # handler True == PING
        (7, (9, ())),                                                   # unknown label
        (7, tup(ref(('builtins.int', 1, 2)), val(()), val(()))),        # ref never lent
        (7, tup(ref(FUNC), tup((4, PEER_LIST)), val(()))),              # a peer object
        (15, tup(ref(ROOT), val(-3))),
        (2, val((1,))),                                                 # CLOSE with arguments
    )
    hostile += [brine.dump((1, 9, 'not a pair')), b'']
    big = requests((3, val(())), (1, val(('x' * 5000,))))             # a compressed frame
    return [basic, objects, nested, hostile, big]


def dispatch_seeds():
    """dispatch_fuzz inputs: a mode byte (bit 0: payload list, bit 1: ServeAvailable, bit 2:
    compress the list), then the byte stream a client sends, or its payloads."""
    seeds = []
    for session in dispatch_sessions():
        for gen in (session, [v6(p) if p else p for p in session]):
            stream = frames(gen)
            seeds += [b'\x00' + stream, b'\x02' + stream]
            seeds += [b'\x01' + b'|FRAME|'.join(gen), b'\x07' + b'|FRAME|'.join(gen)]
    return seeds


def registry_seeds():
    """request_fuzz inputs: datagrams as rpyc's registry clients build them, each after a control
    byte (bits 0-1: peer host, bit 2: UDP limits, bits 3-7: seconds that pass before it)."""
    def dgram(control, value):
        return bytes([control]) + brine.dump(value)

    query = ('RPYC', 'QUERY', ('SLAVE',))
    register = ('RPYC', 'REGISTER', (('SLAVE', 'OTHER'), 18812))
    sessions = [
        [dgram(4, query)],
        [dgram(4, register), dgram(5, ('RPYC', 'QUERY', ('slave',))),
         dgram(4, ('RPYC', 'UNREGISTER', (18812,))), dgram(4, query)],
        [dgram(4, register), dgram(4, ('RPYC', 'LIST', ((None,),))),
         dgram(0, ('RPYC', 'LIST', (('127.0.0.1',),)))],
        [dgram(c, ('RPYC', 'REGISTER', (('S%d' % c,), 20000 + c))) for c in range(12)] +
        [dgram(0xf8, query), dgram(4, ('RPYC', 'QUERY', ('S3',)))],
        [dgram(2, ('RPYC', 'REGISTER', (('UNIX',), '/run/rpyc.sock'))),
         dgram(6, ('RPYC', 'QUERY', (b'UNIX',))), dgram(6, ('RPYC', 'query', ('unix',)))],
    ]
    return [b'|REQ|'.join(s) for s in sessions]


def config_seeds():
    """config_fuzz inputs: a mode byte (bit 0: rpyc-registryd, bit 1: also as -c FILE), the TOML
    text, then NUL-separated arguments."""
    classicd = (ROOT_DIR / 'etc/rpyc/rpyc-classicd.toml').read_bytes()
    registryd = (ROOT_DIR / 'etc/rpyc-registryd.toml').read_bytes()
    classic_args = [
        ['--mode', 'threadpool', '--threads', '4', '-p', '18812', '--host', '::1', '--ipv6'],
        ['--register', '--registry-type', 'TCP', '--registry-host', '127.0.0.1', '-q'],
        ['--ssl-keyfile', 'k.pem', '--ssl-certfile', 'c.pem', '--ssl-cafile', 'ca.pem'],
        ['-m', 'FORKING', '--max-connections=10', '--idle-timeout', '30', '--log', 'stderr'],
        ['--unix-socket', '/run/rpyc.sock', '--unix-socket-mode', '0660', '--help'],
    ]
    registry_args = [
        ['-m', 'both', '-p', '18811', '-t', '60', '-l', '--max-entries', '100'],
        ['--listing=false', '-6', '--log', 'journal', '--version'],
    ]
    def seed(mode, toml, args):
        return bytes([mode]) + toml + b''.join(b'\0' + a.encode() for a in args)

    seeds = [seed(0, classicd, []), seed(2, classicd, []), seed(1, registryd, []),
             seed(3, registryd, [])]
    seeds += [seed(0, b'', a) for a in classic_args] + [seed(2, classicd, classic_args[0])]
    seeds += [seed(1, b'', a) for a in registry_args] + [seed(3, registryd, registry_args[0])]
    seeds += [seed(0, b'port = 70000\nmode = "x"\n[table]\nkey = 1\n', []),
              seed(1, b'timeout = "60"\nlisting = 1\n', [])]
    return seeds


def write(directory, blobs):
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob('seed-*'):
        old.unlink()
    for blob in blobs:
        name = 'seed-' + hashlib.sha1(blob).hexdigest()[:16]
        (directory / name).write_bytes(blob)


def main():
    write(ROOT_DIR / 'libcore/brine/fuzz_seeds', [brine.dump(v) for v in VALUES] + message_payloads())
    msgs = message_payloads()
    write(ROOT_DIR / 'libcore/protocol/fuzz_seeds', msgs)
    text = b'the quick brown fox jumps over the lazy dog ' * 100
    z = zlib.compress(b'hello', 9)
    streams = [frames([m]) for m in msgs]
    streams += [
        frames(msgs),                                  # many frames in one read
        frames([b'']),                                 # empty frame
        frames([text]),                                # compressed (flag 1)
        frames([text], compress=False),                # large raw frame
        frames([text, msgs[0], b'', text[:3001]]),
        len(z).to_bytes(4, 'big') + b'\x07' + z + b'X',  # flag 7, wrong trailer: accepted
    ]
    # frame_fuzz reads its first byte as the split point, so each stream gets one in front.
    write(ROOT_DIR / 'libcore/channel/fuzz_seeds',
          [bytes([i * 37 % 256]) + s for i, s in enumerate(streams)])
    write(ROOT_DIR / 'libcore/protocol/dispatch_fuzz_seeds', dispatch_seeds())
    write(ROOT_DIR / 'daemons/registryd/fuzz_seeds', registry_seeds())
    write(ROOT_DIR / 'daemons/classicd/fuzz_seeds', config_seeds())


if __name__ == '__main__':
    main()
