"""An HTTP/2 client that stops reading must not make the firewall buffer its download.

HTTP/2 has flow control of its own: the client grants a window and the proxy may send no
more. mitmproxy keeps what the window does not let it send in memory (``stream_buffers``)
and goes on reading the upstream, so a client that grants nothing more has the whole
response pulled into the firewall. Measured on the upstream's side (how much of the body it
could hand over) and in the firewall's peak memory."""

from __future__ import annotations

import ssl
import threading

import h2.config
import h2.connection
import h2.events
import pytest
from h2server import H2Server
from test_live import TIMEOUT, LiveFirewall
from test_live_hardening import MiB, connect_tunnel, vm_hwm

BODY = 96 * MiB
CHUNK = 64 * 1024
# How long the upstream is given to hand its body over while the client reads nothing. Without
# back-pressure the firewall takes it all well within this; with it, never (so a slow machine
# can only make the test pass wrongly before the fix, never fail wrongly after it).
STALL_WAIT = 20


class H2BigUpstream(H2Server):
    """An HTTP/2 upstream on loopback answering every request with a `BODY`-byte body; it counts
    the bytes the firewall took (sent on a blocking socket: what the firewall did not read waits)."""

    def __init__(self, cert_file):
        self.sent = 0
        self.done = threading.Event()
        super().__init__(cert_file)

    def serve_h2(self, tls, conn) -> None:
        while True:
            data = tls.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    self._answer(tls, conn, event.stream_id)
            # read on until the firewall hangs up: closing with its bytes unread would
            # reset the connection, and the body's end with it
            tls.sendall(conn.data_to_send())

    def _answer(self, tls, conn, stream_id: int) -> None:
        conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(BODY))])
        tls.sendall(conn.data_to_send())
        block = b"x" * CHUNK
        while self.sent < BODY:
            # mitmproxy grants a 2 GiB window: only TCP (what the firewall reads) holds us back
            conn.send_data(stream_id, block[: conn.max_outbound_frame_size], end_stream=self.sent + CHUNK >= BODY)
            tls.sendall(conn.data_to_send())
            self.sent += min(CHUNK, conn.max_outbound_frame_size)
        self.done.set()


@pytest.fixture
def big(upstream):
    server = H2BigUpstream(upstream.cert_file)
    yield server
    server.close()


@pytest.fixture
def fw(tmp_path, upstream, big):
    f = LiveFirewall(tmp_path, upstream, allow=["localhost", f"localhost:{upstream.port}", f"localhost:{big.port}"])
    yield f
    f.close()


def h2_tunnel(fw: LiveFirewall, port: int) -> tuple[ssl.SSLSocket, h2.connection.H2Connection]:
    ctx = fw.tls_context()
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(connect_tunnel(fw, "localhost", port), server_hostname="localhost")
    assert tls.selected_alpn_protocol() == "h2", "the firewall did not speak HTTP/2 to the client"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", f"localhost:{port}"),
                          (":path", "/big")], end_stream=True)  # fmt: skip
    tls.sendall(conn.data_to_send())
    return tls, conn


def read_body(tls: ssl.SSLSocket, conn: h2.connection.H2Connection, ack: bool, most: int) -> int:
    """Read DATA of stream 1 until `most` bytes came or it ended; grant the window again if `ack`."""
    got = 0
    while got < most:
        data = tls.recv(65536)
        assert data, "the firewall closed the connection"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                got += len(event.data)
                if ack:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                return got
            elif isinstance(event, h2.events.StreamReset):
                raise AssertionError(f"the firewall reset the stream: {event}")
        tls.sendall(conn.data_to_send())
    return got


def test_a_client_that_grants_no_window_does_not_have_the_download_buffered(fw, upstream, big):
    peak_before = vm_hwm(fw.proc.pid)
    tls, conn = h2_tunnel(fw, big.port)
    tls.settimeout(TIMEOUT)
    # the client's first window (64 KiB), then nothing more: the rest must stay upstream
    first = read_body(tls, conn, ack=False, most=65535)
    big.done.wait(STALL_WAIT)
    held = big.sent
    growth = vm_hwm(fw.proc.pid) - peak_before
    assert not big.done.is_set() and held < 32 * MiB, f"the firewall took {held / MiB:.0f} MiB nobody read"
    assert growth < 48 * MiB, f"firewall peak memory grew by {growth / MiB:.0f} MiB"
    # others are still served meanwhile
    assert fw.https("localhost", upstream.port, "/while-stalled")[0] == 200
    # and once the client reads again, the rest of the body follows (back-pressure, not a cut)
    conn.acknowledge_received_data(first, 1)
    tls.sendall(conn.data_to_send())
    rest = read_body(tls, conn, ack=True, most=BODY)
    tls.close()
    assert first + rest == BODY and big.done.is_set()
