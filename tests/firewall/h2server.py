"""An HTTP/2 test upstream on loopback, for the live firewall tests: TLS with the test upstream's
certificate, offering only h2 (the firewall speaks HTTP/2 to a client only when the upstream
does), a thread per connection. A subclass answers in `serve_h2` on a connection already
opened (the server's preface sent); it sets its own state before calling `__init__`, which
starts accepting."""

from __future__ import annotations

import socket
import ssl

import h2.config
import h2.connection
import h2.exceptions
from test_live_hardening import serve


class H2Server:
    def __init__(self, cert_file):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert_file)
        self.ctx.set_alpn_protocols(["h2"])
        self.sock = serve(self._handle)
        self.port = self.sock.getsockname()[1]

    def _handle(self, raw: socket.socket) -> None:
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as tls:
                conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
                conn.initiate_connection()
                tls.sendall(conn.data_to_send())
                self.serve_h2(tls, conn)
        except (OSError, h2.exceptions.H2Error):
            pass  # the firewall hanging up on us (refusals, a test's end) is expected

    def serve_h2(self, tls: ssl.SSLSocket, conn: h2.connection.H2Connection) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()
