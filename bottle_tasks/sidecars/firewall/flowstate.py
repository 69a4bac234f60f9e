"""Per-flow firewall state and the small helpers every concern uses.

A flow's decision so far lives in ``flow.metadata["bottle.firewall"]`` (a ``FlowState``); a concern whose
hook runs after another concern refused the flow, or answered it locally, skips it
(``settled(flow)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mitmproxy import ctx

from .hosts import HostError, normalize_host

META = "bottle.firewall"


@dataclass
class FlowState:
    """A flow's decision so far and its byte counters (the audit line is made from them)."""

    decision: str = "allow"  # allow | warn | deny | local (answered by the firewall itself)
    rule: str = "allowlist"
    reason: str = ""
    bytes_out: int = 0
    bytes_in: int = 0
    audited: bool = False
    dlp_action: str | None = None  # block | warn | off, once the DLP guard looked at the head

    def update(self, *, decision: str | None = None, rule: str | None = None, reason: str | None = None) -> None:
        self.decision = decision if decision is not None else self.decision
        self.rule = rule if rule is not None else self.rule
        self.reason = reason if reason is not None else self.reason


def meta(flow) -> FlowState:
    """The flow's firewall state, created on first use."""
    state = flow.metadata.get(META)
    if state is None:
        state = flow.metadata[META] = FlowState()
    return state


def refused(flow) -> bool:
    return meta(flow).decision == "deny"


def settled(flow) -> bool:
    """Refused, or answered by the firewall itself (the health check): nothing left to decide."""
    return meta(flow).decision in ("deny", "local")


def peer(conn) -> str | None:
    """The client's address as the audit log shows it."""
    address = getattr(conn, "peername", None)
    return str(address[0]) if address else None


def norm(host: str) -> str:
    """``normalize_host`` for hosts already accepted by mitmproxy (never raises)."""
    try:
        return normalize_host(host)
    except HostError:
        return str(host).lower()


def counter(state: FlowState, key: str):
    """A mitmproxy ``stream`` callable that only counts the bytes it passes on (``key``:
    ``bytes_out`` or ``bytes_in``)."""

    def count(chunk: bytes) -> bytes:
        setattr(state, key, getattr(state, key) + len(chunk))
        return chunk

    return count


class Concern:
    """Base of the firewall's addons: each gets the shared ``Firewall`` as ``self.fw``."""

    def __init__(self, fw):
        self.fw = fw


def close_connection(client_id: str) -> bool:
    """Close a live client connection (and its server connections) now, from outside its
    layers: mitmproxy's ``flow.kill()`` only acts when a flow's next hook runs, which an
    open WebSocket or tunnel may never reach. False: it is gone, or going."""
    proxyserver = ctx.master.addons.get("proxyserver") if ctx.master else None
    handler = getattr(proxyserver, "connections", {}).get(client_id) if proxyserver else None
    if handler is None or handler.client not in handler.transports:
        return False
    handler.close_connection(handler.client)
    return True
