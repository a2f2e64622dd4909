"""A service that shows its clients what authenticated them (conn._config['credentials']), and
authenticators in rpyc's contract (authenticator(sock) -> (sock, credentials)), served by both
servers in the authentication tests."""

import rpyc
from rpyc.utils.authenticators import AuthenticationError


class WhoAmIService(rpyc.Service):
    def on_connect(self, conn):
        self._conn = conn

    def exposed_credentials(self):
        return repr(self._conn._config['credentials'])

    def exposed_add(self, a, b):
        return a + b

    def exposed_tls(self):
        """What conn._channel.stream.sock tells of the TLS session, as rpyc's ssl.SSLSocket does
        (getpeercert() with and without binary_form, cipher(), version()), with its endpoints."""
        import hashlib
        import socket
        sock = self._conn._channel.stream.sock
        der = sock.getpeercert(binary_form=True)
        return (isinstance(sock, socket.socket), repr(sock.getpeercert()),
                None if der is None else (type(der).__name__, hashlib.sha256(der).hexdigest()),
                sock.cipher(), sock.version(), sock.getpeername(), sock.getsockname(),
                isinstance(sock.fileno(), int) and sock.fileno() >= 0)


class CallingWhoAmIService(WhoAmIService):
    """Calls the client from on_connect, after the authentication that set the credentials."""

    def on_connect(self, conn):
        self._conn = conn
        self._at_connect = [repr(conn._config['credentials']), conn.root.get_service_name()]

    def exposed_at_connect(self):
        # rpyc's server serves the client's requests while on_connect waits for its own: None
        # until on_connect has finished.
        at_connect = getattr(self, '_at_connect', None)
        return None if at_connect is None else list(at_connect)


def _read_line(sock, size=64):
    data = b''
    while not data.endswith(b'\n'):
        chunk = sock.recv(size)
        if not chunk:
            raise AuthenticationError('the client left during authentication')
        data += chunk
    return data.strip()


def token_authenticator(sock):
    """The server speaks first: a challenge, then the client's token on a line of its own."""
    sock.sendall(b'token?\n')
    token = _read_line(sock)
    if token != b'sesame':
        sock.sendall(b'no\n')
        raise AuthenticationError('wrong token %r' % token.decode('ascii', 'replace'))
    sock.sendall(b'ok\n')
    return sock, {'user': 'alice', 'token': token.decode()}


def broken_authenticator(sock):
    """Fails with something other than AuthenticationError."""
    raise ValueError('the authenticator itself is broken')


def silent_authenticator(sock):
    """Accepts without credentials (rpyc logs a plain 'welcome ADDR')."""
    return sock, None


def line_authenticator(sock):
    """Reads one line byte by byte (nothing of the protocol after it) and accepts it: a client
    that never sends it is ended by the handshake deadline."""
    return sock, _read_line(sock, 1).decode()


def gated_authenticator(sock):
    """Once the client has sent something (a probe that connects and closes is refused), adds a
    line to $AUTH_GATE.started, then waits (up to 60 s) for the file $AUTH_GATE to exist
    (something other than the socket: the daemon's deadline does not interrupt it)."""
    import os
    import socket
    import time
    if not sock.recv(1, socket.MSG_PEEK):
        raise AuthenticationError('the client left')
    gate = os.environ['AUTH_GATE']
    with open(gate + '.started', 'a') as f:
        f.write('started\n')
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    return sock, 'gated'


not_callable = 42
