#!/usr/bin/python3
"""Writes the fuzzers' seed corpora from the golden vectors of PROTOCOL.md, produced by the real
rpyc library (Debian's 5.3.0): brine values for brine_fuzz, message payloads of both
generations for message_fuzz (and brine_fuzz), frame streams for frame_fuzz.

Run from anywhere with /usr/bin/python3; it rewrites libcore/{brine,channel,protocol}/fuzz_seeds/.
"""

import hashlib
import io
import pathlib
import zlib

from rpyc.core import brine
from rpyc.core.channel import Channel

ROOT = pathlib.Path(__file__).resolve().parents[2]

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
    """The golden messages of PROTOCOL.md §3.3 in both generations."""
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


def write(directory, blobs):
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob('seed-*'):
        old.unlink()
    for blob in blobs:
        name = 'seed-' + hashlib.sha1(blob).hexdigest()[:16]
        (directory / name).write_bytes(blob)


def main():
    write(ROOT / 'libcore/brine/fuzz_seeds', [brine.dump(v) for v in VALUES] + message_payloads())
    msgs = message_payloads()
    write(ROOT / 'libcore/protocol/fuzz_seeds', msgs)
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
    write(ROOT / 'libcore/channel/fuzz_seeds',
          [bytes([i * 37 % 256]) + s for i, s in enumerate(streams)])


if __name__ == '__main__':
    main()
