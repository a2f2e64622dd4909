"""Seeded random brine values made in Python, strict comparison, and the records format that
wire_tool speaks (4-byte big-endian length, then the bytes)."""

import math
import random
import struct

# Python refuses to convert ints of more than 4300 digits to or from text (CPython >= 3.11).
MAX_INT_DIGITS = 4000

INT_EDGES = [-49, -48, 0, 159, 160, 255, 256, 2**31 - 1, -2**31, 2**63 - 1, -2**63, 2**63,
             -2**63 - 1, 2**64 - 1, 2**64, -(2**100), 10**300]
FLOAT_EDGES = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308, 1.5]


def length(rng, big):
    """A length from every class the encoding distinguishes: 0, 1..4, 5..255, >= 256, >= 65536."""
    r = rng.random()
    if r < 0.1:
        return 0
    if r < 0.4:
        return rng.randint(1, 4)
    if r < 0.7:
        return rng.randint(5, 255)
    if r < 0.97:
        return rng.randint(256, 1200)
    return rng.randint(65536, 65536 + big)


def rand_int(rng):
    r = rng.random()
    if r < 0.3:
        return rng.randint(-48, 159)
    if r < 0.45:
        return rng.choice(INT_EDGES)
    if r < 0.8:
        return rng.randint(-2**64, 2**64)
    digits = rng.randint(20, MAX_INT_DIGITS if rng.random() < 0.3 else 100)
    n = rng.randint(10**(digits - 1), 10**digits - 1)
    return -n if rng.random() < 0.5 else n


def rand_float(rng):
    r = rng.random()
    if r < 0.3:
        return rng.choice(FLOAT_EDGES)
    if r < 0.5:
        return rng.uniform(-1e6, 1e6)
    f = struct.unpack('!d', rng.getrandbits(64).to_bytes(8, 'big'))[0]
    return 1.25 if math.isnan(f) else f  # NaN payloads other than the canonical one vary


def _code_point_pool():
    """Code points of every UTF-8 length, ASCII most often, never a surrogate."""
    rng = random.Random(1)
    pool = [chr(c) for c in range(0x80)] * 6
    pool += [chr(rng.randint(0x80, 0x7ff)) for _ in range(200)]
    pool += [chr(rng.choice([rng.randint(0x800, 0xd7ff), rng.randint(0xe000, 0xffff)]))
             for _ in range(200)]
    pool += [chr(rng.randint(0x10000, 0x10ffff)) for _ in range(100)]
    return pool


CODE_POINTS = _code_point_pool()


def rand_str(rng, n=None):
    n = length(rng, 3000) if n is None else n
    return ''.join(rng.choices(CODE_POINTS, k=n))


def rand_hashable(rng, depth):
    r = rng.random()
    if r < 0.3:
        return rand_int(rng)
    if r < 0.5:
        return rand_str(rng, rng.randint(0, 8))
    if r < 0.6:
        return rng.randbytes(rng.randint(0, 8))
    if r < 0.7:
        return rand_float(rng)
    if r < 0.8 and depth < 3:
        return tuple(rand_hashable(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    if r < 0.85 and depth < 3:
        return frozenset(rand_hashable(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    return rng.choice([None, True, False, Ellipsis, NotImplemented, 1 + 2j])


def rand_value(rng, depth=0):
    kinds = 9 if depth >= 4 else 13
    k = rng.randrange(kinds)
    if k == 0:
        return None
    if k == 1:
        return rng.random() < 0.5
    if k == 2:
        return rng.choice([Ellipsis, NotImplemented])
    if k in (3, 4):
        return rand_int(rng)
    if k == 5:
        return rand_float(rng)
    if k == 6:
        return complex(rand_float(rng), rand_float(rng))
    if k == 7:
        return rng.randbytes(length(rng, 8000))
    if k == 8:
        return rand_str(rng)
    if k in (9, 10):
        n = rng.randint(256, 600) if rng.random() < 0.03 else length(rng, 0) % 256
        if n > 60:
            return tuple(rand_int(rng) if rng.random() < 0.5 else rand_str(rng, 3)
                         for _ in range(n))
        return tuple(rand_value(rng, depth + 1) for _ in range(n))
    if k == 11:
        return frozenset(rand_hashable(rng, depth) for _ in range(rng.randint(0, 8)))
    return slice(rand_value(rng, depth + 1), rand_value(rng, depth + 1),
                 rand_value(rng, depth + 1))


def has_frozenset(v):
    if isinstance(v, frozenset):
        return True
    if isinstance(v, tuple):
        return any(has_frozenset(x) for x in v)
    if isinstance(v, slice):
        return any(has_frozenset(x) for x in (v.start, v.stop, v.step))
    return False


def same(a, b):
    """Equality without Python's coercions: 1, True and 1.0 differ; floats compare by bits."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack('!d', a) == struct.pack('!d', b)
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, slice):
        return same((a.start, a.stop, a.step), (b.start, b.stop, b.step))
    if isinstance(a, frozenset):
        if len(a) != len(b):
            return False
        rest = list(b)
        for x in a:
            for i, y in enumerate(rest):
                if same(x, y):
                    del rest[i]
                    break
            else:
                return False
        return True
    return a == b


def parse_description(data):
    """Parses wire_tool's brine-independent description of a value (see wire_tool.cc)."""
    pos = 0

    def number(stop):
        nonlocal pos
        end = data.index(stop, pos)
        text = data[pos:end].decode()
        pos = end + 1
        return int(text)

    def blob():
        nonlocal pos
        n = number(b':')
        chunk = data[pos:pos + n]
        pos += n
        return chunk

    def double():
        nonlocal pos
        bits = bytes.fromhex(data[pos:pos + 16].decode())
        pos += 16
        return struct.unpack('!d', bits)[0]

    def value():
        nonlocal pos
        tag = chr(data[pos])
        pos += 1
        simple = {'N': None, 'T': True, 'F': False, 'E': Ellipsis, 'I': NotImplemented}
        if tag in simple:
            return simple[tag]
        if tag == 'i':
            return number(b';')
        if tag == 'f':
            return double()
        if tag == 'c':
            real = double()
            return complex(real, double())
        if tag == 'b':
            return blob()
        if tag == 's':
            return blob().decode('utf-8')
        if tag in 'tz':
            n = number(b':')
            items = [value() for _ in range(n)]
            return tuple(items) if tag == 't' else frozenset(items)
        if tag == 'l':
            return slice(value(), value(), value())
        raise ValueError(f'bad description tag {tag!r} at {pos - 1}')

    v = value()
    assert pos == len(data), 'trailing description bytes'
    return v


def pack_records(blobs):
    return b''.join(len(b).to_bytes(4, 'big') + b for b in blobs)


def unpack_records(data):
    out, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], 'big')
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    assert pos == len(data), 'truncated record'
    return out
