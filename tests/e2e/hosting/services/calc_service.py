"""A service as people write them, served by both servers in the differential tests: exposed
methods, a non-exposed one, an exposed nested class, an object with an _rpyc_getattr hook, an
exception class of its own, and on_connect calling the client back."""

import rpyc


class CalcError(Exception):
    """The service's own exception class."""


class Box:
    exposed_value = 10
    plain = 'plain'
    _private = 'private'

    def exposed_double(self):
        return self.exposed_value * 2


class Hooked:
    def _rpyc_getattr(self, name):
        if name.startswith('no_'):
            raise AttributeError('hook refuses %s' % name)
        return 'hooked:' + name


class CalculatorService(rpyc.Service):
    secret = 'not exposed'
    _private = 'private'

    def on_connect(self, conn):
        self._conn = conn
        # Calls the client before the first request is served.
        try:
            self.client_said = conn.root.hello()
        except Exception as e:  # a client without a service of its own
            self.client_said = 'no client service: %s' % type(e).__name__

    def on_disconnect(self, conn):
        pass

    def exposed_add(self, a, b):
        return a + b

    def hidden(self):
        return 'hidden'

    def exposed_client_said(self):
        return self.client_said

    def exposed_fail(self, text):
        raise CalcError(text)

    def exposed_divide(self, a, b):
        return a / b

    def exposed_box(self):
        return Box()

    def exposed_hooked(self):
        return Hooked()

    def exposed_numbers(self):
        return [1, 2, 3]

    def exposed_call_back(self, fn, value):
        return fn(value)

    class exposed_Counter:
        def __init__(self, start=0):
            self.count = start

        def exposed_incr(self):
            self.count += 1
            return self.count


class NotAService:
    pass


class OwnProtocolService(rpyc.Service):
    _protocol = type('MyConnection', (rpyc.Connection,), {})


def make_calculator():
    return CalculatorService()


calculator_instance = CalculatorService()
