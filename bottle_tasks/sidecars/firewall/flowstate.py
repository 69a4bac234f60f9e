"""Per-flow firewall state and the small helpers every concern uses.

A flow's decision so far lives in ``flow.metadata["bottle.firewall"]``; a concern whose
hook runs after another concern refused the flow, or answered it locally, skips it
(``settled(flow)``).
"""

from __future__ import annotations

from mitmproxy import ctx

from .hosts import HostError, normalize_host

META = "bottle.firewall"


def meta(flow) -> dict:
    """Per-flow firewall state: the decision so far and byte counters."""
    m = flow.metadata.get(META)
    if m is None:
        m = {
            "decision": "allow",
            "rule": "allowlist",
            "reason": "",
            "bytes_out": 0,
            "bytes_in": 0,
            "audited": False,
            "dlp_action": None,
        }
        flow.metadata[META] = m
    return m


def refused(flow) -> bool:
    return meta(flow)["decision"] == "deny"


def settled(flow) -> bool:
    """Refused, or answered by the firewall itself (the health check): nothing left to decide."""
    return meta(flow)["decision"] in ("deny", "local")


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


def counter(m: dict, key: str):
    """A mitmproxy ``stream`` callable that only counts the bytes it passes on."""

    def count(chunk: bytes) -> bytes:
        m[key] += len(chunk)
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
