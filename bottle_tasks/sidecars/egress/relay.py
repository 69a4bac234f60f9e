"""Tunnels the egress proxy relays to the firewall without opening them.

A CONNECT to a host without routes needs nothing from the egress proxy, so it is not
intercepted here: the egress proxy sends the firewall its own ``CONNECT host:port`` over
the link network and relays the bytes both ways. TLS interception is then paid once, by
the firewall (with its own CA, which the agent also trusts), and a passthrough host stays
uninspected end to end, as it is without routes. The firewall decides about everything in
the tunnel exactly as for an agent that talks to it directly.

Only hosts the firewall's policy allows on that port are relayed: a refused host is
intercepted here as before and handed over as a plain request, so the agent reads the
firewall's 403 (with the fix) instead of a connection closed in its TLS handshake.
"""

from __future__ import annotations

from firewall.policy import Policy
from mitmproxy.proxy import context as mcontext
from mitmproxy.proxy import layer, layers

# mitmproxy's own CONNECT-to-an-upstream-proxy layer (what its upstream mode uses); the
# module is private, so the pinned mitmproxy of requirements.txt is the one it is known from.
from mitmproxy.proxy.layers.http._upstream_proxy import HttpUpstreamProxy


def is_connect_tunnel(nextlayer: layer.NextLayer) -> bool:
    """The first protocol decision inside an agent's CONNECT: the tunnel has a target (the
    connection's top level has none) and no TLS with the agent yet (the HTTP inside a TLS
    this proxy opened has)."""
    ctx = nextlayer.context
    return ctx.server.address is not None and not ctx.client.tls_established


def relayable(pol: Policy | None, host: str, port: int) -> bool:
    """May this tunnel go to the firewall unopened? Only when the firewall would accept it."""
    return pol is not None and pol.allow.match(host, port) is not None


def relay_layer(ctx: mcontext.Context, firewall: tuple[str, int]) -> layer.Layer:
    """The layers that CONNECT through the firewall and then relay raw bytes (no flows, no hooks)."""
    ctx.server.via = ("http", firewall)
    stack = HttpUpstreamProxy.make(ctx, send_connect=True)
    stack /= layers.TCPLayer(ctx, ignore=True)
    return stack[0]


class Relayed:
    """The live relayed tunnels, by client connection: a route added for a host closes them,
    so the agent's next connection is intercepted and gets the route's injection."""

    def __init__(self):
        self.hosts: dict[str, str] = {}

    def add(self, client_id: str, host: str) -> None:
        self.hosts[client_id] = host

    def forget(self, client_id: str) -> None:
        self.hosts.pop(client_id, None)

    def now_routed(self, routed_hosts) -> list[str]:
        """Client connections whose relayed host has routes now; forgotten here."""
        gone = [cid for cid, host in self.hosts.items() if host in routed_hosts]
        for cid in gone:
            self.hosts.pop(cid)
        return gone
