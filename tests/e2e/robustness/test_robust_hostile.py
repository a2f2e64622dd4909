"""Hostile input: a table-driven corpus of raw frames in both wire generations.

Each entry is sent on its own raw connection (after a GETROOT, so it can use the real root
id_pack) and has one expected outcome:
  close      the daemon closes that connection, with an ERROR line naming the peer;
  exception  an exception reply of the named type, and the connection keeps working;
  reply      a normal reply, and the connection keeps working;
  ignored    no answer, and the connection keeps working.
A real rpyc client is connected to the same daemon through the whole module and must never fail
or stall; the daemon must never crash.
"""

import functools
import re
import socket
import struct
import sys
import time
import zlib

import pytest

import sanitizer_support
from robust_support import (CLASSICD, CALL, DEL, EXCEPTION, GETATTR, GETROOT, INSPECT, PING, REPLY, REQUEST,
                            Daemon, RawPeer, Watcher, b_bytes, b_int, b_none, b_str, b_tuple,
                            boxed_tuple, by_value, end_lines, frame, lent_counts, local_ref,
                            long_only, message, native_only, other_gen, request, rss_kb)

pytestmark = native_only

sys.set_int_max_str_digits(0)  # replies may carry ints of any length (docs/protocol.md §1.1)

MAX_FRAME = 1 << 20  # the daemons below run with --max-frame-size 1 MiB


def idp(root):
    """The brine of an id_pack tuple."""
    name, cls, inst = root
    return b_tuple(b_str(name), b_int(cls), b_int(inst))


@functools.lru_cache(maxsize=None)
def zlib_bomb():
    """64 MiB of zeros in about 64 kB: inflates far past --max-frame-size."""
    return zlib.compress(b"\x00" * (64 << 20), 9)


def nested(depth, leaf=b"\x00"):
    return b"\x10" * depth + leaf


NONE = by_value(b"\x02")  # the boxed empty tuple: no arguments
LIMIT = "exceeds the limit of 1048576 bytes"


def req(handler, args, seq=1):
    """A builder of one request frame in the connection's generation."""
    return lambda g, r: frame(request(g, seq, handler, args(r) if callable(args) else args))


def raw(build):
    """Marks a builder that writes its bytes itself (frames, or not even that)."""
    return build


def getattr_of(id_pack, name="append"):
    return req(GETATTR, lambda r: boxed_tuple(local_ref(idp(id_pack(r))), by_value(b_str(name))))


def del_of(id_pack, count):
    return req(DEL, lambda r: boxed_tuple(local_ref(idp(id_pack(r))), by_value(count)))


ROOT = tuple  # the root's own id_pack
NEVER_LENT = lambda r: ("builtins.list", 12345, 67890)  # noqa: E731

# (name, outcome, detail, builder(gen, root id_pack) -> bytes). `detail`: for "close", a regex
# the close line must match; for "exception", the exception's type name. A builder returning
# (bytes, "eof") also half-closes the socket after sending.
CORPUS_ROWS = [
    # --- framing ---------------------------------------------------------------------------------
    ("truncated_header", "close", r"stream ended inside a frame header \(3 of 5 bytes\)",
     raw(lambda g, r: (b"\x00\x00\x00", "eof"))),
    ("truncated_payload", "close", r"stream ended inside a frame \(7 of 56 bytes\)",
     raw(lambda g, r: (struct.pack("!LB", 50, 0) + b"\x12\x51", "eof"))),
    ("length_just_past_limit", "close", "payload length 1048577 " + LIMIT,
     raw(lambda g, r: struct.pack("!LB", MAX_FRAME + 1, 0) + b"x" * 64)),
    ("length_4gib", "close", "payload length 4294967295 " + LIMIT,
     raw(lambda g, r: struct.pack("!LB", 0xFFFFFFFF, 0))),
    ("empty_frames", "ignored", None, raw(lambda g, r: frame(b"") * 1000)),
    ("zlib_bomb", "close", "decompressed payload " + LIMIT,
     raw(lambda g, r: frame(zlib_bomb(), flag=1))),
    ("zlib_garbage", "close", "corrupt zlib payload",
     raw(lambda g, r: frame(b"\x78\x9c" + b"\xff" * 40, flag=1))),
    ("zlib_raw_deflate", "close", "corrupt zlib payload: incorrect header check",
     raw(lambda g, r: frame(zlib.compress(request(g, 1, PING, NONE))[2:-4], flag=1))),
    # --- brine bombs -----------------------------------------------------------------------------
    ("nesting_bomb_in_args", "close", "nesting deeper than 256",
     req(PING, by_value(nested(200000)))),
    ("nesting_bomb_as_message", "close", "nesting deeper than 256|invalid message type: 18",
     raw(lambda g, r: frame(b"\x12\x51\x51" + nested(200000)))),
    ("tuple_count_4g_no_items", "close", "tuple of 4294967295 items but only 0 byte",
     req(PING, by_value(b"\x15\xff\xff\xff\xff"))),
    ("bytes_len_4g", "close", "truncated input in bytes",
     req(PING, by_value(b"\x0f\xff\xff\xff\xff" + b"a"))),
    ("int_of_100k_digits", "reply", None,
     req(PING, by_value(b_tuple(b"\x17" + struct.pack("!L", 100000) + b"7" * 100000)))),
    ("unknown_brine_tag", "close", "unknown tag 0x07", req(PING, by_value(b_tuple(b"\x07")))),
    ("invalid_utf8_str", "close", "invalid UTF-8 in str",
     req(GETATTR, lambda r: boxed_tuple(local_ref(idp(r)), by_value(b"\x08\x0c\xff\xfe\xfd")))),
    # --- message shapes --------------------------------------------------------------------------
    ("unknown_message_type", "close", "invalid message type: 9",
     raw(lambda g, r: frame(message(g, 9, 1, b_none())))),
    ("five_x_as_4_tuple", "close", r"expected \(msg, seq, args\)|invalid message type: 19",
     raw(lambda g, r: frame(b"\x13\x51\x51" + b_tuple(b_int(PING), NONE) + b"\x00"))),
    ("request_args_not_a_tuple", "exception", "TypeError",
     raw(lambda g, r: frame(message(g, REQUEST, 1, b_int(5))))),
    ("request_args_3_tuple", "exception", "TypeError",
     raw(lambda g, r: frame(message(g, REQUEST, 1, b_tuple(b_int(PING), NONE, b_none()))))),
    ("handler_is_a_str", "exception", "KeyError",
     raw(lambda g, r: frame(message(g, REQUEST, 1, b_tuple(b_str("PING"), NONE))))),
    ("seq_is_a_str", "close", "seq is not an int: 'x'",
     raw(lambda g, r: frame(message(g, REQUEST, 0, b"")[:2] + b_str("x") +
                            b_tuple(b_int(PING), NONE)))),
    ("seq_negative", "close", "negative seq -5", req(PING, by_value(b_tuple(b_str("n"))), seq=-5)),
    ("seq_huge", "close", "does not fit 64 bits",
     req(PING, by_value(b_tuple(b_str("n"))), seq=2 ** 100)),
    ("boxed_value_not_a_pair", "exception", None, req(PING, b_tuple(b_int(1)))),
    ("args_box_not_a_tuple", "exception", None, req(GETATTR, by_value(b_int(3)))),
    ("unknown_handler", "exception", "KeyError", req(99, NONE)),
    ("handler_zero", "exception", "KeyError", req(0, NONE)),
    ("wrong_arity", "exception", "TypeError", req(GETATTR, by_value(b_tuple(b_int(1))))),
    ("unknown_label", "exception", "ValueError",
     req(GETATTR, lambda r: boxed_tuple(b_tuple(b_int(9), idp(r)), by_value(b_str("x"))))),
    ("reply_nobody_asked_for", "ignored", None,
     raw(lambda g, r: frame(message(g, REPLY, 77, by_value(b_none()))))),
    ("exception_nobody_asked_for", "ignored", None,
     raw(lambda g, r: frame(message(g, EXCEPTION, 78, b_int(1))))),
    # --- object ids ------------------------------------------------------------------------------
    ("id_never_lent", "exception", "KeyError", getattr_of(NEVER_LENT)),
    ("root_ids_other_name", "exception", "KeyError",
     getattr_of(lambda r: ("builtins.list", r[1], r[2]))),
    ("id_pack_wrong_shape", "exception", None,
     req(GETATTR, boxed_tuple(local_ref(b_tuple(b_str("x"), b_int(1))), by_value(b_str("a"))))),
    ("call_on_id_never_lent", "exception", "KeyError",
     req(CALL, boxed_tuple(local_ref(idp(NEVER_LENT(None))), NONE, NONE))),
    ("inspect_id_never_lent", "exception", "KeyError",
     req(INSPECT, by_value(b_tuple(idp(NEVER_LENT(None)))))),
    ("del_id_never_lent", "exception", "KeyError", del_of(NEVER_LENT, b_int(1))),
    ("del_underflow_root", "reply", None, del_of(ROOT, b_int(1000))),
    ("del_negative_count", "reply", None, del_of(ROOT, b_int(-1000))),
    ("del_count_is_a_str", "exception", None, del_of(ROOT, b_str("many"))),
]
CORPUS = {name: (build, outcome, detail) for name, outcome, detail, build in CORPUS_ROWS}
assert len(CORPUS) == len(CORPUS_ROWS), "duplicate corpus names"

MODES = ["threaded", "threadpool", pytest.param("forking", marks=long_only)]


@pytest.fixture(scope="module", params=MODES)
def target(request, tmp_path_factory):
    """(daemon, watcher): a daemon and a real client using it all through the module."""
    gen = other_gen()
    d = Daemon(tmp_path_factory.mktemp("hostile"),
               # Every case is a connection from 127.0.0.1 that the module's daemon may still
               # hold: the per-peer cap (test_robust_admission.py) is not what this tests.
               extra_args=["-m", request.param, "--max-frame-size", str(MAX_FRAME),
                           "--max-connections-per-peer", "0"])
    w = Watcher(gen, d.port)
    yield d, w
    assert d.proc.poll() is None, f"the daemon died:\n{d.log()[-5000:]}"
    w.finish()
    assert d.stop() == 0


def get_root(peer, gen, d):
    peer.send(frame(request(gen, 0, GETROOT, by_value(b"\x02"))))
    msg = peer.reply(gen)
    assert msg is not None and msg[0] == REPLY and msg[1] == 0, (
        msg, [line for line in d.log().splitlines() if str(peer.port) in line])
    label, id_pack = msg[2]
    assert label == 4, msg
    return id_pack


def still_alive(peer, gen, seq=500):
    """A PING on the connection gets its echo (skipping replies to what was sent before)."""
    peer.send(frame(request(gen, seq, PING, by_value(b_tuple(b_str("alive?"))))))
    while True:
        msg = peer.reply(gen)
        if msg is None:
            return False
        if msg[1] == seq:
            return msg[0] == REPLY and msg[2] == (1, "alive?")


def exc_name(args):
    return args[0][1] if isinstance(args, tuple) and args and isinstance(args[0], tuple) else None


@pytest.mark.parametrize("gen", ["rpyc5", "rpyc6"])
@pytest.mark.parametrize("entry", sorted(CORPUS))
def test_hostile_corpus(target, entry, gen):
    d, _ = target
    build, outcome, detail = CORPUS[entry]
    peer = RawPeer(d.port, log=d.log)
    try:
        root = get_root(peer, gen, d)
        data = build(gen, tuple(root))
        eof = isinstance(data, tuple)
        if eof:
            data = data[0]
        try:
            peer.send(data)
        except (BrokenPipeError, ConnectionResetError):
            assert outcome == "close", "the daemon closed while reading"
        if eof:
            peer.sock.shutdown(socket.SHUT_WR)
        if outcome == "close":
            assert peer.closed(timeout=10), "the daemon kept the connection open"
            d.wait_for_log(f"goodbye ('127.0.0.1', {peer.port})")
            ends = end_lines(d.log(), peer.port)
            assert len(ends) == 1, ends
            assert "ERROR" in ends[0] and f"peer 127.0.0.1:{peer.port}" in ends[0], ends
            if detail:
                assert re.search(detail, ends[0]), (detail, ends)
            return
        if outcome in ("exception", "reply"):
            peer.sock.settimeout(10)
            msg = peer.reply(gen)
            assert msg is not None, f"closed instead of a{'n' if outcome[0] == 'e' else ''} {outcome}"
            if outcome == "exception":
                assert msg[0] == EXCEPTION, msg
                if detail:
                    assert exc_name(msg[2]) == detail, msg
            else:
                assert msg[0] == REPLY, msg
        assert still_alive(peer, gen), "the connection did not survive"
        if entry == "del_underflow_root":
            # The root was released by the excess DEL; asking for it again gives a fresh one.
            assert get_root(peer, gen, d)
        peer.close()
        # The object table is consistent (no count wrapped below zero) and empty after release.
        d.wait_for_log(f"goodbye ('127.0.0.1', {peer.port})")
        lent, left = lent_counts(d.log(), peer.port)
        assert left == 0 and lent < 100, (lent, left)
    finally:
        peer.close()


def test_ten_thousand_pipelined_requests_without_reading_replies(target):
    """The daemon may block on send; it must not buffer replies without bound. The client then
    closes; the watcher (another client) is unaffected."""
    d, _ = target
    gen = "rpyc5"
    before = rss_kb(d.pid)
    peer = RawPeer(d.port, log=d.log)
    payload = b"p" * 8000
    reqs = [frame(request(gen, i, PING, by_value(b_tuple(b_bytes(payload))))) for i in range(10000)]
    peer.sock.settimeout(2)
    sent = 0
    try:
        for r in reqs:  # ~80 MB of requests, as many replies: far beyond the socket buffers
            peer.sock.sendall(r)
            sent += 1
    except socket.timeout:
        pass  # the daemon stopped reading: it is blocked sending replies we do not read
    time.sleep(0.5)
    grown = rss_kb(d.pid) - before
    # ASan keeps freed memory in its quarantine (256 MiB by default) before reusing it.
    limit = 64 * 1024 + (256 * 1024 if sanitizer_support.sanitizer(CLASSICD) == "asan" else 0)
    assert grown < limit, f"RSS grew by {grown} kB with {sent} requests pipelined"
    peer.close()
    d.wait_for_log(f"goodbye ('127.0.0.1', {peer.port})")
    assert d.proc.poll() is None
