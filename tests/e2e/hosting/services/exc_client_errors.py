"""An exception class of the clients' own, in a module the services never import: whether the
server imports it (import_custom_exceptions) is part of what the exception tests compare."""


class ClientError(Exception):
    """Raised by the client's callbacks."""

    def __init__(self, text, code=0):
        super().__init__(text, code)
        self.code = code
