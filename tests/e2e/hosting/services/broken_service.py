"""Fails to import (the start-up tests check the traceback reaches the message)."""

import rpyc

raise RuntimeError('broken on purpose')
