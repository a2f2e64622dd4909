"""An example rpyc.Service for rpyc-classicd@example (rpyc-classicd(8), SERVICE HOSTING).

The same class runs unchanged under rpyc's own server:
    from rpyc.utils.server import ThreadedServer
    ThreadedServer(CalculatorService, hostname="127.0.0.1", port=18861).start()
Clients see only the exposed_ names: conn.root.add(1, 2) calls exposed_add.
"""

import rpyc


class CalculatorService(rpyc.Service):
    # rpyc names the service after the class ("CALCULATOR"); conn.root.get_service_name().

    def on_connect(self, conn):
        # A new instance per connection: state kept here belongs to this client.
        self.memory = 0

    def on_disconnect(self, conn):
        pass

    def exposed_add(self, a, b):
        return a + b

    def exposed_sub(self, a, b):
        return a - b

    def exposed_mul(self, a, b):
        return a * b

    def exposed_div(self, a, b):
        return a / b  # ZeroDivisionError reaches the client as rpyc's server sends it

    def exposed_store(self, value):
        self.memory = value

    def exposed_recall(self):
        return self.memory
