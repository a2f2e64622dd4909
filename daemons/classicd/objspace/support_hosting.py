# --- a hosted rpyc.Service (--service) ---------------------------------------------------------

class ServiceLoadError(Exception):
    """Why a --service cannot be hosted; its text is the whole message."""


def import_for_loading(module_name):
    """The module named in a --service or --authenticator spec; a ServiceLoadError with the
    import's traceback when importing it fails."""
    try:
        return importlib.import_module(module_name)
    except BaseException:
        raise ServiceLoadError('importing %s failed:\n%s'
                               % (module_name, traceback.format_exc().rstrip())) from None


def load_service(spec):
    """(make_root, aliases) for 'package.module:Name' or 'package.module:factory()'.

    Name is an rpyc.Service subclass (classpartial's included: a new instance per connection) or
    an instance (shared by every connection); factory() is called once, here, and what it returns
    is taken the same way.
    """
    module_name, sep, attr = spec.partition(':')
    call = attr.endswith('()')
    if call:
        attr = attr[:-2]
    if not sep or not module_name or not attr.isidentifier():
        raise ServiceLoadError('expected package.module:Name or package.module:factory()')
    module = import_for_loading(module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ServiceLoadError('module %s has no attribute %r' % (module_name, attr)) from None
    if call:
        try:
            obj = obj()
        except BaseException:
            raise ServiceLoadError('%s:%s() failed:\n%s' % (
                module_name, attr, traceback.format_exc().rstrip())) from None
    try:
        from rpyc.core.protocol import Connection as RpycConnection
        from rpyc.core.service import Service as RpycService
    except BaseException:
        raise ServiceLoadError('importing rpyc failed:\n%s'
                               % traceback.format_exc().rstrip()) from None
    if isinstance(obj, type) and issubclass(obj, RpycService):
        cls, make = obj, obj
    elif isinstance(obj, RpycService):
        cls = type(obj)

        def make():
            return obj
    else:
        raise ServiceLoadError('%r is not an rpyc.Service subclass or instance' % (obj,))
    if cls._protocol is not RpycConnection:
        raise ServiceLoadError(
            '%s sets _protocol = %r: rpyc-classicd serves it with its own protocol engine, which '
            'replaces rpyc\'s Connection class; remove the override to host it here'
            % (cls.__name__, cls._protocol))
    return make, tuple(str(a) for a in cls.get_service_aliases())


def hosted_config(ours):
    """conn._config's base for a hosted service: rpyc's DEFAULT_CONFIG with the daemon's keys."""
    try:
        from rpyc.core.protocol import DEFAULT_CONFIG
        config = dict(DEFAULT_CONFIG)
    except BaseException:
        config = {}
    config.update(ours)
    return config


def _endpoints(fd):
    """(getsockname(), getpeername()) of the socket `fd`, as Python's socket gives them (what
    rpyc's server puts in conn._config['endpoints']); None when `fd` is no connected socket."""
    if fd < 0:
        return None
    import socket
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        return (sock.getsockname(), sock.getpeername())
    except OSError:
        return None
    finally:
        sock.detach()


class HostedStream:
    """conn._channel.stream: `sock` is a socket over a dup() of the connection's descriptor, made
    when first asked for (getpeername(), getsockname(), repr(); shutting it down ends the
    connection, as it would under rpyc). Under TLS it also answers getpeercert(), cipher() and
    version() as rpyc's ssl.SSLSocket would (TLSSessionSocket)."""

    def __init__(self, fd, tls=None):
        self._fd = fd
        self._tls = tls
        self._sock = None

    @property
    def sock(self):
        if self._sock is None:
            if self._fd < 0:
                raise AttributeError('sock: the connection has no descriptor')
            import os
            import socket
            dup = os.dup(self._fd)
            try:
                if self._tls is None:
                    self._sock = socket.socket(fileno=dup)
                else:
                    self._sock = _tls_session_socket_class()(fileno=dup)
                    self._sock._tls = self._tls
            except OSError:
                os.close(dup)
                raise AttributeError('sock: the connection is not a socket') from None
        return self._sock

    @property
    def closed(self):
        return self._fd < 0

    def fileno(self):
        if self._fd < 0:
            raise EOFError('stream has been closed')
        return self._fd

    def close(self):
        """Forgets the descriptor (the daemon closes it) and closes the dup()."""
        self._fd = -1
        if self._sock is not None:
            self._sock.close()


class HostedChannel:
    """conn._channel: its stream, and the settings services change (compress)."""

    def __init__(self, fd, tls=None):
        self.stream = HostedStream(fd, tls)
        self.compress = True

    @property
    def closed(self):
        return self.stream.closed

    def fileno(self):
        return self.stream.fileno()


class HostedConnection:
    """`conn` as a hosted service's code sees it: the parts of rpyc's Connection that services
    use (root, _config, close(), closed, fileno(), ping(), _channel.stream.sock)."""

    def __init__(self, proxies, config, fd, tls=None):
        self._proxies = proxies
        self._config = config
        self._closed = False
        self._root = None
        self._channel = HostedChannel(fd, tls)

    @property
    def root(self):
        """The client's root object (its service), fetched once."""
        if self._root is None:
            self._root = _native.request(self._proxies.handle, _GETROOT, ())
        return self._root

    @property
    def closed(self):
        return self._closed

    @closed.setter
    def closed(self, value):
        """Set by the daemon when the connection has ended (before on_disconnect)."""
        if value:
            self._closed = True
            self._channel.stream.close()

    def close(self):
        """Closes the connection, from any thread (on_connect included): the client gets
        rpyc's CLOSE; on_disconnect runs once the connection has ended."""
        if self._closed:
            return
        self._closed = True
        _native.close(self._proxies.handle)

    def fileno(self):
        return self._channel.fileno()

    def ping(self, data=None, timeout=3):
        if data is None:
            data = 'abcdefghijklmnopqrstuvwxyz' * 20
        echo = _native.request(self._proxies.handle, _PING, (data,))
        if echo != data:
            from rpyc.core.protocol import PingError
            raise PingError('echo mismatches sent data')

    def __repr__(self):
        return '<rpyc-classicd hosted connection %r %s>' % (
            self._config.get('connid'), 'closed' if self._closed else 'open')


def service_logger(name, emit, level):
    """conn._config['logger']: logging.getLogger(name) at `level`, with a handler that hands each
    record to the daemon's log through `emit(levelno, message)`."""
    import logging

    class DaemonHandler(logging.Handler):
        def emit(self, record):
            try:
                emit(record.levelno, self.format(record))
            except Exception:
                self.handleError(record)

    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.addHandler(DaemonHandler())
    return logger


_TLSSessionSocket = None


def _tls_session_socket_class():
    """The class of conn._channel.stream.sock under TLS, made once."""
    global _TLSSessionSocket
    if _TLSSessionSocket is not None:
        return _TLSSessionSocket
    import socket

    class TLSSessionSocket(socket.socket):
        """The connection's socket (it carries the encrypted bytes: the daemon's OpenSSL runs the
        session) with ssl.SSLSocket's getpeercert(), cipher() and version() answered from the
        daemon's session. Not an ssl.SSLSocket."""
        __slots__ = ('_tls',)

        def getpeercert(self, binary_form=False):
            """None without a client certificate; its DER with binary_form; else the dict
            getpeercert() gives ({} when it was not verified)."""
            der, verified = self._tls[2], self._tls[3]
            if der is None:
                return None
            if binary_form:
                return der
            return decode_certificate(der) if verified else {}

        def cipher(self):
            """(name, protocol version, secret bits)."""
            return self._tls[1]

        def version(self):
            return self._tls[0]

    _TLSSessionSocket = TLSSessionSocket
    return TLSSessionSocket


def make_hosted_root(make, config, proxies, connid, fd, credentials, endpoints, tls=None):
    """(root, conn) of a new connection. `endpoints` comes from the daemon (hosting.cc), or is
    Ellipsis for a socket family it does not spell: Python's socket module then reads them."""
    conf = dict(config)
    conf['connid'] = 'conn%d' % connid
    conf['credentials'] = credentials
    conf['endpoints'] = _endpoints(fd) if endpoints is Ellipsis else endpoints
    return make(), HostedConnection(proxies, conf, fd, tls)
