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
        # Made when the first proxy is (most connections never get one; a WeakValueDictionary
        # costs more to make than the rest of this object).
        self.proxies = None
        self.classes = {}

    def proxy(self, id_pack):
        p = self.proxies.get(id_pack) if self.proxies is not None else None
        if p is not None:
            object.__setattr__(p, '____refcount__',
                               object.__getattribute__(p, '____refcount__') + 1)
            return p
        cls = self._class_for(id_pack)
        p = object.__new__(cls)
        object.__setattr__(p, '____conn__', self)
        object.__setattr__(p, '____id_pack__', id_pack)
        object.__setattr__(p, '____refcount__', 1)
        if self.proxies is None:  # the first proxy, or drop() ran during _class_for's INSPECT
            self.proxies = weakref.WeakValueDictionary()
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
        self.proxies = None
        self.classes = {}
