"""Default deny: the allowlist, checked at CONNECT and again on every request in a tunnel.

A tunnel to one host cannot carry requests for another: the Host header, the HTTP/2
``:authority`` and an absolute-form target must all name the tunnel's host and port.
An allowed host is reachable on the web ports only (443, 80) unless the allowlist
names another port (``host:port``).

The health check's request (``HEALTH_HOST``) is answered here, by the event loop that
serves every other request: a wedged firewall cannot pass it.
"""

from __future__ import annotations

from mitmproxy import http

from . import ssrf
from .failclosed import fail_closed
from .flowstate import Concern, meta, norm, peer, refused, settled
from .healthcheck import HEALTH_HOST, HEALTH_PATH
from .hosts import HostError, ip_literal, normalize_host, split_authority


class HostGate(Concern):
    """Default deny. The host and port are checked at CONNECT and again on every request."""

    @fail_closed
    def http_connect(self, flow: http.HTTPFlow):
        self._check_host(flow)
        if not refused(flow):
            pol = self.fw.policy
            if pol.passthrough.match(flow.request.host) is not None:
                m = meta(flow)
                m.rule = "passthrough"
                m.reason += " (passthrough: TLS not intercepted)"

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow):
        if settled(flow):
            return
        if self._health(flow):
            return
        self._check_host(flow)
        if not refused(flow):
            self._check_authority(flow)

    def _health(self, flow: http.HTTPFlow) -> bool:
        req = flow.request
        if req.host != HEALTH_HOST or req.path != HEALTH_PATH or req.method != "GET":
            return False
        m = meta(flow)
        m.update(decision="local", rule="health")
        m.audited = True  # not a decision: no audit line every 30 s
        state = "ok" if self.fw.policy is not None else "no-policy"
        flow.response = http.Response.make(
            200 if state == "ok" else 503, f"{state}\n".encode(), {"content-type": "text/plain"}
        )
        return True

    def _check_host(self, flow: http.HTTPFlow) -> None:
        fw = self.fw
        pol = fw.policy
        if pol is None:
            fw.deny(flow, "no-policy", "the firewall has no policy loaded, so it refuses everything")
            return
        raw, port = flow.request.host, flow.request.port
        try:
            host = normalize_host(raw)
        except HostError as e:
            fw.deny(flow, "bad-host", f"the request host is not a valid host name ({fw.safe(e)})")
            return
        ip = ip_literal(host)
        if ip is not None and not ssrf.in_cidrs(ip, pol.allowed_cidrs):
            why = ssrf.classify(ip)
            if why is not None:
                fw.deny(flow, "ssrf", ssrf.refusal(f"{host} is {why}"))
                return
        pattern = pol.allow.match(host, port)
        if pattern is None:
            # Hosts allowed for one source only (the git gate's network), by the client's address.
            pattern = pol.allow_for_client(host, port, peer(flow.client_conn))
        if pattern is None:
            shown = fw.safe(host)
            if pol.allow.match(host) is not None:
                entry = f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"
                fw.deny(
                    flow,
                    "port",
                    f"{shown} is allowed on ports 443 and 80 only, not on {port}.",
                    hint=f"To allow this port, run on the host: inv allow {entry}",
                )
                return
            fw.deny(
                flow,
                "not-allowlisted",
                f"{shown} is not on the allowlist of bottle {pol.bottle!r}.",
                hint=f"To allow it, run on the host: inv allow {shown}",
            )
            return
        meta(flow).update(rule="allowlist", reason=f"matches {pattern.entry}")

    def _check_authority(self, flow: http.HTTPFlow) -> None:
        """Host header and :authority / absolute-form target must name the host we connect to."""
        req = flow.request
        host = norm(req.host)
        claims = []
        if req.authority:
            claims.append(("request target authority", req.authority))
        for value in req.headers.get_all("host"):
            claims.append(("Host header", value))
        for label, value in claims:
            try:
                h, p = split_authority(value)
                h = normalize_host(h)
            except HostError:
                self.fw.deny(flow, "host-mismatch", f"the {label} is malformed")
                return
            if h != host or (p is not None and p != req.port):
                named = self.fw.safe(h if p is None else f"{h}:{p}")
                self.fw.deny(
                    flow,
                    "host-mismatch",
                    f"the {label} names {named} but this connection goes to {self.fw.safe(host)}:{req.port}; "
                    "a tunnel to one host cannot carry requests for another",
                )
                return
