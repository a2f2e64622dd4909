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
