"""Bounds on what all of the agent's connections together may make a proxy hold.

``mitm_limits`` bounds each connection and each request. An agent that opens many of them
multiplies those bounds: 384 connections, each sending all but the last byte of a 1 MB body
that DLP must see whole, had the firewall (512 MiB) killed by the kernel within 6 s, and the
bottle's only way out with it. So two bounds across connections:

- ``ConnectionCap``: at most ``MAX_CLIENT_CONNECTIONS`` client connections at once. One more
  is closed as soon as it is accepted, before any byte of it is read. Idle, an intercepted TLS
  connection costs about 160 KiB; with what ``mitm_limits`` lets each hold outside the pool
  (256 KiB unread, 512 KiB unsent, an HTTP/2 connection's 16 streams and 128 KiB of their
  heads), times this cap, beside a full pool, a sidecar stays within its 512 MiB. The worst
  measured: 192 HTTP/2 connections, each with 16 downloads its client takes nothing of, and 64
  holding most of a 2 MiB body, peaked at 365 MiB (``unsent`` charges the HTTP/2 windows' bytes
  to the pool; on top of it, 486-495 MiB).
- ``BodyPool``: request bodies held whole for DLP, and WebSocket messages from the agent while
  they are assembled, share ``BODY_POOL_BYTES``. A body that would take the pool past it is
  refused at that chunk (502, try again: the others' bodies leave the pool as their requests
  end), never read whole (a body alone always fits: ``MAX_HELD_ITEM`` is a quarter of the pool);
  such a message closes its WebSocket. ``mitm_limits`` charges them as they arrive, and
  ``unsent`` what the proxies have written and their peers have not taken yet.

Both proxies run both (the egress proxy streams bodies but those it holds to read a
``_method`` field in them, so only those and its WebSocket messages draw on its pool).
Measured on a bottle's firewall: 256 connections, each with most of 1 MB unread
behind a pending response, held 365 MiB when ``mitm_limits.MAX_UNREAD`` was 1 MiB, too close to
512 MiB beside a full pool; so that bound and ``MAX_H2_UNSENT`` are now a fraction of it.
A refused connection is reported through ``on_refused``, at most once a second with a count.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

MAX_CLIENT_CONNECTIONS = 256
BODY_POOL_BYTES = 128 * 1024 * 1024
# The largest single body or WebSocket message a proxy holds whole (``dlp.max_body_bytes`` at
# most, and a message to a host whose DLP is off). While it is joined, scanned, encrypted and
# written it exists several times over for a moment: a 32 MiB body grew a firewall's peak by
# 117 MiB, a 32 MiB message by 153 MiB. Beside a full pool and the connections' own bounds,
# that must stay within a sidecar's 512 MiB; at 128 MiB one body alone came near it.
MAX_HELD_ITEM = 32 * 1024 * 1024
# At most one line per this many seconds about refused connections (a flood of them is one line).
REFUSAL_REPORT_INTERVAL = 1.0


class ConnectionCap:
    """mitmproxy addon: refuses client connections beyond ``limit`` open at once."""

    def __init__(self, on_refused: Callable[[str, int, str], None], limit: int = MAX_CLIENT_CONNECTIONS,
                 clock: Callable[[], float] = time.monotonic):
        """`on_refused(peer, count, reason)`: report `count` refusals, the last from `peer`."""
        self.limit = limit
        self.open: set[str] = set()  # ids of the client connections accepted and not yet gone
        self._on_refused = on_refused
        self._clock = clock
        self._unreported = 0
        self._reported_at = float("-inf")

    def client_connected(self, client) -> None:
        if len(self.open) < self.limit:
            self.open.add(client.id)
            return
        reason = f"the agent has {len(self.open)} connections open, the most this proxy serves at once"
        client.error = reason  # mitmproxy closes it without reading from it
        self._unreported += 1
        now = self._clock()
        if now - self._reported_at >= REFUSAL_REPORT_INTERVAL:
            peer = client.peername[0] if client.peername else ""
            self._on_refused(peer, self._unreported, reason)
            self._unreported, self._reported_at = 0, now

    def client_disconnected(self, client) -> None:
        self.open.discard(client.id)  # a refused one was never counted


class BodyPool:
    """Bytes of request bodies held at once, across all flows, within ``capacity``."""

    def __init__(self, capacity: int = BODY_POOL_BYTES):
        self.capacity = capacity
        self.held = 0
        self._charges: dict[str, int] = {}  # flow id -> bytes charged
        self._unsent: dict[int, int] = {}  # id of a writer (or a client's HTTP/2 layers) -> bytes not sent

    def hold(self, flow, size: int) -> bool:
        """Account `flow` as holding `size` bytes now (more or fewer than before); False, and the
        charge unchanged, when the pool cannot take the growth. The charge ends with `release`,
        or with the flow itself."""
        before = self._charges.get(flow.id)
        grown = size - (before or 0)
        if grown > 0 and self.held + grown > self.capacity:
            return False
        if before is None:
            # Whatever way the flow ends, its bytes are gone once it is: a path that misses
            # `release` cannot shrink the pool for good.
            weakref.finalize(flow, self._release_id, flow.id)
        self._charges[flow.id] = size
        self.held += grown
        return True

    def release(self, flow) -> None:
        self._release_id(flow.id)

    def _release_id(self, flow_id: str) -> None:
        self.held -= self._charges.pop(flow_id, 0)

    def unsent(self, holder, size: int) -> None:
        """Account `size` bytes as written to `holder` (a connection's writer, or a client's
        HTTP/2 layers) and not yet taken by its peer, in place of what was before: they are in
        memory as much as a held body is, so they fill the pool too, and a body or message that
        would take it past its capacity is refused (``unsent.py``). Never refused itself: the
        bytes are already there."""
        key = id(holder)
        before = self._unsent.pop(key, None)
        if before is None and size:
            weakref.finalize(holder, self._forget_unsent, key)  # a holder gone takes its bytes along
        if size:
            self._unsent[key] = size
        elif before is not None:
            self._unsent[key] = 0  # known, so that its finalizer is not registered again
        self.held += size - (before or 0)

    def _forget_unsent(self, key: int) -> None:
        self.held -= self._unsent.pop(key, 0)


POOL = BodyPool()


class PoolRelease:
    """mitmproxy addon: what a flow holds leaves the pool when the flow ends, answered or failed
    (the weak reference `BodyPool.hold` keeps covers any other end, once the flow is gone)."""

    def response(self, flow) -> None:
        POOL.release(flow)

    def error(self, flow) -> None:
        POOL.release(flow)

    def websocket_end(self, flow) -> None:
        POOL.release(flow)
