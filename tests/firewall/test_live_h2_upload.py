"""A streamed upload to an HTTP/2 upstream that takes it slowly must not be buffered in the firewall.

HTTP/2 has flow control: the upstream grants a window and the proxy may send no more.
mitmproxy keeps what the window does not let it send in memory (``stream_buffers``) and reads
the client on: one upload to a host whose DLP is off (its body is streamed, not held), to an
upstream that granted nothing more, put 300 MiB into the firewall in 3 s. Measured on the
upstream's side (what it was sent) and in the firewall's peak memory; then the upstream opens
its window and the whole body must follow (back-pressure, not a cut)."""

from __future__ import annotations

import ssl
import threading

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from h2server import H2Server
from test_live import TIMEOUT, LiveFirewall
from test_live_hardening import MiB, connect_tunnel, vm_hwm

BODY = 96 * MiB
BLOCK = 16 * 1024
# How long the client is given to push its body while the upstream grants nothing. Without
# back-pressure the firewall takes it all well within this; with it, never (so a slow machine
# can only make the test pass wrongly before the fix, never fail wrongly after it).
STALL_WAIT = 5


class ShutWindowUpstream(H2Server):
    """An HTTP/2 upstream on loopback that grants no window beyond its first (64 KiB) until
    `open_window` is set, then takes everything; it counts the body bytes it was sent and
    answers 200 when a body ends."""

    def __init__(self, cert_file):
        self.received = 0
        self.ended = threading.Event()
        self.open_window = threading.Event()
        super().__init__(cert_file)

    def serve_h2(self, tls, conn) -> None:
        tls.settimeout(0.1)  # to notice `open_window` while the firewall sends nothing
        owed: list[tuple[int, int]] = []
        while True:
            try:
                data = tls.recv(65536)
            except TimeoutError:
                data = None
            if data == b"":
                return
            for event in conn.receive_data(data) if data else ():
                if isinstance(event, h2.events.DataReceived):
                    self.received += len(event.data)
                    owed.append((event.flow_controlled_length, event.stream_id))
                elif isinstance(event, h2.events.StreamEnded):
                    conn.send_headers(event.stream_id, [(":status", "200")], end_stream=True)
                    self.ended.set()
            if self.open_window.is_set():
                for size, stream_id in owed:
                    conn.acknowledge_received_data(size, stream_id)
                owed.clear()
            tls.sendall(conn.data_to_send())


@pytest.fixture
def shut(upstream):
    server = ShutWindowUpstream(upstream.cert_file)
    yield server
    server.close()


@pytest.fixture
def fw(tmp_path, upstream, shut):
    f = LiveFirewall(tmp_path, upstream, allow=["localhost", f"localhost:{upstream.port}", f"localhost:{shut.port}"],
                     dlp={"hosts": {"localhost": "off"}})  # streamed, never held for DLP
    yield f
    f.close()


def tls_to(fw: LiveFirewall, port: int, alpn: str) -> ssl.SSLSocket:
    ctx = fw.tls_context()
    ctx.set_alpn_protocols([alpn])
    tls = ctx.wrap_socket(connect_tunnel(fw, "localhost", port), server_hostname="localhost")
    assert tls.selected_alpn_protocol() == alpn
    return tls


class H2Upload:
    """An HTTP/2 client uploading `BODY` on stream 1, within the window the firewall grants."""

    def __init__(self, fw: LiveFirewall, port: int):
        self.tls = tls_to(fw, port, "h2")
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.conn.send_headers(1, [(":method", "POST"), (":scheme", "https"), (":authority", f"localhost:{port}"),
                                   (":path", "/h2-upload"), ("content-length", str(BODY))])  # fmt: skip
        self.tls.sendall(self.conn.data_to_send())
        self.sent = 0
        self.status: int | None = None

    def send(self, wait: float) -> None:
        """Send until the body is out, or no window came for `wait` seconds."""
        while self.sent < BODY:
            room = min(BLOCK, BODY - self.sent, self.conn.local_flow_control_window(1))
            if room > 0:
                self.conn.send_data(1, b"u" * room, end_stream=self.sent + room == BODY)
                self.tls.sendall(self.conn.data_to_send())
                self.sent += room
            elif not self._read(wait):
                return

    def _read(self, wait: float) -> bool:
        self.tls.settimeout(wait)
        try:
            data = self.tls.recv(65536)
        except TimeoutError:
            return False
        assert data, "the firewall closed the connection"
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.status = int(dict(event.headers)[b":status"])
        self.tls.sendall(self.conn.data_to_send())
        return True

    def answer(self) -> int | None:
        while self.status is None and self._read(TIMEOUT):
            pass
        return self.status


def test_an_upload_an_http2_upstream_does_not_take_is_not_buffered(fw, shut):
    peak_before = vm_hwm(fw.proc.pid)
    upload = H2Upload(fw, shut.port)
    try:
        upload.send(wait=STALL_WAIT)
        held = upload.sent - shut.received
        growth = vm_hwm(fw.proc.pid) - peak_before
        assert held < 32 * MiB, f"the firewall took {held / MiB:.0f} MiB its upstream did not"
        assert growth < 48 * MiB, f"firewall peak memory grew by {growth / MiB:.0f} MiB"
        # once the upstream takes it, the rest of the body follows, whole
        shut.open_window.set()
        upload.send(wait=TIMEOUT)
        assert upload.sent == BODY
        assert upload.answer() == 200
    finally:
        upload.tls.close()
    assert shut.ended.is_set() and shut.received == BODY
