"""HTTP/2 bounds mitmproxy has no hook for, added to its HTTP/2 layers (``mitm_limits`` 7-9).

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
   streams at once (its SETTINGS say so); a head block past ``MAX_HEAD_BLOCK`` closes the
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

``mitm_limits.install`` installs these with its own; ``tests/firewall`` checks each one
against the real layers.
"""

from __future__ import annotations

import asyncio
import weakref

import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import _http2

from .wrapping import original as _original
from .wrapping import wrap as _wrap

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
# An HTTP/2 head block that has not ended yet: as much as an HTTP/1 request head may be
# (mitm_limits.MAX_REQUEST_HEAD).
MAX_HEAD_BLOCK = 64 * 1024
# Heads are held per connection outside the pool: times capacity.MAX_CLIENT_CONNECTIONS, beside
# it, they must stay well within a sidecar's memory (capacity.py). The bytes held for windows
# (MAX_H2_UNSENT each way) are charged to the pool (``unsent``).


def install() -> None:
    """Wrap mitmproxy's HTTP/2 layers (``mitm_limits.install`` calls this once per process)."""
    _wrap(_http2.Http2Server, "__init__", _registered_h2_server_init)
    _wrap(_http2.Http2Server, "_handle_event", _h2_server_event_noting_room)
    _wrap(_http2.Http2Server, "handle_h2_event", _h2_event_within_heads)
    _wrap(_http2.Http2Client, "__init__", _registered_h2_client_init)
    _wrap(_http2.Http2Client, "_handle_event", _h2_client_event_noting_room)


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


def held_for(client) -> int:
    """Bytes mitmproxy's HTTP/2 layers keep for `client` and for its upstreams, whose windows do
    not take them yet (7 and 9): ``unsent`` charges them to the pool with what writers hold."""
    state, uploads = _client_h2.get(client), _uploads.get(client)
    return (state.unsent() if state is not None else 0) + \
        (sum(_unsent(conn) for conn in uploads.servers) if uploads is not None else 0)


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


async def wait_for_client_window(handler) -> None:
    """After mitmproxy's drain (its back-pressure: a connection is read again once every writer
    has drained). Bytes held for an HTTP/2 client's window are in no writer; wait for those too,
    but only on the upstreams' reads: the client's own reads bring the window updates that make
    room (and a client's read that waited on its upstreams could deadlock with them). With one
    upstream connection for many streams, a stream nobody reads holds up the others past the
    bound: the client's own doing."""
    state = _client_h2.get(handler.client)
    if state is None:
        return
    client_io = handler.transports.get(handler.client)
    if client_io is None or client_io.handler is asyncio.current_task():
        return
    while state.unsent() > MAX_H2_UNSENT:
        state.room.clear()
        await state.room.wait()  # cancelled with the rest when the client goes away


# -- 8. HTTP/2 request heads ------------------------------------------------------------------------


class _BoundedFrameBuffer(h2.frame_buffer.FrameBuffer):
    """h2's frame buffer, keeping at most ``MAX_HEAD_BLOCK`` bytes of a head block that has not
    ended (h2's own bound is 64 frames of the largest size: 8 MiB a connection)."""

    def _update_header_buffer(self, f):
        f = super()._update_header_buffer(f)
        if sum(len(frame.data) for frame in self._headers_buffer) > MAX_HEAD_BLOCK:
            self._headers_buffer.clear()  # let the memory go now
            # as h2 ends a block of too many frames: the connection is closed (GOAWAY)
            raise h2.exceptions.ProtocolError(f"request head block larger than {MAX_HEAD_BLOCK} bytes")
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
