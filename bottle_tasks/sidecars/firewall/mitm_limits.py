"""Bounds and checks mitmproxy has no hook for, added to its protocol layers.

mitmproxy (12.3) offers no addon hook for these, so the firewall wraps methods of
its protocol layers (and, for 7, of its connection handler), each with the smallest change
that closes the gap, and everything else stays mitmproxy's own code. ``tests/firewall``
checks each one against the real layers (and fails when a mitmproxy upgrade moves what
they wrap).

1. **HTTP/1 request heads** are buffered until the blank line without any limit
   (mitmproxy's ``read_headers`` says "FIXME: protect against header size DoS"): a head
   over ``MAX_REQUEST_HEAD`` gets 431 and the connection is closed.
2. **Request bodies** that DLP scans are buffered whole before the ``request`` hook;
   mitmproxy's own ``body_size_limit`` is global and would also cut large *downloads*.
   ``limit_request_body(flow, n)`` sets a limit for one request; the body is refused
   (413, connection closed) at the first chunk past it, so memory stays bounded. All such
   bodies together draw on one pool (``capacity.BodyPool``): a chunk the pool cannot take
   refuses its request the same way, with a 502 (the pool is busy: try again). The body of
   a request refused before it came (its answer is set) is read and dropped, never kept.
3. **WebSocket control frames** (ping, pong, close) are relayed by the WebSocket layer
   without any hook, payloads and close reasons included: the agent's are handed to
   the firewall (``Guard.websocket_control``), which scans them and may blank them.
4. **WebSocket messages** are assembled from their frames without a limit: a message
   from the agent over its flow's limit, or one from the upstream over ``MAX_WEBSOCKET_MESSAGE``,
   closes the WebSocket. While they are assembled they draw on the same pool as bodies
   (``capacity.BodyPool``), in both proxies.
5. **HTTP/2 and HTTP/3 requests sent on over HTTP/1** keep their body's framing. Those
   protocols frame a body themselves, so such a request may have no ``content-length``;
   mitmproxy's HTTP/1 client then writes its head without one and the body raw after it,
   and the next hop reads the body as further requests of its own, past every check and
   the log (the egress proxy speaks HTTP/2 to the agent and HTTP/1 to the firewall). A
   body without a length is sent chunked.
6. **What an HTTP/1 client sends that no reader takes** is buffered without a limit too:
   bytes after a request while its response is pending, a chunk-size line that never
   ends. Past ``MAX_UNREAD`` the connection is closed.
7. **What an HTTP/2 client's window does not take** is kept by mitmproxy's HTTP/2 layer
   (``stream_buffers``) without a limit, and the upstream is read on: a client that grants
   no more window has the whole download pulled into the proxy. Past ``MAX_H2_UNSENT``
   bytes waiting for a client's window, the proxy stops reading that client's upstreams
   until the client takes some (back-pressure: TCP holds the rest upstream).
8. **HTTP/2 request heads** are bounded per connection, not per request as on HTTP/1: a
   connection carries many streams at once, each keeping its head (and later its trailers)
   while it waits for its body or its answer, and the h2 library keeps a head block's frames
   until the block ends (64 CONTINUATION frames of 128 KiB: 8 MiB). 24 such connections grew
   the firewall by 195 MiB; 100 streams each, with heads near h2's 64 KiB, by 185 MiB: times
   ``capacity.MAX_CLIENT_CONNECTIONS``, gigabytes. So a client may open ``MAX_H2_STREAMS``
   streams at once (its SETTINGS say so); a head block past ``MAX_REQUEST_HEAD`` closes the
   connection; a stream whose head would take the connection's open streams' heads past
   ``MAX_H2_HEADS`` is refused (REFUSED_STREAM: a client may send it again), and trailers
   past it close the connection.
9. **What an HTTP/2 upstream's window does not take** of a streamed request body is kept by
   mitmproxy's HTTP/2 layer too (the 7th, the other way), and the client is read on: one
   upload to a host whose DLP is off, to an upstream that granted no more window, put 300 MiB
   into the firewall in 3 s. Past ``MAX_H2_UNSENT`` bytes waiting for its upstreams' windows,
   the client is granted no more window (mitmproxy grants it 2 GiB up front; here
   ``H2_CLIENT_WINDOW``, acknowledged again as the upstreams take it). Its reads go on, so
   its window updates for its downloads still come (7 waits on those). (An HTTP/1 client
   never has an HTTP/2 upstream: the upstream is offered only the protocols the client offered.)
10. **What a peer has not taken** of what the proxy wrote it (a whole body or message at once)
   stays in the connection's buffer, and in a closed connection's until the peer takes it:
   it is charged to the same pool after every event and every drain, and a closed connection
   that does not deliver it in time is cut (``unsent.py``).
11. **TLS writes** put the whole of what is sent at once (a body or message held whole) into
   the connection's OpenSSL output buffer, which keeps that size for the connection's life:
   24 WebSockets that had each sent an 8 MiB message kept the firewall about 120 MiB larger
   than the same WebSockets closed one by one, and the agent may keep 256 open. Written in
   pieces of ``TLS_WRITE_PIECE``, each sent on before the next, the buffer stays that small.

The firewall installs all of them with itself as the ``Guard``; the egress proxy installs
them without one (the bounds, the framing; its WebSocket control frames pass unchanged).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import wsproto.events
from mitmproxy import flow as mflow
from mitmproxy.net.http.http1 import expected_http_body_size
from mitmproxy.proxy import commands, server
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers import tls as tls_layers
from mitmproxy.proxy.layers import websocket as ws_layers
from mitmproxy.proxy.layers.http import _http1, _http2

from . import capacity, unsent

MAX_REQUEST_HEAD = 64 * 1024
# Unread bytes from an HTTP/1 client outside its request head (a pipelined request's head
# and a little of its body, or a chunk-size line with extensions, fit well within it).
MAX_UNREAD = 256 * 1024
# WebSocket messages to hosts whose DLP action is off have no per-flow limit; still bounded.
MAX_WEBSOCKET_MESSAGE = capacity.MAX_HELD_ITEM
# Response bytes held for an HTTP/2 client whose flow-control window does not take them yet
# (many times a stream's first window: a client that reads is not slowed down by it).
MAX_H2_UNSENT = 512 * 1024
# The window an HTTP/2 client is granted, per stream and for its connection (mitmproxy grants
# 2 GiB: withholding acknowledgements would stop nothing). Many round trips on a local network.
H2_CLIENT_WINDOW = 256 * 1024
# Streams an HTTP/2 client may have open at once (h2's own default is 100: each stream's flow
# costs the proxy some 19 KiB besides its head, and its head may be 64 KiB).
MAX_H2_STREAMS = 16
# Bytes of heads and trailers an HTTP/2 connection's open streams keep at once (two of the
# largest heads h2 lets through; ordinary heads are a few KiB).
MAX_H2_HEADS = 128 * 1024
# These are held per connection, outside the pool: times capacity.MAX_CLIENT_CONNECTIONS,
# beside the pool, they must stay well within a sidecar's memory (capacity.py).
BODY_LIMIT = "bottle.body_limit"
# What a TLS connection encrypts at once (mitmproxy reads its output in pieces this size).
TLS_WRITE_PIECE = 64 * 1024


class Guard(Protocol):
    """What the wrapped layers call back into (the ``Firewall``)."""

    def websocket_control(self, flow, event: wsproto.events.Event) -> wsproto.events.Event: ...

    def refused_in_transit(self, flow, rule: str, reason: str) -> None: ...


_guard: Guard | None = None
_originals: dict[str, object] = {}


def install(guard: Guard | None) -> None:
    """Wrap the layers (once per process); ``guard``, if any, receives the callbacks from now on."""
    global _guard
    if guard is not None:
        _guard = guard
    if _originals:
        return
    _wrap(_http1.Http1Server, "read_headers", _bounded_read_headers)
    _wrap(_http1.Http1Server, "_handle_event", _bounded_unread)
    _wrap(_http1.Http1Client, "send", _framed_send)
    _wrap(http_layers.HttpStream, "check_body_size", _bounded_check_body_size)
    _wrap(ws_layers.WebsocketLayer, "start", _tagged_start)
    # The layer's first event handler is bound at class creation (`_handle_event = start`).
    ws_layers.WebsocketLayer._handle_event = _tagged_start
    _wrap(ws_layers.WebsocketLayer, "relay_messages", _bounded_relay_messages)
    _wrap(ws_layers.WebsocketConnection, "send2", _guarded_send2)
    _wrap(_http2.Http2Server, "__init__", _registered_h2_server_init)
    _wrap(server.ConnectionHandler, "drain_writers", _drain_writers_and_wait_for_h2_room)
    _wrap(server.ConnectionHandler, "server_event", _server_event_noting_unsent)
    _wrap(server.ConnectionHandler, "handle_connection", _handle_connection_then_flush)
    _wrap(tls_layers.TLSLayer, "send_data", _tls_send_in_pieces)
    _wrap(_http2.Http2Server, "_handle_event", _h2_server_event_noting_room)
    _wrap(_http2.Http2Server, "handle_h2_event", _h2_event_within_heads)
    _wrap(_http2.Http2Client, "__init__", _registered_h2_client_init)
    _wrap(_http2.Http2Client, "_handle_event", _h2_client_event_noting_room)


def _wrap(cls, name: str, replacement) -> None:
    key = f"{cls.__name__}.{name}"
    _originals[key] = getattr(cls, name)
    setattr(cls, name, replacement)


def _original(cls, name: str):
    return _originals[f"{cls.__name__}.{name}"]


def limit_request_body(flow, limit: int) -> None:
    flow.metadata[BODY_LIMIT] = limit


# -- 1. HTTP/1 request heads --------------------------------------------------------------


def _bounded_read_headers(self, event):
    yield from _original(_http1.Http1Server, "read_headers")(self, event)
    if self.state == self.read_headers and len(self.buf) > MAX_REQUEST_HEAD:
        self.buf = type(self.buf)()  # let the memory go now
        yield commands.SendData(
            self.conn, _http1.make_error_response(431, f"request head larger than {MAX_REQUEST_HEAD} bytes")
        )
        yield commands.CloseConnection(self.conn)
        self.state = self.done


# -- 2. request bodies ------------------------------------------------------------------------


def _bounded_check_body_size(self, request: bool):
    if request and self.flow is not None and self.flow.response is not None:
        # Answered here already (a refusal) before its body came: mitmproxy still reads the whole
        # body before it answers, and kept all of it (300 MiB grew the firewall by 302 MiB). It
        # goes nowhere, so none of it is kept.
        self.request_body_buf.clear()
        return False
    limit = self.flow.metadata.get(BODY_LIMIT) if request and self.flow is not None else None
    if limit is not None:
        size = len(self.request_body_buf)
        if size > limit:
            from .dlp_guard import too_large_reason

            yield from _refuse_body(self, "dlp:body-too-large", too_large_reason(None, limit),
                                    http_layers.ErrorCode.REQUEST_TOO_LARGE)
            return True
        # Held whole until it is scanned: every flow's body draws on one pool (capacity.py),
        # for all it declares from its first chunk on. Bodies charged only as they came would
        # each hold a part when the pool ran out, and every one of them be refused.
        wanted = max(size, min(_declared_size(self.flow.request), limit))
        if not capacity.POOL.hold(self.flow, wanted):
            yield from _refuse_body(self, *_pool_refusal())
            return True
    return (yield from _original(http_layers.HttpStream, "check_body_size")(self, request))


def _declared_size(request) -> int:
    """The body size the request's head declares (Content-Length); 0 when it declares none."""
    try:
        declared = expected_http_body_size(request)
    except ValueError:
        return 0
    return declared if declared is not None and declared > 0 else 0


def _pool_refusal() -> tuple[str, str, http_layers.ErrorCode]:
    # A 502: API clients retry a 5xx, and the others' bodies leave the pool as their requests end.
    # (A body alone always fits: dlp.max_body_bytes is at most capacity.MAX_HELD_ITEM.)
    return ("body-pool-busy", f"other requests' bodies, and bytes their peers have not taken, fill the "
            f"{capacity.POOL.capacity} bytes this proxy holds at once to check them for secrets; try again",
            http_layers.ErrorCode.GENERIC_SERVER_ERROR)


def _refuse_body(self, rule: str, reason: str, code):
    """Refuse the request whose body is arriving, drop what came of it, close the connection."""
    if _guard is not None:
        _guard.refused_in_transit(self.flow, rule, reason)
    self.request_body_buf.clear()  # let the memory go now
    capacity.POOL.release(self.flow)
    self.flow.error = mflow.Error(reason)
    # No `error` hook: it would run in a task of its own, and the close below, issued from there,
    # cancels the connection's reader while that waits for mitmproxy's event lock, which skips
    # closing its socket (the client then waits for an end that never comes). The guard above
    # has audited the flow and the pool has let it go: all the firewall's `error` hooks do.
    yield http_layers.SendHttp(http_layers.ResponseProtocolError(self.stream_id, reason, code), self.context.client)
    # mitmproxy's own limit leaves the connection open but unread, the client blocked on a
    # full socket until the idle timeout: close it (the client reads the answer, then EOF).
    yield commands.CloseConnection(self.context.client)
    self.client_state = self.state_errored
    self.flow.live = False


# -- 3. and 4. WebSockets -----------------------------------------------------------------------


def _tagged_start(self, event):
    yield from _original(ws_layers.WebsocketLayer, "start")(self, event)
    # The server side's connection relays what the agent sends: tag it with the flow so that
    # ``send2`` can tell whose control frames it carries.
    if getattr(self, "server_ws", None) is not None:
        self.server_ws.bottle_flow = self.flow


def _guarded_send2(self, event):
    flow = getattr(self, "bottle_flow", None)
    if (
        flow is not None
        and _guard is not None
        and isinstance(event, (wsproto.events.Ping, wsproto.events.Pong, wsproto.events.CloseConnection))
    ):
        event = _guard.websocket_control(flow, event)
    return _original(ws_layers.WebsocketConnection, "send2")(self, event)


def _bounded_relay_messages(self, event):
    yield from _original(ws_layers.WebsocketLayer, "relay_messages")(self, event)
    client_ws = getattr(self, "client_ws", None)
    if client_ws is None or self._handle_event == self.done:
        return
    limit = self.flow.metadata.get(BODY_LIMIT) or MAX_WEBSOCKET_MESSAGE
    # The messages being assembled, each way (0 between messages). The upstream's are not
    # scanned, but they are held whole all the same.
    size = sum(map(len, client_ws.frame_buf))
    upstream_size = sum(map(len, self.server_ws.frame_buf))
    if size > limit:
        rule, reason = "websocket-message-too-large", f"a WebSocket message from the agent is larger than {limit} bytes"
    elif upstream_size > MAX_WEBSOCKET_MESSAGE:
        rule, reason = ("websocket-message-too-large",
                        f"a WebSocket message from the upstream is larger than {MAX_WEBSOCKET_MESSAGE} bytes")
    elif not capacity.POOL.hold(self.flow, size + upstream_size):  # held until whole: they draw on the pool bodies do
        rule, reason = "body-pool-busy", ("other requests' bodies and messages, and bytes their peers have not "
                                          f"taken, fill the {capacity.POOL.capacity} bytes this proxy holds at once")
    else:
        return
    client_ws.frame_buf, self.server_ws.frame_buf = [b""], [b""]
    capacity.POOL.release(self.flow)
    if _guard is not None:
        _guard.refused_in_transit(self.flow, rule, f"{reason}; the WebSocket was closed")
    self.flow.error = mflow.Error(f"{reason}; the WebSocket was closed")
    yield commands.CloseConnection(self.context.client)
    yield commands.CloseConnection(self.context.server)
    self.flow.live = False
    self._handle_event = self.done


# -- 5. HTTP/2 and HTTP/3 requests on over HTTP/1 -------------------------------------------------


def _framed_send(self, event):
    request = event.request if isinstance(event, http_layers.RequestHeaders) else None
    if (
        request is not None
        and not event.end_stream
        and (request.is_http2 or request.is_http3)
        and "content-length" not in request.headers
    ):
        # On the flow's own request: the client reads it again to frame each chunk and the end.
        request.headers["transfer-encoding"] = "chunked"
    return _original(_http1.Http1Client, "send")(self, event)


# -- 6. unread HTTP/1 bytes -----------------------------------------------------------------------


def _bounded_unread(self, event):
    yield from _original(_http1.Http1Server, "_handle_event")(self, event)
    if len(self.buf) <= MAX_UNREAD or self.state in (self.passthrough, self.read_headers, self.done):
        return  # a head is bounded by ``_bounded_read_headers``; a passthrough relays what it gets
    self.buf = type(self.buf)()  # let the memory go now
    yield commands.CloseConnection(self.conn)
    if self.stream_id is not None:
        # as mitmproxy ends a request whose client went away: the flow ends with an error
        yield http_layers.ReceiveHttp(
            http_layers.RequestProtocolError(self.stream_id, f"the client sent over {MAX_UNREAD} bytes "
                                             "that no request could take; the connection was closed")
        )
    self.state = self.done


# -- 7. HTTP/2 bytes the client's window does not take -----------------------------------------


class _ClientH2:
    """A client's HTTP/2 connection, and an event set whenever its unsent bytes are within bounds."""

    def __init__(self, h2_conn):
        self.h2_conn = h2_conn
        self.room = asyncio.Event()
        self.room.set()

    def unsent(self) -> int:
        return _unsent(self.h2_conn)


def _unsent(h2_conn) -> int:
    """Bytes mitmproxy keeps for an HTTP/2 peer whose window does not take them yet."""
    return sum(len(chunk.data) for chunks in h2_conn.stream_buffers.values() for chunk in chunks)


# Each client that speaks HTTP/2 (weak: forgotten with the client's connection).
_client_h2: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _registered_h2_server_init(self, context):
    _original(_http2.Http2Server, "__init__")(self, context)
    _client_h2[context.client] = _ClientH2(self.h2_conn)
    _bound_h2_heads(self)
    _bound_h2_client_window(self)


def _h2_server_event_noting_room(self, event):
    yield from _original(_http2.Http2Server, "_handle_event")(self, event)
    # Room is made here only: the client's window updates, settings and resets, or a stream ended.
    state = _client_h2.get(self.context.client)
    if state is not None and not state.room.is_set() and state.unsent() <= MAX_H2_UNSENT:
        state.room.set()


async def _drain_writers_and_wait_for_h2_room(self):
    """mitmproxy's back-pressure: a connection is read again once every writer has drained.
    Bytes held for an HTTP/2 client's window are in no writer; wait for those too, but only
    on the upstreams' reads: the client's own reads bring the window updates that make room
    (and a client's read that waited on its upstreams could deadlock with them). With one
    upstream connection for many streams, a stream nobody reads holds up the others past the
    bound: the client's own doing."""
    await _original(server.ConnectionHandler, "drain_writers")(self)
    unsent.note(self)
    state = _client_h2.get(self.client)
    if state is None:
        return
    client_io = self.transports.get(self.client)
    if client_io is None or client_io.handler is asyncio.current_task():
        return
    while state.unsent() > MAX_H2_UNSENT:
        state.room.clear()
        await state.room.wait()  # cancelled with the rest when the client goes away


# -- 8. HTTP/2 request heads ------------------------------------------------------------------------


class _BoundedFrameBuffer(h2.frame_buffer.FrameBuffer):
    """h2's frame buffer, keeping at most ``MAX_REQUEST_HEAD`` bytes of a head block that has not
    ended (h2's own bound is 64 frames of the largest size: 8 MiB a connection)."""

    def _update_header_buffer(self, f):
        f = super()._update_header_buffer(f)
        if sum(len(frame.data) for frame in self._headers_buffer) > MAX_REQUEST_HEAD:
            self._headers_buffer.clear()  # let the memory go now
            # as h2 ends a block of too many frames: the connection is closed (GOAWAY)
            raise h2.exceptions.ProtocolError(f"request head block larger than {MAX_REQUEST_HEAD} bytes")
        return f


def _bound_h2_heads(server) -> None:
    """Before the connection starts (its first SETTINGS carry the streams' bound)."""
    server.h2_conn.incoming_buffer = _BoundedFrameBuffer(server=True)
    server.h2_conn.local_settings.max_concurrent_streams = MAX_H2_STREAMS
    server.h2_conn.local_settings.acknowledge()  # as mitmproxy does: sent as they are, enforced at once
    server.bottle_heads = {}  # stream id -> bytes of its head and trailers


def _h2_event_within_heads(self, event):
    if isinstance(event, (h2.events.RequestReceived, h2.events.TrailersReceived)):
        heads = self.bottle_heads
        for stream_id in [s for s in heads if s not in self.streams]:
            del heads[stream_id]  # ended: its flow is gone or going
        size = heads.get(event.stream_id, 0) + sum(len(name) + len(value) for name, value in event.headers)
        if sum(heads.values()) - heads.get(event.stream_id, 0) + size > MAX_H2_HEADS:
            if isinstance(event, h2.events.RequestReceived):
                # No flow yet: the stream alone is refused, and may be sent again.
                self.h2_conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return False
            yield from self.protocol_error(f"the heads of the open streams are larger than {MAX_H2_HEADS} bytes")
            return True
        heads[event.stream_id] = size
    return (yield from _original(_http2.Http2Server, "handle_h2_event")(self, event))


# -- 9. request bytes an HTTP/2 upstream's window does not take ---------------------------------------


class _Uploads:
    """A client's HTTP/2 upstream connections, and the acknowledgements of its own data held back
    while they are full."""

    def __init__(self):
        self.servers: weakref.WeakSet = weakref.WeakSet()  # the upstreams' h2 connections
        self.acks: list[tuple[int, int]] = []  # (bytes, stream id) not acknowledged yet

    def full(self) -> bool:
        return sum(_unsent(conn) for conn in self.servers) > MAX_H2_UNSENT


# Each client that has an HTTP/2 upstream (weak: forgotten with the client's connection).
_uploads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _registered_h2_client_init(self, context):
    _original(_http2.Http2Client, "__init__")(self, context)
    _uploads.setdefault(context.client, _Uploads()).servers.add(self.h2_conn)


def _bound_h2_client_window(server) -> None:
    """The client's window: ``H2_CLIENT_WINDOW``, acknowledged only while its upstreams have room."""
    h2_conn = server.h2_conn
    # weak: the connection is kept by _client_h2 under the client, which it must not keep alive
    client = weakref.ref(server.context.client)
    h2_conn.local_settings.initial_window_size = H2_CLIENT_WINDOW
    h2_conn.local_settings.acknowledge()  # as mitmproxy sets its own: sent in the first SETTINGS

    def initiate_connection():
        h2.connection.H2Connection.initiate_connection(h2_conn)  # without mitmproxy's 2 GiB
        h2_conn.increment_flow_control_window(H2_CLIENT_WINDOW - h2_conn.inbound_flow_control_window)

    def acknowledge_received_data(size: int, stream_id: int) -> None:
        uploads = _uploads.get(client()) if client() is not None else None
        if uploads is not None and uploads.full():
            uploads.acks.append((size, stream_id))
            return
        h2.connection.H2Connection.acknowledge_received_data(h2_conn, size, stream_id)

    h2_conn.initiate_connection = initiate_connection
    h2_conn.acknowledge_received_data = acknowledge_received_data


def _h2_client_event_noting_room(self, event):
    yield from _original(_http2.Http2Client, "_handle_event")(self, event)
    # Room is made here only: the upstream's window updates and resets, a stream or it ended.
    uploads = _uploads.get(self.context.client)
    if uploads is None:
        return
    if self._handle_event == self.done:
        uploads.servers.discard(self.h2_conn)  # closed: what it kept is sent nowhere any more
    if not uploads.acks or uploads.full():
        return
    acks, uploads.acks = uploads.acks, []
    client = _client_h2.get(self.context.client)
    if client is not None:
        for size, stream_id in acks:  # a stream gone since: only the connection's window grows
            h2.connection.H2Connection.acknowledge_received_data(client.h2_conn, size, stream_id)
        yield commands.SendData(self.context.client, client.h2_conn.data_to_send())


# -- 10. what a peer has not taken -------------------------------------------------------------------


async def _server_event_noting_unsent(self, event):
    await _original(server.ConnectionHandler, "server_event")(self, event)
    unsent.note(self)  # what this event wrote (mitmproxy writes inside server_event only)


async def _handle_connection_then_flush(self, connection):
    io = self.transports.get(connection)
    writer = io.writer if io is not None else None
    try:
        await _original(server.ConnectionHandler, "handle_connection")(self, connection)
    finally:
        if writer is not None:
            unsent.closed(writer)  # the connection's writer is closed now, perhaps with bytes left


# -- 11. TLS writes --------------------------------------------------------------------------------


def _tls_send_in_pieces(self, data: bytes):
    send = _original(tls_layers.TLSLayer, "send_data")
    if len(data) <= TLS_WRITE_PIECE:
        yield from send(self, data)
        return
    whole = memoryview(data)
    for start in range(0, len(data), TLS_WRITE_PIECE):
        yield from send(self, whole[start:start + TLS_WRITE_PIECE])  # encrypted and handed on, then the next
