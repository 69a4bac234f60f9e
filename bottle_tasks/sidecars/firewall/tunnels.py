"""Only parsed traffic leaves: what a CONNECT tunnel may carry.

mitmproxy decides per connection which protocol layer comes next (``next_layer``). Left
alone, it relays bytes that are neither TLS nor HTTP as raw TCP, both ways, and it
treats a client that sends fewer than 3 bytes first as "not TLS" - so a ClientHello
split into a 1-byte write and the rest ran end to end, uninspected. Killing the flow in
the TCP hooks does not stop that relay. So the decision itself is checked here, after
mitmproxy's ``NextLayer`` addon made it:

* TLS (then intercepted), HTTP/1, HTTP/2 and, through HTTP, WebSocket: inspected, fine.
* Raw TCP to a passthrough host (allowed, not intercepted by design): fine, audited.
* Too little data to tell yet (a prefix of a TLS record header, or of an HTTP request
  line): wait for more, up to ``MAX_UNDECIDED`` bytes.
* Anything else: both sides are closed before a byte is relayed, and audited as denied.
* A 101 to anything but a WebSocket (mitmproxy then relays raw bytes without asking
  ``next_layer``): the flow is cut at the response's head, unless the host is passthrough.

``TlsGuard`` decides at the ClientHello: passthrough hosts are not intercepted (only when
the SNI names the tunnel's host); for the rest the upstream is offered only the ALPN
protocols the firewall speaks and the tunnel's host as SNI (none for an IP literal, whose
certificate is checked for the address), never what the client sent.
"""

from __future__ import annotations

import re

import wsproto.handshake
from mitmproxy import ctx, http
from mitmproxy.proxy import commands, layer, layers
from mitmproxy.proxy.layers import modes

from .failclosed import fail_closed
from .flowstate import Concern, meta, norm, peer

# Client bytes mitmproxy may hold while the protocol is undecided.
MAX_UNDECIDED = 8 * 1024
# Layers whose traffic the firewall parses and checks (hooks see every request).
INSPECTED = (modes.HttpProxy, layers.HttpLayer, layers.ServerTLSLayer, layers.ClientTLSLayer)
SPOKEN_ALPN = (b"h2", b"http/1.1")
_TLS_RECORD_PREFIXES = (b"", b"\x16", b"\x16\x03")
# The start of an HTTP/1 request line before its end has arrived: "GE", "GET /pa".
_REQUEST_LINE_PREFIX = re.compile(rb"[A-Za-z]{1,32}(?: [\x21-\x7e]*(?: [A-Z/0-9.]*)?)?")


class RefuseLayer(layer.Layer):
    """Closes the client connection (and with it the server's) on its first event; relays nothing."""

    closed = False

    def _handle_event(self, event):
        if not self.closed:
            self.closed = True
            yield commands.CloseConnection(self.context.client)
            if self.context.server.connected:
                yield commands.CloseConnection(self.context.server)


def may_still_be_parsed(data: bytes) -> bool:
    """Could more bytes make ``data`` the start of TLS or of an HTTP request?"""
    if data in _TLS_RECORD_PREFIXES:
        return True
    return b"\n" not in data and _REQUEST_LINE_PREFIX.fullmatch(data) is not None


def judge(nextlayer: layer.NextLayer, passthrough: bool) -> tuple[str, str] | None:
    """Check mitmproxy's protocol decision (shared with the egress proxy). None: keep it, or
    wait for more bytes (``nextlayer.layer`` is then cleared); else (rule, reason) of a refusal.
    ``passthrough``: raw TCP to this connection's target is allowed."""
    chosen = nextlayer.layer
    data = nextlayer.data_client()
    if chosen is None:  # mitmproxy waits for more data: bound what it holds meanwhile
        if len(data) > MAX_UNDECIDED:
            return "undecided", f"no protocol recognised in the first {MAX_UNDECIDED} bytes"
        return None
    if isinstance(chosen, INSPECTED) or (passthrough and isinstance(chosen, layers.TCPLayer)):
        return None
    if may_still_be_parsed(data) and not nextlayer.data_server() and len(data) <= MAX_UNDECIDED:
        nextlayer.layer = None  # ask again when more bytes arrive
        return None
    kind = type(chosen).__name__.removesuffix("Layer").lower() or "unknown"
    return f"raw-{kind}", "only TLS, HTTP and WebSocket traffic may pass (not passthrough)"


class ParsedTrafficOnly(Concern):
    """Overrides mitmproxy's protocol decision where it would relay uninspected bytes."""

    @fail_closed
    def next_layer(self, nextlayer: layer.NextLayer):
        # raw TCP to a passthrough host is kept: audited by RawTunnels.tcp_start
        refusal = judge(nextlayer, self.fw.is_passthrough(nextlayer.context))
        if refusal is not None:
            rule, reason = refusal
            nextlayer.layer = RefuseLayer(nextlayer.context)
            self.fw.audit_connection(nextlayer.context, "TCP", "deny", rule, f"{reason}; the connection was closed")

    @fail_closed
    def responseheaders(self, flow: http.HTTPFlow):
        """After a 101 to anything but a WebSocket, mitmproxy relays raw bytes both ways (its raw
        TCP layer, with no next_layer to judge it), starting with what the agent sent after its
        request: cut before the switch, unless the host is passthrough."""
        response = flow.response
        if response is None or response.status_code != 101 or becomes_websocket(flow):
            return
        if self.fw.is_passthrough_address(flow.server_conn.address or ("", 0)):
            return
        upgrade = self.fw.safe(response.headers.get("upgrade", ""))
        self.fw.kill(flow, "raw-upgrade", f"the upstream switched protocols to {upgrade!r}, not to a WebSocket; "
                     "raw bytes go only to passthrough hosts")


def becomes_websocket(flow: http.HTTPFlow) -> bool:
    """mitmproxy's own test (``HttpStream.send_response``) for a 101 it hands to its WebSocket layer."""
    return (
        flow.response is not None
        and flow.response.headers.get("upgrade", "").lower() == "websocket"
        and flow.request.headers.get("sec-websocket-version", "").encode() == wsproto.handshake.WEBSOCKET_VERSION
        and ctx.options.websocket
    )


class TlsGuard(Concern):
    """At the ClientHello: passthrough or intercept; what the upstream is offered."""

    @fail_closed
    def tls_clienthello(self, data):
        data.ignore_connection = False
        ctx = data.context
        address = ctx.server.address
        if self.fw.policy is None or not address:
            return
        host = norm(address[0])
        sni = data.client_hello.sni
        if self.fw.is_passthrough(ctx):
            if not sni or norm(sni) == host:
                data.ignore_connection = True
                # Tracked as raw here: an ignored TLS connection is relayed without tcp_start,
                # and a reload that ends its passthrough must close it (revocation.py).
                self.fw.revocation.track(ctx.client, address[0], address[1], True)
                return
            # Someone tunnels to a passthrough host but names another: intercept instead, so the
            # request-level Host checks see what is really asked for.
        ctx.client.alpn_offers = [p for p in (data.client_hello.alpn_protocols or []) if p in SPOKEN_ALPN]
        # Also for an IP literal: left unset, mitmproxy would offer the client's SNI upstream and
        # check the certificate for it. An address as SNI makes it send no name and check the
        # certificate for that address.
        ctx.server.sni = host


class RawTunnels(Concern):
    """Audits the raw tunnels ``ParsedTrafficOnly`` let through (passthrough hosts only),
    and cuts any other (defence in depth: such a flow should not exist)."""

    @fail_closed
    def tcp_start(self, flow):
        self._gate(flow, "TCP")

    @fail_closed
    def dns_request(self, flow):
        self._gate(flow, "DNS")

    def _gate(self, flow, kind: str) -> None:
        fw = self.fw
        address = flow.server_conn.address or ("", 0)
        m = meta(flow)
        if kind == "TCP" and fw.is_passthrough_address(address):
            m.update(rule="passthrough", reason=f"raw {kind} to a passthrough host")
            decision = "allow"
        else:
            fw.kill(flow, f"raw-{kind.lower()}", f"raw {kind} traffic is only allowed to passthrough hosts")
            fw.close_client(flow.client_conn)
            decision = "deny"
        fw.audit.decision(
            client=peer(flow.client_conn),
            method=kind,
            host=fw.safe(norm(address[0])),
            port=address[1],
            path="",
            decision=decision,
            rule=m.rule,
            reason=m.reason,
            status=None,
        )
