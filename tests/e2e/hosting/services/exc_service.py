"""A service for the tests of rpyc's exception keys (include_local_traceback,
include_local_version, import/instantiate_custom_exceptions, instantiate_oldstyle_exceptions,
propagate_SystemExit/KeyboardInterrupt_locally): it raises, and it reports what it sees of an
exception raised by the client's callback."""

import sys

import rpyc

REMOTE_TB = '\n\n========= Remote Traceback'


class ServiceError(Exception):
    """The service's own exception class (its module is imported on the server)."""


class MySystemExit(SystemExit):
    """Not SystemExit itself: rpyc sends it to the client whatever the keys say."""


class ExceptionService(rpyc.Service):
    def exposed_fail(self, text):
        raise ServiceError(text)

    def exposed_exit(self, text):
        raise SystemExit(text)

    def exposed_interrupt(self, text):
        raise KeyboardInterrupt(text)

    def exposed_exit_subclass(self, text):
        raise MySystemExit(text)

    def exposed_add(self, a, b):
        return a + b

    def exposed_catch(self, fn):
        """What the service sees of the exception `fn` (a client callable) raises."""
        try:
            fn()
        except BaseException as e:
            from rpyc.core.vinegar import GenericException
            cls = type(e)
            return (cls.__module__, cls.__name__,
                    tuple(c.__name__ for c in cls.__mro__),
                    isinstance(e, GenericException), isinstance(e, ServiceError),
                    isinstance(e, KeyError),
                    tuple(a if isinstance(a, (str, int)) else repr(a) for a in e.args),
                    getattr(e, 'code', None), str(e).split(REMOTE_TB)[0],
                    REMOTE_TB in str(e))
        return 'no exception'

    def exposed_call(self, fn):
        """Calls `fn` and lets its exception go back to the client."""
        return fn()

    def exposed_imported(self, name):
        return name in sys.modules
