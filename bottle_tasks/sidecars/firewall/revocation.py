"""Revocation: a policy reload closes what the new policy would not allow.

Every request is checked against the policy of the moment, so a new request to a host
that ``inv deny`` removed is refused anyway. What is already open is not a request: a
WebSocket, a streaming response, a passthrough tunnel. So each client connection's
targets are remembered, and after a reload every connection with a target the new
policy refuses (or no longer passes through) is closed, both sides. So is every connection
to an internal address the new policy's ``allowed_cidrs`` no longer lets it reach (the
address each server connection dialled is remembered too).
"""

from __future__ import annotations

import ipaddress

from mitmproxy import http
from mitmproxy.proxy import server_hooks

from . import ssrf
from .failclosed import fail_closed
from .flowstate import Concern, peer, settled

# (host, port, raw): raw tunnels must also still be passthrough.
Target = tuple[str, int, bool]
# Targets (and dialled addresses) kept for one client connection. A wildcard that resolves any
# name lets one keep-alive connection ask ever new hosts: past this many, the connection is
# not followed further but closed at the next reload, whatever it changes.
MAX_TRACKED = 1024


class Revocation(Concern):
    """Remembers each live client connection's targets; closes the revoked ones on reload."""

    def __init__(self, fw):
        super().__init__(fw)
        self.targets: dict[str, set[Target]] = {}
        self.peers: dict[str, str | None] = {}  # client id -> address (allow_for is per source)
        self.dialled: dict[str, set[ssrf.IPAddress]] = {}  # client id -> the addresses its servers are at
        self.overflowed: set[str] = set()  # client ids with more than MAX_TRACKED of either

    def track(self, client, host: str, port: int, raw: bool) -> None:
        self._add(self.targets, client.id, (host, port, raw))
        self.peers[client.id] = peer(client)

    def _add(self, kept: dict, client_id: str, item) -> None:
        items = kept.setdefault(client_id, set())
        if item not in items and len(items) >= MAX_TRACKED:
            self.overflowed.add(client_id)
        else:
            items.add(item)

    @fail_closed
    def http_connect(self, flow: http.HTTPFlow):
        if not settled(flow):
            self.track(flow.client_conn, flow.request.host, flow.request.port, False)

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow):
        if not settled(flow):
            self.track(flow.client_conn, flow.request.host, flow.request.port, False)

    @fail_closed
    def tcp_start(self, flow):
        if flow.server_conn.address:
            host, port = flow.server_conn.address
            self.track(flow.client_conn, host, port, True)

    @fail_closed
    def server_connected(self, data: server_hooks.ServerConnectionHookData):
        if data.server.peername:
            self._add(self.dialled, data.client.id, ipaddress.ip_address(data.server.peername[0]))

    def client_disconnected(self, client):
        self.targets.pop(client.id, None)
        self.peers.pop(client.id, None)
        self.dialled.pop(client.id, None)
        self.overflowed.discard(client.id)

    def _unreachable(self, client_id: str) -> list[ssrf.IPAddress]:
        """The addresses this client's connections dialled that the current policy's
        allowed_cidrs no longer let through the SSRF check."""
        pol = self.fw.policy
        if pol is None:
            return sorted(self.dialled.get(client_id, ()), key=str)
        return [a for a in sorted(self.dialled.get(client_id, ()), key=str)
                if not ssrf.check([a], pol.allowed_cidrs).ok]

    def revoke(self) -> int:
        """Close every live connection to a target the current policy refuses; how many."""
        closed = 0
        for client_id in list(self.targets.keys() | self.dialled.keys()):
            address = self.peers.get(client_id)
            targets = self.targets.get(client_id, set())
            revoked = sorted(t for t in targets if not self.fw.still_allowed(*t, client=address))
            internal = self._unreachable(client_id)
            if not revoked and not internal and client_id not in self.overflowed:
                continue
            self.targets.pop(client_id, None)
            self.peers.pop(client_id, None)
            self.dialled.pop(client_id, None)
            self.overflowed.discard(client_id)
            if self.fw.close_client_id(client_id):
                closed += 1
                if revoked:
                    host, port, _ = revoked[0]
                    reason = "no longer allowed by the reloaded policy"
                elif internal:
                    host, port = str(internal[0]), None
                    reason = "an internal address the reloaded policy's allowed_cidrs no longer include"
                else:
                    host, port = "", None
                    reason = f"it asked more than {MAX_TRACKED} hosts or addresses, so it is not followed"
                self.fw.audit.event("revoked", host=self.fw.safe(host), port=port, reason=reason)
        return closed
