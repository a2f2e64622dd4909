"""Cross-check of the C++ wire codecs against the real Python library.

Run: /usr/bin/python3 -m pytest tests/crosscheck
  RPYC_WIRE_TOOL  the built wire_tool (default <repo>/build/dev/tests/crosscheck/wire_tool)
  RPYC6_PATH      rpyc 6.x sources for PYTHONPATH (default <repo>/../shared/clients/rpyc6);
                  the 6.x message tests skip, saying why, when it is missing.

Python 5.3.0 (Debian's python3-rpyc) is imported here; 6.x runs in a subprocess (msg_peer.py)
because both cannot be imported in one process.
"""

import os
import pathlib
import random
import struct
import subprocess
import sys
import zlib

import pytest

from rpyc.core import brine
from rpyc.core.channel import Channel

from values import (has_frozenset, pack_records, parse_description, rand_str, rand_value, same,
                    unpack_records)

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
TOOL = os.environ.get('RPYC_WIRE_TOOL', str(REPO / 'build/dev/tests/crosscheck/wire_tool'))
RPYC6 = os.environ.get('RPYC6_PATH', str(REPO.parent / 'shared/clients/rpyc6'))
PYTHON = '/usr/bin/python3'
N_VALUES = 10_000


@pytest.fixture(scope='session', autouse=True)
def tool():
    if not os.access(TOOL, os.X_OK):
        pytest.fail(f'wire_tool not found at {TOOL}: build it (cmake --build --preset dev) or set '
                    'RPYC_WIRE_TOOL')


def run_tool(args, records=()):
    proc = subprocess.run([TOOL, *args], input=pack_records(records), capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return unpack_records(proc.stdout)


def ok(result):
    """A wire_tool result record: status byte 0 and the data, or the error message."""
    assert result[:1] == b'\0', result[1:].decode(errors='replace')
    return result[1:]


def hexdiff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f'first difference at byte {i}: {a[i:i + 16].hex()} vs {b[i:i + 16].hex()}'
    return f'lengths {len(a)} vs {len(b)}'


# ---- brine -----------------------------------------------------------------------------------

def test_python_values_roundtrip_byte_identical_in_cpp():
    rng = random.Random(20261126)
    values = [rand_value(rng) for _ in range(N_VALUES)]
    dumps = [brine.dump(v) for v in values]
    results = run_tool(['brine-roundtrip'], dumps)
    assert len(results) == len(dumps)
    kinds = set()
    for v, d, r in zip(values, dumps, results):
        kinds.add(type(v).__name__)
        # C++ keeps a frozenset's wire order, so even str-element frozensets come back identical.
        assert ok(r) == d, f'{v!r:.200}: {hexdiff(ok(r), d)}'
    assert kinds >= {'NoneType', 'bool', 'int', 'float', 'complex', 'bytes', 'str', 'tuple',
                     'frozenset', 'slice', 'ellipsis', 'NotImplementedType'}
    # Every length class of the encoding was exercised.
    tags = {d[0] for d in dumps}
    assert {0x0e, 0x0f, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b} <= tags
    assert any(len(d) > 65536 + 5 and d[0] == 0x0f for d in dumps)
    assert any(len(d) > 3000 and d[0] == 0x17 for d in dumps)  # ints of thousands of digits


def test_cpp_values_load_in_python():
    out = run_tool(['brine-gen', '424242', str(N_VALUES)])
    assert len(out) == 2 * N_VALUES
    kinds, frozen = set(), 0
    for i in range(N_VALUES):
        data, desc = out[2 * i], out[2 * i + 1]
        want = parse_description(desc)
        got = brine.load(data)
        assert same(got, want), f'value {i}: {got!r:.200} vs {want!r:.200}'
        kinds.add(type(want).__name__)
        if has_frozenset(want):
            frozen += 1
            # Python may iterate the set in another order: compare by loading the re-dump.
            assert same(brine.load(brine.dump(got)), want)
        else:
            again = brine.dump(got)
            assert again == data, f'value {i}: {hexdiff(again, data)}'
    assert frozen > 100
    assert kinds >= {'NoneType', 'bool', 'int', 'float', 'complex', 'bytes', 'str', 'tuple',
                     'frozenset', 'slice', 'ellipsis', 'NotImplementedType'}


def test_cpp_refuses_what_python_cannot_load():
    # Unknown tags, truncation and bad UTF-8 are errors on both sides.
    for bad in [b'\x07', b'\x09', b'\x1c', b'\xf0', b'\x08\x0b\xc3\x28', b'\x12\x51',
                b'\x16\x02-x']:
        with pytest.raises(Exception):
            brine.load(bad)
        [r] = run_tool(['brine-roundtrip'], [bad])
        assert r[:1] == b'\1', bad.hex()
    # Python slices a truncated bytes value short without complaint (b'\x0e\x05ab' -> b'ab');
    # C++ is stricter on purpose (docs/protocol.md §1.1: truncated input is an error).
    assert brine.load(b'\x0e\x05ab') == b'ab'
    [r] = run_tool(['brine-roundtrip'], [b'\x0e\x05ab'])
    assert r[:1] == b'\1'


# ---- frames ----------------------------------------------------------------------------------

class Stream:
    """The stream below a Channel: reads from given bytes, collects writes."""
    MAX_IO_CHUNK = 64000
    closed = False

    def __init__(self, data=b''):
        self.data, self.pos, self.written = data, 0, []

    def read(self, n):
        chunk = self.data[self.pos:self.pos + n]
        assert len(chunk) == n, 'stream ended'
        self.pos += n
        return chunk

    def write(self, data):
        self.written.append(data)


def payloads():
    rng = random.Random(7)
    text = ('rpyc ' + rand_str(rng, 50)).encode() * 400
    return [
        b'', b'x', bytes(3000), bytes(3001), text[:3001], text, rng.randbytes(3001),
        rng.randbytes(100_000), text * 50, rng.randbytes(1 << 20), bytes(1 << 20),
        text[:20000] + rng.randbytes(20000),
    ]


def python_frames(data, compress=True):
    s = Stream()
    ch = Channel(s, compress=compress)
    for p in data:
        ch.send(p)
    return b''.join(s.written)


def python_recv_all(frames):
    s = Stream(frames)
    ch = Channel(s)
    got = []
    while s.pos < len(frames):
        got.append(ch.recv())
    return got


def test_python_frames_decode_in_cpp():
    ps = payloads()
    singles = [python_frames([p]) for p in ps]
    assert any(f[4] == 1 for f in singles) and any(f[4] == 0 for f in singles)
    # Decoded payloads are the originals, one frame per record and all in one record.
    for f, p in zip(singles, ps):
        [r] = run_tool(['frame-decode'], [f])
        assert unpack_records(ok(r)) == [p]
    [r] = run_tool(['frame-decode'], [b''.join(singles)])
    assert unpack_records(ok(r)) == ps
    # Framing them again, Python's way, gives Python's bytes (zlib level 1 included).
    results = run_tool(['frame-roundtrip', 'python'], singles)
    for f, r in zip(singles, results):
        assert ok(r) == f, hexdiff(ok(r), f)
    uncompressed = python_frames(ps, compress=False)
    [r] = run_tool(['frame-decode'], [uncompressed])
    assert unpack_records(ok(r)) == ps


def test_cpp_frames_load_in_python():
    ps = payloads()
    for mode in ('python', 'adaptive'):
        frames = [ok(r) for r in run_tool(['frame-encode', mode], ps)]
        assert python_recv_all(b''.join(frames)) == ps
        if mode == 'python':
            assert frames == [python_frames([p]) for p in ps]
        else:
            # Adaptive sends incompressible payloads raw, and they still load.
            assert any(len(p) > 3000 and f[4] == 0 for p, f in zip(ps, frames))
            assert all(len(f) <= len(python_frames([p])) for p, f in zip(ps, frames))


def test_python_accepts_what_cpp_accepts():
    # Flag 7, a wrong trailer byte and a small compressed payload (docs/protocol.md §2).
    z = zlib.compress(b'hello', 9)
    frame = struct.pack('!LB', len(z), 7) + z + b'X'
    assert python_recv_all(frame) == [b'hello']
    [r] = run_tool(['frame-decode'], [frame])
    assert unpack_records(ok(r)) == [b'hello']


# ---- messages --------------------------------------------------------------------------------

SEQS = [0, 1, 7, 159, 160, 255, 2**31, 2**63 - 1, 2**63, 2**64 - 1]


def messages(seed, count):
    """(msg, seq, args) triples: PING requests, value replies and exceptions."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        seq = SEQS[i % len(SEQS)] if i < 3 * len(SEQS) else rng.randrange(2**64)
        v = rand_value(rng)
        kind = i % 3
        if kind == 0:
            out.append((1, seq, (1, (1, (v,)))))  # REQUEST PING (boxed value args)
        elif kind == 1:
            out.append((2, seq, (1, v)))  # REPLY with a boxed value
        elif i % 2:
            out.append((3, seq, 1))  # EXCEPTION: StopIteration
        else:
            out.append((3, seq, (('builtins', 'ValueError'), (rand_str(rng, 10),), (),
                                 '<traceback denied>')))
    return out


def peer(gen, mode, records):
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    if gen == 6:
        if not os.path.isdir(os.path.join(RPYC6, 'rpyc')):
            pytest.skip(f'rpyc 6.x not found at {RPYC6} (set RPYC6_PATH)')
        env['PYTHONPATH'] = RPYC6
    proc = subprocess.run([PYTHON, str(HERE / 'msg_peer.py'), mode], input=pack_records(records),
                          capture_output=True, cwd=HERE, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    version = proc.stderr.decode().split()[1]
    assert version.startswith(str(gen)), proc.stderr.decode()
    return unpack_records(proc.stdout)


@pytest.mark.parametrize('gen', [5, 6])
def test_python_messages_decode_in_cpp(gen):
    triples = messages(gen, 600)
    frames = peer(gen, 'send', [brine.dump(t) for t in triples])
    assert len(frames) == len(triples)
    [r] = run_tool(['frame-decode'], [b''.join(frames)])
    payloads = unpack_records(ok(r))
    for (msg, seq, args), p in zip(triples, payloads):
        if gen == 5:
            assert p[:2] == bytes([0x12, 0x50 + msg])
        else:
            assert p[:2] == bytes([msg, 0x11])
    results = run_tool(['message-roundtrip'], payloads)
    for t, p, r in zip(triples, payloads, results):
        data = ok(r)
        assert data[0] == gen, f'{t!r:.100}: detected as {data[0]}'
        assert data[1:] == p, f'{t!r:.100}: {hexdiff(data[1:], p)}'


@pytest.mark.parametrize('gen', [5, 6])
def test_cpp_messages_dispatch_in_python(gen):
    triples = messages(100 + gen, 600)
    encoded = run_tool(['message-encode'], [brine.dump((gen,) + t) for t in triples])
    payloads = [ok(r) for r in encoded]
    frames = [ok(r) for r in run_tool(['frame-encode', 'adaptive'], payloads)]
    results = peer(gen, 'recv', [b''.join(frames)])
    assert len(results) == len(triples)
    for (msg, seq, args), res in zip(triples, results):
        got = brine.load(res)
        if msg == 1:  # the real Connection answered our PING with its own reply frame
            kind, frame = got
            assert kind == 'reply-sent'
            [r] = run_tool(['frame-decode'], [frame])
            [reply] = unpack_records(ok(r))
            if gen == 5:
                assert same(brine.load(reply), (2, seq, (1, args[1][1][0])))
            else:
                assert reply[0] == 2
                assert same(brine.load(reply[1:]), (seq, (1, args[1][1][0])))
        elif msg == 2:
            assert got[0] == 'reply' and same(got[1], args[1])
        elif args == 1:
            assert got == ('exception', 'builtins', 'StopIteration', ())
        else:
            assert got == ('exception', 'builtins', 'ValueError', args[1])


@pytest.mark.parametrize('gen', [5, 6])
def test_golden_frames_match_connection_send(gen):
    # docs/protocol.md §3.3, generated by Connection._send, decoded and re-encoded by C++.
    v6 = ['00 00 00 08 00 01 11 50 11 53 11 51 02 0a', '00 00 00 06 00 02 11 53 11 51 52 0a',
          '00 00 00 04 00 03 11 54 51 0a']
    triples = [(1, 0, (3, (1, ()))), (2, 3, (1, 2)), (3, 4, 1)]
    frames = peer(gen, 'send', [brine.dump(t) for t in triples])
    for f, h in zip(frames, v6):
        want = bytes.fromhex(h)
        if gen == 5:
            want = want[:5] + bytes([0x12, 0x50 + want[5]]) + want[7:]
        assert f == want
    for r, f in zip(run_tool(['frame-roundtrip', 'python'], frames), frames):
        assert ok(r) == f
