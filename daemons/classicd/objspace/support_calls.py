# Python half of the classicd object space (daemons/classicd/objspace). The C++ side embeds it
# as the module `_classicd_support` at interpreter start. It holds the parts that are cold paths
# or need Python semantics. It is one module written in six files, one idea each, which CMake
# joins in this order (CMakeLists.txt, SUPPORT_PARTS) into one source compiled as
# "<classicd-support>" (so a part may use what an earlier part defines, and tracebacks hide the
# frames of every part alike):
#   support_calls.py         imports, handler numbers, the frame of the client's calls
#                            (docs/embedding.md §3.7), INSPECT method lists (protocol.md §5.3)
#   support_vinegar.py       vinegar (§6) both ways
#   support_classic_root.py  the classic root object (§7.2)
#   support_hosting.py       a hosted rpyc.Service (--service)
#   support_auth.py          credentials and authenticators
#   support_proxies.py       CTXEXIT and INSTANCECHECK, proxies ("netrefs") for the client's
#                            objects (§8)
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
# cannot reach this module's. Their code is the support module's, so dump_exc() hides their
# frames.

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
