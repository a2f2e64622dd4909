# --- vinegar (§6) ------------------------------------------------------------------------------

REMOTE_LINE_START = "\n\n========= Remote Traceback "
REMOTE_LINE_END = " =========\n"
TRACEBACK_DENIED = "<traceback denied>"


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


def dump_exc(typ, val, tb, version, conn, with_traceback=True):
    """The vinegar tuple ((module, name), args, attrs, traceback_text) for a raised exception;
    without the traceback (a hosted service's include_local_traceback = false) its text is
    rpyc's placeholder."""
    if conn is not None:
        try:
            conn._last_traceback = tb
        except Exception:
            pass
    # Our own frames (SlaveService.eval and friends) are not the user's business.
    while tb is not None and tb.tb_frame.f_code.co_filename == _OWN_FILE:
        tb = tb.tb_next
    if not with_traceback:
        tbtext = TRACEBACK_DENIED
    else:
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


def _generic_class(modname, clsname, base, module_prefix):
    """A subclass of `base` named module.name, for a client exception whose class is not used."""
    fullname = '%s.%s' % (modname, clsname)
    key = (base, fullname)
    cls = _generic_classes.get(key)
    if cls is None:
        if len(_generic_classes) >= _CLASS_CACHE_SIZE:
            _generic_classes.clear()
        cls = type(fullname, (base,), {'__module__': module_prefix + modname})
        _generic_classes[key] = cls
    return cls


def _rebuilt(cls, args, attrs, tbtext):
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


def _is_exception_class(cls):
    return isinstance(cls, type) and issubclass(cls, BaseException)


def load_exc(val):
    """Turns a vinegar value from the client into an exception instance to raise here (the
    classic service: the class is imported and used whatever its module)."""
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
    if not _is_exception_class(cls):
        cls = _generic_class(modname, clsname, GenericException, 'classicd/')
    return _rebuilt(cls, args, attrs, tbtext)


_rpyc_generic = []


def _hosted_generic_base():
    """rpyc's own GenericException (a hosted service may catch it by that name)."""
    if not _rpyc_generic:
        try:
            from rpyc.core.vinegar import GenericException as base
        except BaseException:
            base = GenericException
        _rpyc_generic.append(base)
    return _rpyc_generic[0]


def load_exc_hosted(val, import_custom, instantiate_custom):
    """load_exc() under a hosted service's protocol_config, as rpyc's server loads it: the
    client's module is imported only with import_custom_exceptions; its class is used only with
    instantiate_custom_exceptions (and its module already imported), else only a builtins class
    is; anything else becomes a subclass of rpyc's GenericException named module.name, whose
    module is 'rpyc.core.vinegar/' + module."""
    if type(val) is int and val == 1:
        return StopIteration()
    if type(val) is str:
        return _hosted_generic_base()(val)
    (modname, clsname), args, attrs, tbtext = val
    if import_custom and modname not in sys.modules:
        try:
            __import__(modname, None, None, '*')
        except Exception:
            pass
    if instantiate_custom:
        module = sys.modules.get(modname)
    elif modname == 'builtins':
        module = builtins
    else:
        module = None
    cls = getattr(module, clsname, None) if module is not None else None
    if not _is_exception_class(cls):
        cls = _generic_class(modname, clsname, _hosted_generic_base(), 'rpyc.core.vinegar/')
    return _rebuilt(cls, args, attrs, tbtext)


def propagate_exc(conn, typ, val, tb):
    """A hosted service's request raised SystemExit or KeyboardInterrupt and its
    propagate_*_locally key is true: rpyc's server re-raises it, which ends this connection. Here
    it is logged and the connection closed (the client sees CLOSE and end of stream); the daemon
    and its other connections go on."""
    logger = None
    try:
        logger = conn._config.get('logger')
    except Exception:
        pass
    if logger is not None:
        try:
            logger.warning('%s raised by a request of %s (propagate_%s_locally is true): closing '
                           'the connection', _safe_repr(val), conn._config.get('connid'),
                           typ.__name__, exc_info=(typ, val, tb))
        except Exception:
            pass
    conn.close()
