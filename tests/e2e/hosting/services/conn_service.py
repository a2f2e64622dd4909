"""A service whose code uses its `conn` as services in the wild do: conn._config (connid,
endpoints, logger, credentials), conn.close() (from a request, from a thread of its own, from
on_connect), conn.closed, conn.fileno(), conn.ping() and conn._channel.stream.sock. Each hook call
is appended to the file $HOSTING_HOOK_LOG (when set), so that tests count them in every mode."""

import logging
import os
import stat
import threading
import time

import rpyc


def note(what, conn):
    path = os.environ.get('HOSTING_HOOK_LOG')
    if path:
        with open(path, 'a') as f:
            f.write('%s %s %d\n' % (what, conn._config['connid'], os.getpid()))


if os.environ.get('HOSTING_IMPORT_LOG'):
    with open(os.environ['HOSTING_IMPORT_LOG'], 'a') as f:
        f.write('%d\n' % os.getpid())


class ConnService(rpyc.Service):
    instances = 0

    def __init__(self):
        ConnService.instances += 1
        self.number = ConnService.instances

    def exposed_number(self):
        return self.number

    def on_connect(self, conn):
        self._conn = conn
        note('connect', conn)

    def on_disconnect(self, conn):
        note('disconnect', conn)

    def exposed_add(self, a, b):
        return a + b

    def exposed_call_back(self, fn, value):
        return fn(value)

    def exposed_pid(self):
        return os.getpid()

    def exposed_connid(self):
        return self._conn._config['connid']

    def exposed_connid_ok(self):
        connid = self._conn._config['connid']
        return isinstance(connid, str) and connid.startswith('conn') and connid[4:].isdigit()

    def exposed_endpoints(self):
        return self._conn._config['endpoints']

    def exposed_sock_names(self):
        sock = self._conn._channel.stream.sock
        return sock.getsockname(), sock.getpeername()

    def exposed_credentials(self):
        return self._conn._config['credentials']

    def exposed_logger(self):
        logger = self._conn._config['logger']
        port = self._conn._config['endpoints'][0][1]
        return (isinstance(logger, logging.Logger), logger.name == 'CONN/%d' % port)

    def exposed_logger_name(self):
        return self._conn._config['logger'].name

    def exposed_log(self, level, text):
        logger = self._conn._config['logger']
        if level == 'exception':
            try:
                raise ValueError('the traceback of ' + text)
            except ValueError:
                logger.exception('caught: %s', text)
        else:
            getattr(logger, level)('service says %s', text)

    def exposed_fileno(self):
        fd = self._conn.fileno()
        return isinstance(fd, int), stat.S_ISSOCK(os.fstat(fd).st_mode)

    def exposed_closed(self):
        return self._conn.closed

    def exposed_ping(self):
        return self._conn.ping()

    def exposed_config_keys(self):
        return sorted(k for k in ('connid', 'credentials', 'endpoints', 'logger')
                      if k in self._conn._config)

    def exposed_close_now(self):
        self._conn.close()
        return self._conn.closed

    def exposed_close_later(self, delay):
        conn = self._conn

        def later():
            time.sleep(delay)
            conn.close()
        threading.Thread(target=later, daemon=True).start()


class ClosingService(ConnService):
    """Closes every connection from on_connect."""

    def on_connect(self, conn):
        super().on_connect(conn)
        conn.close()
        note('closed' if conn.closed else 'open', conn)
