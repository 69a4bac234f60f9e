"""Bounds and checks mitmproxy has no hook for, added to its protocol layers.

mitmproxy (12.3) offers no addon hook for these, so the firewall wraps methods of
its protocol layers (and, for 7 and 10, of its connection handler), each with the smallest change
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
   a request refused before it came (its answer is set) is read and dropped, never kept. And
   a body in too many small pieces is refused (``MAX_BODY_PIECES``): each costs mitmproxy
   the same, whatever its size.
3. **WebSocket control frames** (ping, pong, close) are relayed by the WebSocket layer
   without any hook, payloads and close reasons included: the agent's are handed to
   the guard (``Guard.websocket_control``: the firewall scans them and may blank them), and
   the upstream's too (``Guard.websocket_control_to_agent``: the egress proxy scrubs the
   credentials it injected out of them, as out of messages).
4. **WebSocket messages** are assembled from their frames without a limit: a message
   from the agent over its flow's limit, or one from the upstream over ``MAX_WEBSOCKET_MESSAGE``,
   closes the WebSocket. While they are assembled they draw on the same pool as bodies
   (``capacity.BodyPool``), in both proxies. A compressed message (permessage-deflate) is
   inflated by wsproto without any limit, and one that ends within a single read is never seen
   half-assembled: 64 KiB of deflate made a 64 MiB message. So the inflating itself stops at
   the same limits (``_bounded_inflate``), and the WebSocket is closed (1009). And a frame that
   arrives in many pieces was assembled with ``bytes +=``, which copies all of it for every
   piece: a 32 MiB message in 4 KiB pieces cost 11 s of CPU (1 MiB in 1 KiB pieces, 0.15 s).
   Each frame is assembled in a ``bytearray`` instead (``FrameBuffers``), which grows in place.
5. **HTTP/2 and HTTP/3 requests sent on over HTTP/1** keep their body's framing. Those
   protocols frame a body themselves, so such a request may have no ``content-length``;
   mitmproxy's HTTP/1 client then writes its head without one and the body raw after it,
   and the next hop reads the body as further requests of its own, past every check and
   the log (the egress proxy speaks HTTP/2 to the agent and HTTP/1 to the firewall). A
   body without a length is sent chunked.
6. **What an HTTP/1 client sends that no reader takes** is buffered without a limit too:
   bytes after a request while its response is pending, a chunk-size line that never
   ends. Past ``MAX_UNREAD`` the connection is closed.
7.-9. **HTTP/2**: what a client's or an upstream's window does not take, and request heads
   (many streams at once on one connection), in ``h2_limits.py``.
10. **What a peer has not taken** of what the proxy wrote it (a whole body or message at once)
   stays in the connection's buffer, and in a closed connection's until the peer takes it:
   it is charged to the same pool after every event and every drain (with what the HTTP/2
   layers keep for windows, 7 and 9), and a closed connection that does not deliver it in time
   is cut (``unsent.py``).
11. **TLS writes** put the whole of what is sent at once (a body or message held whole) into
   the connection's OpenSSL output buffer, which keeps that size for the connection's life:
   24 WebSockets that had each sent an 8 MiB message kept the firewall 236-295 MiB larger
   while they stayed open, and the agent may keep 256 open. Written in pieces of
   ``TLS_WRITE_PIECE``, each sent on before the next, the buffer stays that small (12 MiB).

The firewall and the egress proxy install all of them, each with itself as the ``Guard``
(the egress proxy lets the agent's control frames pass: the firewall scans them).
"""

from __future__ import annotations

import zlib
from typing import Protocol

import wsproto.events
import wsproto.extensions
from mitmproxy import flow as mflow
from mitmproxy.net.http.http1 import expected_http_body_size
from mitmproxy.proxy import commands, server
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers import tls as tls_layers
from mitmproxy.proxy.layers import websocket as ws_layers
from mitmproxy.proxy.layers.http import _http1
from wsproto.frame_protocol import CloseReason

from . import capacity, h2_limits, unsent, wrapping
from .wrapping import original as _original
from .wrapping import wrap as _wrap

MAX_REQUEST_HEAD = 64 * 1024
# Unread bytes from an HTTP/1 client outside its request head (a pipelined request's head
# and a little of its body, or a chunk-size line with extensions, fit well within it).
MAX_UNREAD = 256 * 1024
# WebSocket messages to hosts whose DLP action is off have no per-flow limit; still bounded.
MAX_WEBSOCKET_MESSAGE = capacity.MAX_HELD_ITEM
BODY_LIMIT = "bottle.body_limit"
BODY_LIMIT_REFUSAL = "bottle.body_limit_refusal"
# A held body's pieces (chunks, reads) cost mitmproxy about 27 µs each, whatever their size: a
# MiB in 1-byte chunks took 29 s of the one event loop. Past MAX_BODY_PIECES pieces averaging
# under SMALL_PIECE bytes the body is refused (a 32 MiB body in 2 KiB chunks is 16,384 pieces).
MAX_BODY_PIECES = 16384
SMALL_PIECE = 1024
BODY_PIECES = "bottle.body_pieces"
# What a TLS connection encrypts at once (mitmproxy reads its output in pieces this size).
TLS_WRITE_PIECE = 64 * 1024


class Guard(Protocol):
    """What the wrapped layers call back into (the ``Firewall``)."""

    def websocket_control(self, flow, event: wsproto.events.Event) -> wsproto.events.Event: ...

    def websocket_control_to_agent(self, flow, event: wsproto.events.Event) -> wsproto.events.Event: ...

    def refused_in_transit(self, flow, rule: str, reason: str) -> None: ...


_guard: Guard | None = None


def install(guard: Guard | None) -> None:
    """Wrap the layers (once per process); ``guard``, if any, receives the callbacks from now on."""
    global _guard
    if guard is not None:
        _guard = guard
    if wrapping.wrapped(_http1.Http1Server, "read_headers"):  # the first method it wraps
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
    ws_layers.WebsocketConnection.frame_buf = property(_frame_buffers, _set_frame_buffers)
    _wrap(wsproto.extensions.PerMessageDeflate, "frame_inbound_payload_data", _bounded_inflate)
    _wrap(wsproto.extensions.PerMessageDeflate, "frame_inbound_complete", _bounded_inflate_end)
    _wrap(server.ConnectionHandler, "drain_writers", _drain_writers_noting_unsent)
    _wrap(server.ConnectionHandler, "server_event", _server_event_noting_unsent)
    _wrap(server.ConnectionHandler, "handle_connection", _handle_connection_then_flush)
    _wrap(tls_layers.TLSLayer, "send_data", _tls_send_in_pieces)
    h2_limits.install()


def limit_request_body(flow, limit: int, refusal: tuple[str, str] | None = None) -> None:
    """Refuse the request's body past `limit` bytes, as the firewall's DLP does unless
    `refusal` gives another (rule, reason)."""
    flow.metadata[BODY_LIMIT] = limit
    if refusal is not None:
        flow.metadata[BODY_LIMIT_REFUSAL] = refusal


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
        pieces = self.flow.metadata[BODY_PIECES] = self.flow.metadata.get(BODY_PIECES, 0) + 1
        if pieces > MAX_BODY_PIECES and size < pieces * SMALL_PIECE:
            yield from _refuse_body(self, "dlp:body-in-pieces", f"the request body came in more than {MAX_BODY_PIECES} "
                                    f"pieces of under {SMALL_PIECE} bytes on average; send it in larger chunks",
                                    http_layers.ErrorCode.REQUEST_TOO_LARGE)
            return True
        if size > limit:
            from .dlp_guard import too_large_reason

            rule, reason = self.flow.metadata.get(BODY_LIMIT_REFUSAL) or ("dlp:body-too-large",
                                                                          too_large_reason(None, limit))
            yield from _refuse_body(self, rule, reason, http_layers.ErrorCode.REQUEST_TOO_LARGE)
            return True
        # Held whole until it is scanned: every flow's body draws on one pool (capacity.py),
        # for all it declares from its first chunk on. Bodies charged only as they came would
        # each hold a part when the pool ran out, and every one of them be refused.
        wanted = max(size, min(declared_size(self.flow.request), limit))
        if not capacity.POOL.hold(self.flow, wanted):
            yield from _refuse_body(self, *_pool_refusal())
            return True
    return (yield from _original(http_layers.HttpStream, "check_body_size")(self, request))


def declared_size(request) -> int:
    """The body size the request's head declares (Content-Length, as mitmproxy reads the body
    by it); 0 when it declares none. A limit is checked against it before any byte is read."""
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
    # The server side's connection relays what the agent sends, the client side's what the
    # upstream sends: tag each with the flow so that ``send2`` can tell whose control frames it carries.
    if getattr(self, "server_ws", None) is not None:
        self.server_ws.bottle_flow = self.flow
    if getattr(self, "client_ws", None) is not None:
        self.client_ws.bottle_flow_to_agent = self.flow
    # Each side's inflating, bounded as its messages are (see 4.).
    flow = self.flow
    sides = ((getattr(self, "client_ws", None), "the agent", lambda: flow.metadata.get(BODY_LIMIT) or MAX_WEBSOCKET_MESSAGE),
             (getattr(self, "server_ws", None), "the upstream", lambda: MAX_WEBSOCKET_MESSAGE))
    for ws, source, limit in sides:
        for extension in getattr(getattr(ws, "_proto", None), "extensions", ()):
            if isinstance(extension, wsproto.extensions.PerMessageDeflate):
                extension.bottle_bound = _InflateBound(flow, limit, source)


class _InflateBound:
    """How far one side's current compressed message may still grow when inflated."""

    def __init__(self, flow, limit, source: str):
        self.flow, self.limit, self.source = flow, limit, source
        self.inflated = 0  # of the message being received

    def refuse(self) -> CloseReason:
        reason = f"a compressed WebSocket message from {self.source} inflates to more than {self.limit()} bytes"
        if _guard is not None:
            _guard.refused_in_transit(self.flow, "websocket-message-too-large", f"{reason}; the WebSocket was closed")
        self.flow.error = mflow.Error(f"{reason}; the WebSocket was closed")
        return CloseReason.MESSAGE_TOO_BIG


def _bounded_inflate(self, proto, data):
    bound = getattr(self, "bottle_bound", None)
    if bound is None or not self._inbound_compressed or not self._inbound_is_compressible:
        return _original(wsproto.extensions.PerMessageDeflate, "frame_inbound_payload_data")(self, proto, data)
    room = bound.limit() - bound.inflated
    try:  # one byte past the room at most: anything past it ends the WebSocket
        out = self._decompressor.decompress(bytes(data), max(room, 0) + 1)
    except zlib.error:
        return CloseReason.INVALID_FRAME_PAYLOAD_DATA
    bound.inflated += len(out)
    return bound.refuse() if bound.inflated > bound.limit() else out


def _bounded_inflate_end(self, proto, fin: bool):
    out = _original(wsproto.extensions.PerMessageDeflate, "frame_inbound_complete")(self, proto, fin)
    bound = getattr(self, "bottle_bound", None)
    if bound is None or not fin:
        return out
    # What the end of a message flushes out: a little (at most what zlib keeps back).
    too_big = isinstance(out, bytes) and bound.inflated + len(out) > bound.limit()
    bound.inflated = 0
    return bound.refuse() if too_big else out


class FrameBuffers(list):
    """The frames of a WebSocket message being assembled, each a ``bytearray``: mitmproxy adds
    each piece of a frame with ``frame_buf[-1] += data``, in place on a bytearray (see 4.)."""

    def __init__(self, frames=()):
        super().__init__(bytearray(frame) for frame in frames)

    def append(self, frame) -> None:
        super().append(bytearray(frame))


def _frame_buffers(self) -> FrameBuffers:
    return self.__dict__["bottle_frame_buf"]


def _set_frame_buffers(self, frames) -> None:  # mitmproxy sets `[b""]` for each new message
    self.__dict__["bottle_frame_buf"] = FrameBuffers(frames)


def _guarded_send2(self, event):
    if _guard is not None and isinstance(event, (wsproto.events.Ping, wsproto.events.Pong,
                                                 wsproto.events.CloseConnection)):
        if (flow := getattr(self, "bottle_flow", None)) is not None:
            event = _guard.websocket_control(flow, event)
        elif (flow := getattr(self, "bottle_flow_to_agent", None)) is not None:
            event = _guard.websocket_control_to_agent(flow, event)
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


# -- 10. what a peer has not taken -------------------------------------------------------------------


async def _drain_writers_noting_unsent(self):
    """mitmproxy's back-pressure: a connection is read again once every writer has drained."""
    await _original(server.ConnectionHandler, "drain_writers")(self)
    unsent.note(self)
    await h2_limits.wait_for_client_window(self)


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
