"""The SSRF guard as a mitmproxy addon: resolve the host ourselves, refuse internal
addresses, and dial exactly the address that was checked (no DNS rebinding)."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.proxy import server_hooks

from . import ssrf
from .failclosed import fail_closed
from .flowstate import Concern, norm, peer, settled


class SsrfGuard(Concern):
    """Resolves the host itself, refuses internal addresses, pins the checked address."""

    @fail_closed
    async def http_connect(self, flow: http.HTTPFlow):
        if not settled(flow):
            await self._precheck(flow)

    @fail_closed
    async def requestheaders(self, flow: http.HTTPFlow):
        if not settled(flow):
            await self._precheck(flow)

    async def _precheck(self, flow: http.HTTPFlow) -> None:
        """Early check so the client gets a clear 403; server_connect re-checks and pins."""
        fw = self.fw
        host, port = flow.request.host, flow.request.port
        try:
            addrs = await fw.resolver.resolve(host, port)
        except ssrf.ResolveError as e:
            fw.deny(flow, "dns", fw.safe(e), status=502)
            return
        verdict = ssrf.check(addrs, fw.policy.allowed_cidrs)
        if not verdict.ok:
            fw.deny(flow, "ssrf", self._internal(host, verdict))

    def _internal(self, host: str, verdict) -> str:
        return ssrf.refusal(f"{self.fw.safe(norm(host))} resolves to {verdict.reason}")

    @fail_closed
    async def server_connect(self, data: server_hooks.ServerConnectionHookData):
        fw = self.fw
        server = data.server
        if server.address is None or server.error:
            return
        host, port = server.address
        pol = fw.policy
        if pol is None:
            fw.refuse_connection(data, "no-policy", "the firewall has no policy loaded")
            return
        # Defence in depth: never dial (or even resolve) an unlisted name or port.
        if pol.allow.match(host, port) is None and pol.allow_for_client(host, port, peer(data.client)) is None:
            fw.refuse_connection(data, "not-allowlisted", f"{fw.safe(norm(host))}:{port} is not on the allowlist")
            return
        try:
            addrs = await fw.resolver.resolve(host, port)
        except ssrf.ResolveError as e:
            fw.refuse_connection(data, "dns", fw.safe(e))
            return
        verdict = ssrf.check(addrs, pol.allowed_cidrs)
        if not verdict.ok:
            fw.refuse_connection(data, "ssrf", self._internal(host, verdict))
            return
        # TLS names the host that was checked (SNI + certificate check), whatever was set before:
        # never a name the client chose. An IP literal as SNI: mitmproxy sends no name and checks
        # the certificate for the address.
        server.sni = norm(host)
        # Dial exactly the checked address; the name is put back once connected.
        fw.pins[server] = (host, port)
        server.address = (str(verdict.address), port)

    @fail_closed
    def server_connected(self, data: server_hooks.ServerConnectionHookData):
        self._unpin(data.server)

    @fail_closed
    def server_connect_error(self, data: server_hooks.ServerConnectionHookData):
        self._unpin(data.server)

    def _unpin(self, server) -> None:
        pin = self.fw.pins.pop(server, None)
        if pin is not None:
            # mitmproxy refuses `server.address = ...` on an open connection (it would mean
            # retargeting it). This only puts back the name of the very address we dialled,
            # which the HTTP layer reads as the tunnel's host for the next requests.
            vars(server)["address"] = pin
