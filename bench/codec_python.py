#!/usr/bin/python3
"""The Python side of bench/codec.sh: rpyc's brine.dump/load and Channel send/recv on the same
values as codec_bench.cc. Prints JSON: {name: seconds per operation}."""

import io
import json
import sys
import time

from rpyc.core import brine
from rpyc.core.channel import Channel

MIB = 1 << 20
MASK = (1 << 64) - 1


def noise_mib():
    out = bytearray()
    x = 0x9E3779B97F4A7C15
    while len(out) < MIB:
        x ^= (x << 13) & MASK
        x ^= x >> 7
        x ^= (x << 17) & MASK
        out += x.to_bytes(8, 'little')
    return bytes(out[:MIB])


def text_mib():
    s = b'rpyc brine frame payload '
    return (s * (MIB // len(s) + 1))[:MIB]


def tuple_10k():
    return tuple(i if i % 2 == 0 else f'item{i}' for i in range(10000))


class Sink:
    MAX_IO_CHUNK = 64000

    def __init__(self):
        self.chunks = []

    def write(self, data):
        self.chunks.append(data)


class Source:
    def __init__(self, data):
        self.buf = io.BytesIO(data)

    def read(self, n):
        return self.buf.read(n)


def per_op(fn, min_time=0.5):
    """CPU seconds per call (the machine may be shared): best of 3 rounds of min_time/3."""
    fn()
    best = None
    for _ in range(3):
        n, start = 0, time.process_time()
        while True:
            fn()
            n += 1
            took = time.process_time() - start
            if took >= min_time / 3:
                break
        best = took / n if best is None else min(best, took / n)
    return best


def frame_write(payload):
    def run():
        Channel(Sink()).send(payload)
    return run


def frame_read(payload):
    sink = Sink()
    Channel(sink).send(payload)
    frame = b''.join(sink.chunks)

    def run():
        assert len(Channel(Source(frame)).recv()) == len(payload)
    return run


def main():
    noise, text, tup = noise_mib(), text_mib(), tuple_10k()
    noise_dump, tup_dump = brine.dump(noise), brine.dump(tup)
    results = {
        'BrineEncode_bytes_1mib': per_op(lambda: brine.dump(noise)),
        'BrineDecode_bytes_1mib': per_op(lambda: brine.load(noise_dump)),
        'BrineEncode_tuple_10k': per_op(lambda: brine.dump(tup)),
        'BrineDecode_tuple_10k': per_op(lambda: brine.load(tup_dump)),
        'FrameWrite_noise_1mib': per_op(frame_write(noise)),
        'FrameRead_noise_1mib': per_op(frame_read(noise)),
        'FrameWrite_text_1mib': per_op(frame_write(text)),
        'FrameRead_text_1mib': per_op(frame_read(text)),
    }
    json.dump(results, sys.stdout, indent=1)


if __name__ == '__main__':
    main()
