"""What a proxy has written and its peer has not taken yet draws on the body pool too.

mitmproxy writes a body or a WebSocket message on in one piece, then reads none of that
client's connections until every one of their writers has drained (its back-pressure). So a
connection holds at most one body or message its peer has not taken. But a body left the
pool when its answer came, and a message when it was whole: a peer that does not read (an
upstream that stopped reading, the agent not reading what it asked for) left them in the
proxy's buffers outside every bound. 12 WebSockets, each with a 32 MiB message to an upstream
that never read, grew the firewall by 834 MiB; 256 connections' worth would have had the
kernel kill it. And a connection closed with bytes unsent kept them until the peer took them,
which a peer that never reads never does, long after the connection left the cap's count.

So each writer's buffer is charged to ``capacity.POOL`` as it stands after every event the
proxy handles and after every drain (a body or message the pool cannot take then is refused,
as when bodies fill it), and so is what the HTTP/2 layers keep for a window (up to
``h2_limits.MAX_H2_UNSENT`` each way for each client): 192 HTTP/2 connections, each with 16
downloads its client took nothing of, held 274 MiB beside a full pool's 128, the firewall 486
MiB in all (of 512); a connection closed with bytes unsent has ``CLOSE_FLUSH_SECONDS`` to
deliver them and is then cut (``closed``). ``mitm_limits`` calls these from the connection
handler's methods it wraps.
"""

from __future__ import annotations

import asyncio

from . import capacity, h2_limits

# A closed connection whose peer takes nothing for this long loses what it had not taken.
CLOSE_FLUSH_SECONDS = 30.0

_flushing: set[asyncio.Task] = set()  # the event loop keeps only weak references to tasks


def note(handler) -> None:
    """Charge the pool with what each of `handler`'s connections has written and not sent, and
    with what its HTTP/2 layers keep for windows that do not take it yet (``h2_limits``)."""
    for io in handler.transports.values():  # no await inside: the dict cannot change meanwhile
        transport = _transport(io.writer)
        if transport is not None:
            capacity.POOL.unsent(io.writer, transport.get_write_buffer_size())
    open_ = handler.client in handler.transports  # once the client is gone, so are its layers
    capacity.POOL.unsent(handler.client, h2_limits.held_for(handler.client) if open_ else 0)


def closed(writer) -> None:
    """`writer`'s connection is closed: what it still holds stays charged until it is delivered,
    or cut after ``CLOSE_FLUSH_SECONDS``."""
    transport = _transport(writer)
    left = transport.get_write_buffer_size() if transport is not None else 0
    capacity.POOL.unsent(writer, left)
    if left:
        task = asyncio.get_running_loop().create_task(_flush_or_cut(writer, transport))
        _flushing.add(task)
        task.add_done_callback(_flushing.discard)


async def _flush_or_cut(writer, transport) -> None:
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_FLUSH_SECONDS)
    except (asyncio.TimeoutError, OSError):
        transport.abort()
    finally:
        capacity.POOL.unsent(writer, 0)


def _transport(writer):
    # An asyncio StreamWriter's; mitmproxy's other streams (UDP, WireGuard) we do not run.
    transport = getattr(writer, "transport", None)
    return transport if hasattr(transport, "get_write_buffer_size") else None
