# Python half of the classicd object space (daemons/classicd/objspace). The C++ side embeds this
# file as the module `_classicd_support` at interpreter start. It holds the parts that are cold
# paths or need Python semantics: the frame of the client's calls (docs/embedding.md §3.7), the
# classic root object (docs/protocol.md §7.2), INSPECT method lists (§5.3), vinegar (§6) both
# ways, and proxies ("netrefs") for the client's objects (§8).
# The hot paths (boxing, the table of lent objects, GETATTR/CALL/...) are C++.
import builtins
import importlib
import inspect
import os
import pickle
import sys
import traceback
import types
import weakref

import _classicd_native as _native

# Handler numbers (docs/protocol.md §5.2).
_PING, _GETROOT = 1, 3  # rpyc.core.consts.HANDLE_PING, HANDLE_GETROOT
_GETATTR, _DELATTR, _SETATTR, _CALL, _CALLATTR = 4, 5, 6, 7, 8
_REPR, _STR, _CMP, _HASH, _DIR, _PICKLE = 9, 10, 11, 12, 13, 14
_INSPECT, _CTXEXIT, _INSTANCECHECK = 16, 19, 20

DELETED_ATTRS = frozenset(['__array_struct__', '__array_interface__'])
LOCAL_ATTRS = frozenset([
    '____conn__', '____id_pack__', '____refcount__', '__class__', '__cmp__', '__del__',
    '__delattr__', '__dir__', '__doc__', '__getattr__', '__getattribute__', '__hash__',
    '__instancecheck__', '__init__', '__metaclass__', '__module__', '__new__', '__reduce__',
    '__reduce_ex__', '__repr__', '__setattr__', '__slots__', '__str__', '__weakref__',
    '__dict__', '__methods__', '__exit__', '__eq__', '__ne__', '__lt__', '__gt__', '__le__',
    '__ge__',
]) | DELETED_ATTRS


# --- the frame of the client's calls (docs/embedding.md §3.7) ----------------------------------
# Builtins that read their caller's frame (eval, exec, globals, locals, vars, dir, type()'s
# __module__) fail when C++ calls them with no Python frame on the thread. CALL and CALLATTR call
# whatever runs no Python frame of its own through call0(), call() or call_kw() (call0: no
# arguments, called without a tuple, which costs less than obj(*())), as the Python server
# calls everything from its protocol's frames: each call gets a frame of its own (its locals die
# with it), and the globals are those of the module _classicd_calls, which persist like the
# Python server's protocol module's. A namespace of its own: user code that writes globals
# cannot reach this module's. Their code is this file's, so dump_exc() hides their frames.

def call0(obj, args=()):
    return obj()  # args: the same locals as call()'s


def call(obj, args):
    return obj(*args)


def call_kw(obj, args, kwargs):
    return obj(*args, **kwargs)


_calls_module = types.ModuleType('_classicd_calls', "Globals of the client's calls.")
_calls_module.__builtins__ = builtins
sys.modules['_classicd_calls'] = _calls_module
call0 = types.FunctionType(call0.__code__, vars(_calls_module), 'call0', call0.__defaults__)
call = types.FunctionType(call.__code__, vars(_calls_module), 'call')
call_kw = types.FunctionType(call_kw.__code__, vars(_calls_module), 'call_kw')


# --- INSPECT (§5.3) ----------------------------------------------------------------------------

def _getdoc(value):
    try:
        doc = inspect.getdoc(value)
    except Exception:
        return None
    return doc if type(doc) is str else None


def get_methods(obj, v6):
    """The (name, doc) pairs a client builds its proxy class from."""
    if isinstance(obj, type):
        mros = list(reversed(type(obj).__mro__)) + list(reversed(obj.__mro__))
    else:
        mros = list(reversed(type(obj).__mro__))
    attrs = {}
    for cls in mros:
        attrs.update(cls.__dict__)
    keep = inspect.isroutine if v6 else callable
    return tuple((name, _getdoc(value)) for name, value in attrs.items()
                 if name not in LOCAL_ATTRS and keep(value))


# --- vinegar (§6) ------------------------------------------------------------------------------

REMOTE_LINE_START = "\n\n========= Remote Traceback "
REMOTE_LINE_END = " =========\n"


def _safe_repr(value):
    try:
        text = repr(value)
    except Exception:
        return '<unrepresentable object>'
    return _clean(text)


def _clean(text):
    # Lone surrogates cannot be sent; keep them visible.
    if type(text) is not str:
        return '<non-str>'
    try:
        text.encode('utf-8')
        return text
    except UnicodeEncodeError:
        return text.encode('utf-8', 'backslashreplace').decode('utf-8')


def _wire_value(value):
    return value if _native.encodable(value) else _safe_repr(value)


_OWN_FILE = __file__ if '__file__' in globals() else '<classicd-support>'


def dump_exc(typ, val, tb, version, conn):
    """The vinegar tuple ((module, name), args, attrs, traceback_text) for a raised exception."""
    if conn is not None:
        try:
            conn._last_traceback = tb
        except Exception:
            pass
    # Our own frames (SlaveService.eval and friends) are not the user's business.
    while tb is not None and tb.tb_frame.f_code.co_filename == _OWN_FILE:
        tb = tb.tb_next
    try:
        tbtext = _clean(''.join(traceback.format_exception(typ, val, tb)))
    except Exception:
        tbtext = '<traceback unavailable>'
    args = []
    attrs = []
    try:
        names = dir(val)
    except Exception:
        names = ['args']
    for name in names:
        if name == 'args':
            try:
                args = [_wire_value(a) for a in val.args]
            except Exception:
                args = []
        elif name.startswith('_') or name == 'with_traceback':
            continue
        else:
            try:
                value = getattr(val, name)
            except Exception:
                continue
            attrs.append((_clean(name), _wire_value(value)))
    attrs.append(('_remote_version', version))
    module = getattr(typ, '__module__', None)
    if type(module) is not str:
        module = 'builtins'
    name = getattr(typ, '__name__', None)
    if type(name) is not str:
        name = 'Exception'
    return ((_clean(module), _clean(name)), tuple(args), tuple(attrs), tbtext)


class GenericException(Exception):
    """Raised for a client exception whose class cannot be found here."""


_generic_classes = {}
_derived_classes = {}


_CLASS_CACHE_SIZE = 1024


def _derived(cls):
    derived = _derived_classes.get(cls)
    if derived is not None:
        return derived
    if len(_derived_classes) >= _CLASS_CACHE_SIZE:
        _derived_classes.clear()

    def __str__(self):
        try:
            text = cls.__str__(self)
        except Exception:
            text = '<Unprintable exception>'
        remote_tb = getattr(self, '_remote_tb', None)
        if type(remote_tb) is str:
            text += '%s(%d)%s' % (REMOTE_LINE_START, remote_tb.count(REMOTE_LINE_START) + 1,
                                  REMOTE_LINE_END)
            text += remote_tb
        return text

    def __repr__(self):
        return str(self)

    try:
        derived = type(cls.__name__, (cls,), {'__str__': __str__, '__repr__': __repr__,
                                               '__module__': cls.__module__})
    except Exception:
        derived = cls
    _derived_classes[cls] = derived
    return derived


def load_exc(val):
    """Turns a vinegar value from the client into an exception instance to raise here."""
    if type(val) is int and val == 1:
        return StopIteration()
    if type(val) is str:
        return GenericException(val)
    (modname, clsname), args, attrs, tbtext = val
    if modname not in sys.modules:
        try:
            __import__(modname, None, None, '*')
        except Exception:
            pass
    cls = getattr(sys.modules[modname], clsname, None) if modname in sys.modules else None
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        fullname = '%s.%s' % (modname, clsname)
        cls = _generic_classes.get(fullname)
        if cls is None:
            if len(_generic_classes) >= _CLASS_CACHE_SIZE:
                _generic_classes.clear()
            cls = type(fullname, (GenericException,), {'__module__': 'classicd/' + modname})
            _generic_classes[fullname] = cls
    cls = _derived(cls)
    try:
        exc = cls.__new__(cls)
    except Exception:
        exc = GenericException()
    exc.args = args
    for name, value in attrs:
        try:
            setattr(exc, name, value)
        except Exception:
            pass
    exc._remote_tb = tbtext
    return exc


# --- the classic root (§7.2) -------------------------------------------------------------------

_DEFAULT_CONFIG = dict(
    allow_all_attrs=True, allow_pickle=True, allow_getattr=True, allow_setattr=True,
    allow_delattr=True, allow_exposed_attrs=False, import_custom_exceptions=True,
    instantiate_custom_exceptions=True, instantiate_oldstyle_exceptions=True,
    allow_safe_attrs=True, allow_public_attrs=False, exposed_prefix='exposed_',
    include_local_traceback=True, include_local_version=True,
    propagate_SystemExit_locally=False, propagate_KeyboardInterrupt_locally=True,
    sync_request_timeout=30)


class _PerConnectionConfig:
    """conn._config: a dict of the connection's own, made on first access (few clients look)."""

    def __get__(self, conn, owner=None):
        if conn is None:
            return self
        config = conn.__dict__['_config'] = dict(_DEFAULT_CONFIG)
        return config


class Connection:
    """What root.getconn() returns. rpyc.classic.pm reads _last_traceback."""
    __module__ = 'rpyc.core.protocol'
    # Class-level defaults: creating a connection runs no Python code.
    _last_traceback = None
    _closed = False
    _config = _PerConnectionConfig()

    @property
    def closed(self):
        return self._closed


class Service:
    __module__ = 'rpyc.core.service'
    __slots__ = ()
    ALIASES = ()
    _protocol = Connection

    def on_connect(self, conn):
        pass

    def on_disconnect(self, conn):
        pass

    def _rpyc_delattr(self, name):
        raise AttributeError('access denied')

    def _rpyc_setattr(self, name, value):
        raise AttributeError('access denied')

    @classmethod
    def get_service_aliases(cls):
        if cls.ALIASES:
            return tuple(str(n).upper() for n in cls.ALIASES)
        name = cls.__name__.upper()
        if name.endswith('SERVICE'):
            name = name[:-7]
        return (name,)

    @classmethod
    def get_service_name(cls):
        return cls.get_service_aliases()[0]

    exposed_get_service_aliases = get_service_aliases
    exposed_get_service_name = get_service_name


# Compiling dominates a small eval; code objects are immutable, so they are reused. Same result
# as eval(text): the file name is '<string>' and no __future__ flags are inherited.
_code_cache = {}
_CODE_CACHE_SIZE = 512
_CODE_CACHE_MAX_TEXT = 4096


def _compiled(text, mode):
    if type(text) is not str or len(text) > _CODE_CACHE_MAX_TEXT:
        return text
    key = (text, mode)
    code = _code_cache.get(key)
    if code is None:
        code = compile(text, '<string>', mode, dont_inherit=True)
        if len(_code_cache) >= _CODE_CACHE_SIZE:
            _code_cache.clear()
        _code_cache[key] = code
    return code


class Slave:
    __module__ = 'rpyc.core.service'
    __slots__ = ['_conn', 'namespace']

    def __init__(self):
        self._conn = None
        self.namespace = {}

    def execute(self, text):
        exec(_compiled(text, 'exec'), self.namespace)

    def eval(self, text):
        return eval(_compiled(text, 'eval'), self.namespace)

    def getmodule(self, name):
        if isinstance(name, tuple):
            name = '.'.join(name)
        return importlib.import_module(name)

    def getconn(self):
        return self._conn


class SlaveService(Slave, Service):
    __module__ = 'rpyc.core.service'
    __slots__ = ()

    def on_connect(self, conn):
        self._conn = conn


class MasterService(Service):
    __module__ = 'rpyc.core.service'
    __slots__ = ()

    def on_connect(self, conn):
        # The reference also runs the classic handshake towards the client here; a compatible
        # stdio server may skip it (docs/protocol.md §11), which works with every client.
        super().on_connect(conn)

    @staticmethod
    def _install(conn, slave):
        raise NotImplementedError('the daemon does not act as a classic client')


class ClassicService(MasterService, SlaveService):
    __module__ = 'rpyc.core.service'
    __slots__ = ()


def make_root(classic=False):
    root = ClassicService() if classic else SlaveService()
    conn = Connection()
    root.on_connect(conn)
    return root, conn


# --- a hosted rpyc.Service (--service) ---------------------------------------------------------

class ServiceLoadError(Exception):
    """Why a --service cannot be hosted; its text is the whole message."""


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
    try:
        module = importlib.import_module(module_name)
    except BaseException:
        raise ServiceLoadError('importing %s failed:\n%s'
                               % (module_name, traceback.format_exc().rstrip())) from None
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
    connection, as it would under rpyc)."""

    def __init__(self, fd):
        self._fd = fd
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
                self._sock = socket.socket(fileno=dup)
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

    def __init__(self, fd):
        self.stream = HostedStream(fd)
        self.compress = True

    @property
    def closed(self):
        return self.stream.closed

    def fileno(self):
        return self.stream.fileno()


class HostedConnection:
    """`conn` as a hosted service's code sees it: the parts of rpyc's Connection that services
    use (root, _config, close(), closed, fileno(), ping(), _channel.stream.sock)."""

    def __init__(self, proxies, config, fd):
        self._proxies = proxies
        self._config = config
        self._closed = False
        self._root = None
        self._channel = HostedChannel(fd)

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


def make_hosted_root(make, config, proxies, connid, fd, credentials):
    conf = dict(config)
    conf['connid'] = 'conn%d' % connid
    conf['credentials'] = credentials
    conf['endpoints'] = _endpoints(fd)
    return make(), HostedConnection(proxies, conf, fd)


# --- credentials and authenticators (issue 13) -------------------------------------------------

def warm_certificates():
    """Imports what decode_certificate() needs, once at start (forked children inherit it)."""
    import _ssl  # noqa: F401
    import base64  # noqa: F401


_certificates = {}  # DER -> getpeercert()'s dict: a client reconnects with the same certificate
_CERTIFICATES_KEPT = 256


def decode_certificate(der):
    """The dict ssl.SSLSocket.getpeercert() gives for the certificate `der`: CPython's own
    decoder (the one getpeercert() calls), reached through _ssl._test_decode_cert, which reads a
    PEM file; the file is a memfd (no disk), or a temporary file where /proc is missing. Decoding
    costs about as much as the handshake's signature (~0.25 ms), so the dicts of recent
    certificates are kept; each connection gets a copy of its own, as each gets a new dict from
    getpeercert()."""
    cert = _certificates.get(der)
    if cert is None:
        cert = _decode_certificate(der)
        if len(_certificates) >= _CERTIFICATES_KEPT:
            _certificates.clear()
        _certificates[der] = cert
    return dict(cert)


def _decode_certificate(der):
    import _ssl
    import base64
    pem = (b'-----BEGIN CERTIFICATE-----\n' + base64.encodebytes(der) +
           b'-----END CERTIFICATE-----\n')
    try:
        fd = os.memfd_create('rpyc-classicd-cert', os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            os.write(fd, pem)
            return _ssl._test_decode_cert('/proc/self/fd/%d' % fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    import tempfile
    with tempfile.NamedTemporaryFile(prefix='rpyc-classicd-cert') as f:
        f.write(pem)
        f.flush()
        return _ssl._test_decode_cert(f.name)


def peer_credentials(uid, gid, pid):
    """A Unix-socket peer's SO_PEERCRED as conn._config['credentials']."""
    return {'uid': uid, 'gid': gid, 'pid': pid}


def credentials_text(credentials):
    """What rpyc's server logs: 'welcome ADDR (repr)' when the credentials are true."""
    return repr(credentials) if credentials else ''


def set_classic_credentials(conn, credentials):
    conn.__dict__['_config'] = dict(_DEFAULT_CONFIG, credentials=credentials)


def load_authenticator(spec):
    """The callable named by 'package.module:callable' (--authenticator)."""
    module_name, sep, attr = spec.partition(':')
    if not sep or not module_name or not all(p.isidentifier() for p in attr.split('.')):
        raise ServiceLoadError('expected package.module:callable')
    try:
        obj = importlib.import_module(module_name)
    except BaseException:
        raise ServiceLoadError('importing %s failed:\n%s'
                               % (module_name, traceback.format_exc().rstrip())) from None
    for part in attr.split('.'):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ServiceLoadError('%s has no attribute %r' % (module_name, attr)) from None
    if not callable(obj):
        raise ServiceLoadError('%s:%s is %r, not a callable' % (module_name, attr, obj))
    try:
        import rpyc.utils.authenticators  # noqa: F401
    except BaseException:
        raise ServiceLoadError('importing rpyc failed:\n%s'
                               % traceback.format_exc().rstrip()) from None
    global _AuthenticatingSocket
    if _AuthenticatingSocket is None:  # made here, before forked children need it
        _AuthenticatingSocket = _deadline_socket_class()
    return obj


def _deadline_socket_class():
    import socket
    import time

    class AuthenticatingSocket(socket.socket):
        """The connection's socket as an authenticator gets it: a socket.socket over a duplicate
        of the connection's descriptor, each of whose operations waits no longer than what is
        left of the handshake deadline (nor than a timeout the authenticator sets)."""
        __slots__ = ('_deadline', '_own_timeout')

        def settimeout(self, value):
            self._own_timeout = value
            super().settimeout(value)

        def _bound(self):
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('the authentication deadline passed')
            own = self._own_timeout
            super().settimeout(left if own is None else min(own, left))

    for name in ('recv', 'recv_into', 'recvfrom', 'recvfrom_into', 'recvmsg', 'recvmsg_into',
                 'send', 'sendall', 'sendmsg', 'sendto'):
        def method(self, *args, _name=name, **kwargs):
            self._bound()
            return getattr(socket.socket, _name)(self, *args, **kwargs)
        method.__name__ = name
        setattr(AuthenticatingSocket, name, method)
    return AuthenticatingSocket


_AuthenticatingSocket = None


def authenticate(authenticator, fd, timeout):
    """rpyc's contract: authenticator(sock) -> (sock, credentials), or AuthenticationError.
    (0, credentials), (1, the AuthenticationError's text) or (2, what went wrong)."""
    global _AuthenticatingSocket
    import socket
    import time
    from rpyc.utils.authenticators import AuthenticationError
    if _AuthenticatingSocket is None:
        _AuthenticatingSocket = _deadline_socket_class()
    sock = _AuthenticatingSocket(fileno=os.dup(fd))
    sock._deadline = time.monotonic() + timeout
    sock._own_timeout = None
    try:
        try:
            result = authenticator(sock)
        except AuthenticationError as e:
            return 1, str(e)
        except TimeoutError as e:
            if time.monotonic() < sock._deadline:
                return 2, traceback.format_exc().rstrip()
            # The client's doing, not the authenticator's: a refusal.
            return 1, 'no answer within %g s (tls_handshake_timeout): %s' % (timeout, e)
        except ConnectionError as e:
            return 1, 'the connection failed during authentication: %s' % (e,)
        except BaseException:
            return 2, traceback.format_exc().rstrip()
        try:
            sock2, credentials = result
        except Exception:
            return 2, 'the authenticator returned %s, not (sock, credentials)' % (
                _short_repr(result),)
        if sock2 is not sock:
            same = False
            try:
                same = (type(sock2) in (socket.socket, _AuthenticatingSocket) and
                        os.fstat(sock2.fileno()).st_ino == os.fstat(fd).st_ino)
            except Exception:
                pass
            if not same:
                return 2, ('the authenticator returned %s, not the socket it was given: the daemon '
                           'serves the connection\'s own socket (for TLS, use ssl_keyfile, '
                           'ssl_certfile and ssl_cafile)' % _short_repr(sock2))
        return 0, credentials
    finally:
        sock.close()


def _short_repr(obj):
    try:
        text = repr(obj)
    except Exception:
        text = '<%s object>' % type(obj).__name__
    return text if len(text) <= 200 else text[:200] + '...'


# --- CTXEXIT and INSTANCECHECK (§5.2 notes) ----------------------------------------------------

def _resolve_class(name_pack):
    module, _, name = name_pack.rpartition('.')
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def ctxexit(exit_method, exc):
    """CTXEXIT once obj.__exit__ has been fetched (as a GETATTR, through the access policy)."""
    if not exc:
        return exit_method(None, None, None)
    cls = exc
    if isinstance(exc, BaseNetref):
        cls = _resolve_class(object.__getattribute__(exc, '____id_pack__')[0])
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            value = cls()
        except Exception:
            value = cls.__new__(cls)
        return exit_method(cls, value, None)
    try:
        raise TypeError('exceptions must derive from BaseException')
    except TypeError as e:
        return exit_method(TypeError, e, e.__traceback__)


def instancecheck(cls, other, name_pack):
    if other is not None:
        return isinstance(other, cls)
    if not isinstance(cls, type):
        return False
    other_cls = _resolve_class(name_pack)
    if isinstance(other_cls, type):
        return issubclass(other_cls, cls)
    return False


def pickle_dumps(obj, proto):
    return bytes(pickle.dumps(obj, proto))


# --- proxies for the client's objects (§8) -----------------------------------------------------

def _request(proxy, handler, args):
    conn = object.__getattribute__(proxy, '____conn__')
    return _native.request(conn.handle, handler, args)


class BaseNetref:
    __slots__ = ('____conn__', '____id_pack__', '____refcount__', '__weakref__')
    _local_class = None

    def __getattribute__(self, name):
        if name in LOCAL_ATTRS:
            if name == '__class__':
                cls = object.__getattribute__(self, '_local_class')
                if cls is None:
                    cls = _request(self, _GETATTR, (self, '__class__'))
                return cls
            if name == '__doc__':
                return _request(self, _GETATTR, (self, '__doc__'))
            if name in DELETED_ATTRS:
                raise AttributeError(name)
            return object.__getattribute__(self, name)
        if name == '__call__' or name == '_local_class':
            return object.__getattribute__(self, name)
        return _request(self, _GETATTR, (self, name))

    def __setattr__(self, name, value):
        if name in LOCAL_ATTRS:
            object.__setattr__(self, name, value)
        else:
            _request(self, _SETATTR, (self, name, value))

    def __delattr__(self, name):
        if name in LOCAL_ATTRS:
            object.__delattr__(self, name)
        else:
            _request(self, _DELATTR, (self, name))

    def __dir__(self):
        return list(_request(self, _DIR, (self,)))

    def __hash__(self):
        return _request(self, _HASH, (self,))

    def __repr__(self):
        return _request(self, _REPR, (self,))

    def __str__(self):
        return _request(self, _STR, (self,))

    def __eq__(self, other):
        return _request(self, _CMP, (self, other, '__eq__'))

    def __ne__(self, other):
        return _request(self, _CMP, (self, other, '__ne__'))

    def __lt__(self, other):
        return _request(self, _CMP, (self, other, '__lt__'))

    def __gt__(self, other):
        return _request(self, _CMP, (self, other, '__gt__'))

    def __le__(self, other):
        return _request(self, _CMP, (self, other, '__le__'))

    def __ge__(self, other):
        return _request(self, _CMP, (self, other, '__ge__'))

    def __exit__(self, exc, value, tb):
        return _request(self, _CTXEXIT, (self, exc))

    def __reduce_ex__(self, proto):
        return pickle.loads, (_request(self, _PICKLE, (self, proto)),)

    def __instancecheck__(self, other):
        if isinstance(other, BaseNetref):
            mine = object.__getattribute__(self, '____id_pack__')
            theirs = object.__getattribute__(other, '____id_pack__')
            if mine[2] != 0:
                raise TypeError('isinstance() arg 2 must be a type or tuple of types')
            if mine[1] == theirs[1]:
                return theirs[2] != 0
            return bool(_request(self, _INSTANCECHECK, (self, theirs)))
        return False

    def __del__(self):
        try:
            conn = object.__getattribute__(self, '____conn__')
            _native.queue_del(conn.handle, object.__getattribute__(self, '____id_pack__'),
                              object.__getattribute__(self, '____refcount__'))
        except Exception:
            pass


def _make_method(name, doc):
    if name == '__call__':
        def method(_self, *args, **kwargs):
            return _request(_self, _CALL, (_self, args, tuple(kwargs.items())))
    else:
        def method(_self, *args, **kwargs):
            return _request(_self, _CALLATTR, (_self, name, args, tuple(kwargs.items())))
    method.__name__ = name
    method.__doc__ = doc
    return method


def _make_class(name_pack, methods, local_class):
    namespace = {'__slots__': (), '_local_class': local_class}
    for name, doc in methods:
        name = str(name)
        if name not in LOCAL_ATTRS and name not in ('_local_class',):
            namespace[name] = _make_method(name, doc)
    module, _, clsname = str(name_pack).rpartition('.')
    namespace['__module__'] = module or 'builtins'
    return type(clsname or 'netref', (BaseNetref,), namespace)


_BUILTIN_TYPES = [
    BaseException, Exception, type(None), bool, types.BuiltinFunctionType, bytearray, bytes,
    types.CodeType, complex, dict, float, types.FrameType, frozenset, types.FunctionType,
    types.GeneratorType, int, list, type(iter([])), types.MappingProxyType, memoryview,
    types.MethodType, types.MethodWrapperType, object, type(iter(range(1))), set,
    type(iter(set())), slice, str, types.TracebackType, tuple, type(iter(())), type,
    types.WrapperDescriptorType,
]


def _methods_of(cls, as_class):
    mros = list(reversed(cls.__mro__))
    if as_class:
        mros = list(reversed(type.__mro__)) + mros
    attrs = {}
    for c in mros:
        attrs.update(c.__dict__)
    return [(name, None) for name, value in attrs.items()
            if name not in LOCAL_ATTRS and callable(value)]


def _builtin_tables():
    instances, classes = {}, {}
    for cls in _BUILTIN_TYPES + [types.ModuleType]:
        name_pack = 'builtins.' + cls.__name__
        instances[name_pack] = _make_class(name_pack, _methods_of(cls, False), cls)
        classes[name_pack] = _make_class(name_pack, _methods_of(cls, True), None)
    return instances, classes


_builtin_instance_classes, _builtin_class_classes = _builtin_tables()


class ProxyConn:
    """Per connection: the proxies for the client's objects, and their classes."""

    def __init__(self, handle):
        self.handle = handle
        self.v6 = True
        self.proxies = weakref.WeakValueDictionary()
        self.classes = {}

    def proxy(self, id_pack):
        p = self.proxies.get(id_pack)
        if p is not None:
            object.__setattr__(p, '____refcount__',
                               object.__getattribute__(p, '____refcount__') + 1)
            return p
        cls = self._class_for(id_pack)
        p = object.__new__(cls)
        object.__setattr__(p, '____conn__', self)
        object.__setattr__(p, '____id_pack__', id_pack)
        object.__setattr__(p, '____refcount__', 1)
        self.proxies[id_pack] = p
        return p

    def _class_for(self, id_pack):
        name_pack, _, instance_id = id_pack
        if instance_id == 0:
            cls = self.classes.get(id_pack)
            if cls is not None:
                return cls
        if name_pack != 'builtins.module' or self.v6:
            table = _builtin_class_classes if instance_id == 0 else _builtin_instance_classes
            cls = table.get(name_pack)
            if cls is not None:
                return cls
        methods = _native.request(self.handle, _INSPECT, (id_pack,))
        cls = _make_class(name_pack, methods, None)
        if instance_id == 0:
            self.classes[id_pack] = cls
        return cls

    def drop(self):
        self.proxies = weakref.WeakValueDictionary()
        self.classes = {}
