"""What many connections at once may make the firewall hold (capacity.py), on a live firewall.

Before these bounds, 384 connections each sending all but the last byte of a 1 MB body had a
bottle's firewall (512 MiB) killed by the kernel within 6 s. Checked here: in the firewall's
peak memory, in what the upstream received, and in that the firewall serves again after."""

from __future__ import annotations

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
import pytest
from firewall import capacity
from h2server import H2Server
from test_live import TIMEOUT, LiveFirewall
from test_live_hardening import MiB, connect_tunnel, read_until_closed, vm_hwm

BODY = 8 * MiB  # the policy's max_body_bytes here: each body alone is allowed
# enough bodies to take the pool past its capacity, and a few more
HELD_AT_ONCE = capacity.BODY_POOL_BYTES // BODY + 4


@pytest.fixture
def fw(tmp_path, upstream):
    f = LiveFirewall(tmp_path, upstream, dlp={"max_body_bytes": BODY})
    yield f
    f.close()


def wait_until(predicate, what: str, seconds: float = TIMEOUT) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def closed_at_once(sock: socket.socket) -> bool:
    """Whether the peer closed `sock` without a word (EOF or a reset) within a second."""
    sock.settimeout(1)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def answered(tunnels: list[ssl.SSLSocket], until: int) -> dict[int, bytes]:
    """What came back on each tunnel the firewall answered (index -> bytes up to its close),
    waiting until `until` of them were, or TIMEOUT passed."""
    got: dict[int, bytes] = {}
    deadline = time.monotonic() + TIMEOUT
    while len(got) < until and time.monotonic() < deadline:
        for n, tls in enumerate(tunnels):
            if n in got:
                continue
            tls.settimeout(0.02)  # a readable socket may carry only TLS session tickets: ask TLS
            try:
                first = tls.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except (ConnectionResetError, ssl.SSLError):
                first = b""
            tls.settimeout(2)  # an answer came: what follows it is its close
            got[n] = first + (read_until_closed(tls) if first else b"")
    return got


def test_connections_past_the_cap_are_closed_unread_and_the_firewall_serves_again(fw, upstream):
    held = [socket.create_connection(("127.0.0.1", fw.port), timeout=TIMEOUT)
            for _ in range(capacity.MAX_CLIENT_CONNECTIONS)]
    try:
        # the last of them is accepted and counted (it gets a CONNECT answered)
        held[-1].sendall(f"CONNECT localhost:{upstream.port} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        assert held[-1].recv(4096).startswith(b"HTTP/1.1 200")
        extra = socket.create_connection(("127.0.0.1", fw.port), timeout=TIMEOUT)
        try:
            extra.sendall(f"GET http://localhost:{upstream.port}/past-the-cap HTTP/1.1\r\nHost: localhost\r\n\r\n"
                          .encode())
        except ConnectionError:
            pass  # closed (reset) before the request went out: refused, as checked next
        assert closed_at_once(extra), "a connection past the cap was served"
        extra.close()
        record = fw.wait_for(lambda r: r.get("rule") == "connection-limit", "the refusal's audit line")
        assert record["decision"] == "deny" and "connections open" in record["reason"]
    finally:
        for sock in held:
            sock.close()
    assert not any(path == "/past-the-cap" for _, path, _, _ in upstream.requests)
    # the places are free again once those connections are gone
    def served() -> bool:
        try:
            return fw.https("localhost", upstream.port, "/after-the-cap")[0] == 200
        except ConnectionError:
            return False  # refused: the firewall has not seen all of them go yet

    wait_until(served, "a served request")


def test_bodies_held_for_dlp_share_one_pool(fw, upstream):
    peak_before = vm_hwm(fw.proc.pid)
    posts_before = sum(1 for method, *_ in upstream.requests if method == "POST")
    tunnels: list[ssl.SSLSocket] = []
    head = f"POST /held HTTP/1.1\r\nHost: localhost\r\nContent-Length: {BODY}\r\n\r\n".encode()
    block = b"a" * (256 * 1024)
    try:
        for _ in range(HELD_AT_ONCE):
            tls = fw.tls_context().wrap_socket(connect_tunnel(fw, "localhost", upstream.port),
                                               server_hostname="localhost")
            tls.sendall(head)
            sent = 0
            try:  # all of the body but its last byte: the firewall holds it, waiting for the rest
                while sent < BODY - 1:
                    sent += tls.send(block[: BODY - 1 - sent])
            except OSError:
                pass  # refused already
            tunnels.append(tls)
        # The firewall reads what the kernel buffered at its own pace: each body ends up held
        # whole, or refused. At most the pool's worth can be held, so the rest must be refused.
        most_held = capacity.BODY_POOL_BYTES // BODY
        refused = answered(tunnels, until=len(tunnels) - most_held)
        growth = vm_hwm(fw.proc.pid) - peak_before
        assert len(refused) >= len(tunnels) - most_held, f"{len(tunnels) - len(refused)} bodies held at once"
        for answer in refused.values():
            assert answer == b"" or answer.startswith(b"HTTP/1.1 502"), answer[:200]
        assert growth < capacity.BODY_POOL_BYTES + 64 * MiB, f"firewall peak memory grew by {growth / MiB:.0f} MiB"
        record = fw.wait_for(lambda r: r.get("rule") == "body-pool-busy", "the refusal's audit line")
        assert record["decision"] == "deny" and record["path"] == "/held"
        assert sum(1 for method, *_ in upstream.requests if method == "POST") == posts_before
        # a held body that is completed goes on to the upstream whole
        kept = next(tls for n, tls in enumerate(tunnels) if n not in refused)
        kept.sendall(b"a")
        kept.settimeout(TIMEOUT)
        assert kept.recv(4096).startswith(b"HTTP/1.1 200")
        wait_until(lambda: any(method == "POST" and size == BODY for method, _, _, size in upstream.requests[-3:]),
                   "the completed body at the upstream")
    finally:
        for tls in tunnels:
            tls.close()
    # the pool is free again once those requests are gone: a body as large as any goes through
    def a_body_goes_through() -> bool:
        tls = fw.tls_context().wrap_socket(connect_tunnel(fw, "localhost", upstream.port), server_hostname="localhost")
        try:
            tls.sendall(head + b"b" * BODY)
            return tls.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            tls.close()

    wait_until(a_body_goes_through, "a body through the freed pool")


def test_the_largest_body_allowed_costs_well_under_a_sidecars_memory(tmp_path, upstream):
    """A body held whole exists several times over while it is joined, scanned, encrypted and
    written. The largest `dlp.max_body_bytes` allows must leave room, within a sidecar's 512 MiB,
    for a full pool and every connection's own bounds beside it (at 128 MiB, one body alone
    grew the firewall by about 470 MiB)."""
    f = LiveFirewall(tmp_path, upstream, dlp={"max_body_bytes": capacity.MAX_HELD_ITEM})
    try:
        peak_before = vm_hwm(f.proc.pid)
        body = b'{"text": "' + b"an ordinary sentence, " * (capacity.MAX_HELD_ITEM // 22 - 1) + b'"}'
        assert len(body) <= capacity.MAX_HELD_ITEM
        conn = f.tunnel("localhost", upstream.port)
        conn.request("POST", "/largest", body=body, headers={"content-type": "application/json"})
        assert conn.getresponse().status == 200
        assert upstream.requests[-1][1::2] == ("/largest", len(body))  # it went through whole
        growth = vm_hwm(f.proc.pid) - peak_before
        assert growth < 192 * MiB, f"firewall peak memory grew by {growth >> 20} MiB"
    finally:
        f.close()


class H2Downloads(H2Server):
    """An HTTP/2 upstream answering each request with a 1 MiB body, as fast as the firewall's
    window for it lets it."""

    def serve_h2(self, tls, conn) -> None:
        while data := tls.recv(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    self._answer(tls, conn, event.stream_id)
            tls.sendall(conn.data_to_send())

    @staticmethod
    def _answer(tls, conn, stream_id: int) -> None:
        conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(MiB))])
        left = MiB
        while (n := min(left, conn.max_outbound_frame_size, conn.local_flow_control_window(stream_id))) > 0:
            conn.send_data(stream_id, b"d" * n, end_stream=n == left)
            tls.sendall(conn.data_to_send())
            left -= n


def test_the_worst_mix_measured_stays_well_within_a_sidecars_memory(tmp_path, upstream):
    """The cap's worth of connections, each holding what its own bounds let it: 192 HTTP/2
    connections, each with 16 downloads its client takes nothing of and a 7 KB head on each
    stream, then 64 HTTP/1 connections each holding most of a 2 MiB body. What the HTTP/2
    layers keep for those windows (512 KiB a client) now draws on the pool the bodies do:
    before, it came on top of a full pool, and the firewall peaked at 486-495 MiB of a sidecar's 512."""
    h2_upstream, body = H2Downloads(upstream.cert_file), 2 * MiB
    f = LiveFirewall(tmp_path, upstream, allow=["localhost", f"localhost:{upstream.port}", f"localhost:{h2_upstream.port}"],
                     dlp={"max_body_bytes": body})
    tunnels: list[ssl.SSLSocket] = []
    try:
        context = f.tls_context()
        context.set_alpn_protocols(["h2"])
        for _ in range(192):
            tls = context.wrap_socket(connect_tunnel(f, "localhost", h2_upstream.port), server_hostname="localhost")
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            for stream in range(16):
                conn.send_headers(1 + 2 * stream, [(":method", "GET"), (":scheme", "https"),
                                                   (":authority", f"localhost:{h2_upstream.port}"),
                                                   (":path", f"/{stream}"), ("x-pad", "p" * 7000)], end_stream=True)
            tls.sendall(conn.data_to_send())
            tunnels.append(tls)  # and never read: the client's window stays as it was
        head = f"POST /held HTTP/1.1\r\nHost: localhost\r\nContent-Length: {body}\r\n\r\n".encode()
        for _ in range(64):
            tls = f.tls_context().wrap_socket(connect_tunnel(f, "localhost", upstream.port), server_hostname="localhost")
            tls.sendall(head)
            try:
                tls.sendall(b"a" * (body - 1))
            except OSError:
                pass  # refused already
            tunnels.append(tls)
        time.sleep(2)  # what the kernel still buffered reaches the firewall
        peak = vm_hwm(f.proc.pid)
        assert f.proc.poll() is None
        assert peak < 448 * MiB, f"the firewall peaked at {peak >> 20} MiB (a sidecar has 512)"
        wait_until(lambda: any(r.get("rule") == "body-pool-busy" for r in f.records()),
                   "bodies refused: the HTTP/2 windows' bytes fill much of the pool")
    finally:
        for tls in tunnels:
            tls.close()
        f.close()
        h2_upstream.close()
