"""The Python side of the message cross-check, run in a subprocess so that either rpyc
generation can be imported (5.3.0 from /usr/lib/python3/dist-packages, or 6.x from PYTHONPATH).

    msg_peer.py send   stdin: records of brine((msg, seq, args))
                       stdout: one record per message: the frame Connection._send wrote
    msg_peer.py recv   stdin: one record holding a stream of frames (from wire_tool)
                       stdout: per frame, brine of what the real Connection made of it:
                       ('reply-sent', frame) for requests (the PING reply it sent back),
                       ('reply', obj) for replies, ('exception', module, name, args) for exceptions

The first line of stderr names the rpyc version, so the test can tell which library ran.
"""

import io
import os
import sys

import rpyc
from rpyc.core import brine, consts
from rpyc.core.channel import Channel
from rpyc.core.protocol import Connection
from rpyc.core.service import VoidService

from values import pack_records, unpack_records


class Stream:
    """The stream below a Channel: reads from given bytes, collects writes."""
    MAX_IO_CHUNK = 64000
    closed = False

    def __init__(self, data=b''):
        self.rd = io.BytesIO(data)
        self.wr = io.BytesIO()

    def read(self, n):
        data = self.rd.read(n)
        if len(data) != n:
            raise EOFError('stream ended')
        return data

    def write(self, data):
        self.wr.write(data)

    def take(self):
        data = self.wr.getvalue()
        self.wr = io.BytesIO()
        return data

    def close(self):
        pass


def connect(stream):
    return Connection(VoidService(), Channel(stream), config={})


def send(records):
    stream = Stream()
    conn = connect(stream)
    out = []
    for rec in records:
        msg, seq, args = brine.load(rec)
        conn._send(msg, seq, args)
        out.append(stream.take())
    return out


def recv(data):
    stream = Stream(data)
    conn = connect(stream)
    six = rpyc.__version__.startswith('6')
    out = []
    while stream.rd.tell() < len(data):
        payload = conn._channel.recv()
        msg = payload[0] if six else payload[1] - 0x50
        seq = brine.load(payload[1:])[0] if six else brine.load(payload)[1]
        got = []
        conn._request_callbacks[seq] = lambda is_exc, obj: got.append((is_exc, obj))
        if six:
            conn._recvlock.acquire()  # 6.x's _dispatch releases it
        conn._dispatch(payload)
        if msg == consts.MSG_REQUEST:
            out.append(brine.dump(('reply-sent', stream.take())))
        elif msg == consts.MSG_REPLY:
            out.append(brine.dump(('reply', got[0][1])))
        else:
            obj = got[0][1]
            cls = obj if isinstance(obj, type) else type(obj)
            args = () if isinstance(obj, type) else tuple(obj.args)
            out.append(brine.dump(('exception', cls.__module__, cls.__name__, args)))
    return out


def main():
    print(f'rpyc {rpyc.__version__} from {os.path.dirname(rpyc.__file__)}', file=sys.stderr)
    data = sys.stdin.buffer.read()
    if sys.argv[1] == 'send':
        out = send(unpack_records(data))
    else:
        out = recv(unpack_records(data)[0])
    sys.stdout.buffer.write(pack_records(out))
    sys.stdout.flush()
    os._exit(0)  # skip Connection.__del__: 6.x's close() waits for a CLOSE reply


if __name__ == '__main__':
    main()
