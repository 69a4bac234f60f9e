"""What the heads of an agent's HTTP/2 requests may make the firewall hold, across its connections.

An HTTP/1 connection holds one request head at a time, bounded as it arrives (64 KiB,
``mitm_limits``). An HTTP/2 connection is different twice over: a head may come as a HEADERS
frame and up to 64 CONTINUATION frames of 128 KiB each, all kept by the h2 library until the
block ends (8 MiB a connection); and a connection carries up to 100 streams at once, each
keeping its head while it waits for its body. Times ``capacity.MAX_CLIENT_CONNECTIONS``,
either is gigabytes in a sidecar of 512 MiB. Measured here in the firewall's peak memory, in
what the firewall did with the connections, and in that it serves on."""

from __future__ import annotations

import ssl
import threading

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import pytest
from h2server import H2Server
from hyperframe.frame import ContinuationFrame, HeadersFrame, SettingsFrame
from test_live import LiveFirewall
from test_live_hardening import MiB, connect_tunnel, vm_hwm

# enough connections that what each could hold before the bounds shows well above the noise
CONNECTIONS = 24
FRAME = 128 * 1024  # the largest frame mitmproxy's HTTP/2 layer takes (max_inbound_frame_size)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H2Upstream(H2Server):
    """An HTTP/2 upstream on loopback that records the path of every request it is sent and
    answers it 200 (the firewall speaks HTTP/2 to a client only when the upstream does)."""

    def __init__(self, cert_file):
        self.paths: list[str] = []
        self.lock = threading.Lock()
        super().__init__(cert_file)

    def serve_h2(self, tls, conn) -> None:
        while data := tls.recv(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    with self.lock:
                        self.paths.append(dict(event.headers)[b":path"].decode())
                    conn.send_headers(event.stream_id, [(":status", "200")], end_stream=True)
            tls.sendall(conn.data_to_send())


@pytest.fixture
def h2_upstream(upstream):
    server = H2Upstream(upstream.cert_file)
    yield server
    server.close()


@pytest.fixture
def fw(tmp_path, upstream, h2_upstream):
    f = LiveFirewall(tmp_path, upstream,
                     allow=["localhost", f"localhost:{upstream.port}", f"localhost:{h2_upstream.port}"])
    yield f
    f.close()


def h2_socket(fw: LiveFirewall, port: int) -> ssl.SSLSocket:
    ctx = fw.tls_context()
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(connect_tunnel(fw, "localhost", port), server_hostname="localhost")
    assert tls.selected_alpn_protocol() == "h2", "the firewall did not speak HTTP/2 to the client"
    return tls


def send_until_closed(sock: ssl.SSLSocket, frames: list[bytes]) -> bool:
    """Send `frames`; True when the firewall closed the connection before it took them all."""
    try:
        for frame in frames:
            sock.sendall(frame)
    except OSError:
        return True
    return False


def closed_by_firewall(sock: ssl.SSLSocket) -> bool:
    """Whether the firewall closes `sock` (a GOAWAY may come first) within a few seconds."""
    sock.settimeout(3)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


def test_a_header_block_that_never_ends_is_bounded(fw, upstream, h2_upstream):
    peak_before = vm_hwm(fw.proc.pid)
    start = HeadersFrame(1, data=hpack.Encoder().encode([(":method", "POST"), (":scheme", "https"),
                                                         (":authority", f"localhost:{h2_upstream.port}"),
                                                         (":path", "/never-ending-head")]))
    # 63 more frames of 128 KiB: all the h2 library itself keeps of one block, never ended
    rest = [ContinuationFrame(1, data=b"\x40" * FRAME).serialize() for _ in range(63)]
    socks = [h2_socket(fw, h2_upstream.port) for _ in range(CONNECTIONS)]
    try:
        cut = 0
        for sock in socks:
            cut += send_until_closed(sock, [PREFACE + SettingsFrame(0).serialize() + start.serialize(), *rest])
        growth = vm_hwm(fw.proc.pid) - peak_before
        closed = sum(closed_by_firewall(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()
    assert growth < 48 * MiB, f"firewall peak memory grew by {growth / MiB:.0f} MiB ({cut} of {CONNECTIONS} cut)"
    assert closed == CONNECTIONS, f"{CONNECTIONS - closed} connections kept an unending head open"
    assert "/never-ending-head" not in h2_upstream.paths
    assert fw.https("localhost", upstream.port, "/after-heads")[0] == 200


def h2_get(fw: LiveFirewall, port: int, path: str) -> int:
    """An ordinary HTTP/2 request through the firewall; the status it was answered with."""
    sock = h2_socket(fw, port)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", f"localhost:{port}"),
                              (":path", path)], end_stream=True)  # fmt: skip
        sock.sendall(conn.data_to_send())
        while data := sock.recv(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    return int(dict(event.headers)[b":status"])
            sock.sendall(conn.data_to_send())
        raise AssertionError("the firewall closed the connection unanswered")
    finally:
        sock.close()


def open_streams(sock: ssl.SSLSocket, conn: h2.connection.H2Connection, port: int, count: int) -> None:
    """Open `count` streams, each a head near h2's 64 KiB limit and no end (its body never comes),
    ignoring what the firewall's SETTINGS say, as an attacker would."""
    try:
        for n in range(count):
            fields = [(":method", "POST"), (":scheme", "https"), (":authority", f"localhost:{port}"),
                      (":path", "/open-stream")]
            # all literal (never indexed): the firewall is sent every byte it keeps
            fields += [(f"x-filler-{i}", f"{n:03d}" + "v" * 3900) for i in range(15)]
            conn.send_headers(1 + 2 * n, fields, end_stream=False)
            sock.sendall(conn.data_to_send())
    except OSError:
        pass  # closed by the firewall


def refused_or_closed(sock: ssl.SSLSocket, conn: h2.connection.H2Connection) -> bool:
    """Whether the firewall refused a stream (REFUSED_STREAM) or closed the connection."""
    sock.settimeout(1)
    try:
        while data := sock.recv(65536):
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    return True
    except TimeoutError:
        return False
    except (OSError, h2.exceptions.ProtocolError):
        pass
    return True


def test_the_heads_of_a_connections_open_streams_are_bounded(fw, upstream, h2_upstream):
    """100 streams a connection (h2's own bound), each with a head near h2's 64 KiB limit and
    never ended: a connection keeps at most ``h2_limits.MAX_H2_HEADS`` of heads; the stream past
    it is refused (REFUSED_STREAM: a client may send it again), past ``MAX_H2_STREAMS`` the
    connection is closed."""
    peak_before = vm_hwm(fw.proc.pid)
    opened = []
    try:
        for _ in range(CONNECTIONS):
            sock = h2_socket(fw, h2_upstream.port)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            open_streams(sock, conn, h2_upstream.port, 100)
            opened.append((sock, conn))
        growth = vm_hwm(fw.proc.pid) - peak_before
        answered = sum(refused_or_closed(sock, conn) for sock, conn in opened)
    finally:
        for sock, _ in opened:
            sock.close()
    assert growth < 48 * MiB, f"firewall peak memory grew by {growth / MiB:.0f} MiB"
    assert answered == CONNECTIONS, f"{CONNECTIONS - answered} connections kept 100 heads open"
    assert "/open-stream" not in h2_upstream.paths
    # an ordinary HTTP/2 request is served on, and reaches the upstream
    assert h2_get(fw, h2_upstream.port, "/after-streams") == 200
    assert "/after-streams" in h2_upstream.paths


def test_trailers_count_with_the_heads(fw, upstream, h2_upstream):
    """Two streams waiting with heads near 64 KiB, then a third whose trailers would take the
    connection's heads past ``MAX_H2_HEADS``: the connection is closed, the third request never
    reaches the upstream; small trailers pass."""
    sock = h2_socket(fw, h2_upstream.port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    try:
        open_streams(sock, conn, h2_upstream.port, 2)
        base = [(":method", "POST"), (":scheme", "https"), (":authority", f"localhost:{h2_upstream.port}")]
        conn.send_headers(5, [*base, (":path", "/big-trailers")])
        conn.send_data(5, b"body")
        conn.send_headers(5, [(f"x-trailer-{i}", "t" * 3900) for i in range(15)], end_stream=True)
        sock.sendall(conn.data_to_send())
        assert refused_or_closed(sock, conn), "trailers past the connection's bound were taken"
    finally:
        sock.close()
    assert "/big-trailers" not in h2_upstream.paths
    sock = h2_socket(fw, h2_upstream.port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    try:
        conn.send_headers(1, [(":method", "POST"), (":scheme", "https"), (":authority", f"localhost:{h2_upstream.port}"),
                              (":path", "/small-trailers")])  # fmt: skip
        conn.send_data(1, b"body")
        conn.send_headers(1, [("x-trailer", "t" * 100)], end_stream=True)
        sock.sendall(conn.data_to_send())
        status = None
        while status is None and (data := sock.recv(65536)):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    assert status == 200 and "/small-trailers" in h2_upstream.paths
