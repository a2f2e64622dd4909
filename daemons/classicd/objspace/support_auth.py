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
    obj = import_for_loading(module_name)
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
