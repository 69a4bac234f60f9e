"""The firewall as mitmproxy addons: one concern per module, one shared ``Firewall``.

``Firewall`` holds what the concerns share (current policy, scanner, resolver, audit
log) and the helpers they use to refuse, close and audit. It lists the concern addons
as its children, in the order their hooks must run for each event:

    PolicyAddon        policy_reload.py  option ``bottle_policy``; SIGHUP reload, keeps the old policy if the new one is bad
    ConnectionCap      capacity.py       at most so many client connections at once; one more is closed unread
    HostGate           host_gate.py      default deny: allowlist and ports on CONNECT and on every request;
                                         Host/:authority must name the tunnel's host; the health check
    HeaderHygiene      hygiene.py        CR/LF/NUL, size limits, transfer codings, hop-by-hop headers
    DlpGuard           dlp_guard.py      secrets in method, target, headers, trailers, body, WebSocket; block|warn|off
    SsrfGuard          ssrf_guard.py     resolve, refuse internal addresses, dial exactly the checked address
    TlsGuard           tunnels.py        passthrough or intercept; ALPN and SNI offered upstream
    ParsedTrafficOnly  tunnels.py        a tunnel carries only TLS/HTTP/WebSocket, or raw bytes to passthrough hosts;
                                         no 101 to another protocol
    RawTunnels         tunnels.py        audits passthrough raw tunnels
    Revocation         revocation.py     a reload closes open connections the new policy refuses
    Streaming          streaming.py      responses are streamed (never buffered), bytes counted for the audit;
                                         relayed WebSocket and raw messages are not kept
    Audit              audit.py          one JSON line per decision
    PoolRelease        capacity.py       what a flow holds (body, message) leaves the shared pool when it ends

``mitm_limits`` adds the bounds mitmproxy has no hook for (HTTP/1 head size and unread
bytes, request body size as it arrives and the pool all held bodies share, WebSocket control
frames and message size, HTTP/2 heads and windows, what a peer has not taken (``unsent``),
TLS writes in pieces) and frames HTTP/2 bodies sent on over HTTP/1.

Every hook is wrapped in ``fail_closed``: an exception refuses the request.
Hooks skip flows an earlier concern has already refused or answered.
"""

from __future__ import annotations

import logging
import re
import traceback
import weakref
from collections import OrderedDict

import wsproto.events
from mitmproxy import http
from mitmproxy.connection import Server
from mitmproxy.proxy import server_hooks

from . import capacity, mitm_limits, ssrf
from . import policy as policy_mod
from .audit import Audit, AuditLog
from .dlp import BUILTIN_RULES, Scanner
from .dlp_guard import DlpGuard
from .flowstate import close_connection, meta, norm, peer
from .host_gate import HostGate
from .hygiene import HeaderHygiene
from .policy_reload import PolicyAddon
from .revocation import Revocation
from .ssrf_guard import SsrfGuard
from .streaming import Streaming
from .tunnels import ParsedTrafficOnly, RawTunnels, RefuseLayer, TlsGuard

__all__ = ["Firewall", "meta"]

logger = logging.getLogger("bottle.firewall")

FIREWALL_HEADER = "x-bottle-firewall"
REQUEST_PHASE_HOOKS = frozenset({"http_connect", "requestheaders", "request"})


class Firewall:
    """Shared state + the concern addons (``addons`` children, run in order)."""

    def __init__(
        self,
        policy: policy_mod.Policy | None = None,
        audit: AuditLog | None = None,
        resolver: ssrf.Resolver | None = None,
    ):
        self.policy: policy_mod.Policy | None = None
        self.scanner = Scanner(BUILTIN_RULES)
        self.audit = audit or AuditLog()
        self.resolver = resolver or ssrf.Resolver()
        # server -> (host, port): the name a pinned server connection had before we put the IP in.
        # Weak: a connect that is cancelled (waiting for mitmproxy's per-address limit) fires
        # neither server_connected nor server_connect_error, and its pin went with the server.
        self.pins: weakref.WeakKeyDictionary[Server, tuple[str, int]] = weakref.WeakKeyDictionary()
        # (client id, host, port) -> (rule, reason) for connections refused at server_connect time,
        # picked up by the flow that asked for the connection when it fails.
        self.connect_refusals: OrderedDict[tuple, tuple[str, str]] = OrderedDict()
        if policy is not None:
            self.set_policy(policy)
        self.dlp = DlpGuard(self)
        self.revocation = Revocation(self)
        self.addons = [
            PolicyAddon(self),
            capacity.ConnectionCap(self.refused_connections),
            HostGate(self),
            HeaderHygiene(self),
            # DLP before the SSRF guard: a secret in the host name must not leave as a DNS query
            self.dlp,
            SsrfGuard(self),
            TlsGuard(self),
            ParsedTrafficOnly(self),
            RawTunnels(self),
            self.revocation,
            Streaming(self),
            Audit(self),
            capacity.PoolRelease(),
        ]
        mitm_limits.install(self)

    def set_policy(self, pol: policy_mod.Policy) -> None:
        self.policy = pol
        self.scanner = Scanner(pol.dlp.rules)

    # -- questions the concerns ask --------------------------------------------------------

    def safe(self, text: str) -> str:
        """``text`` with secrets redacted: for everything we print or send back."""
        return self.scanner.redact(str(text))

    def is_passthrough_address(self, address) -> bool:
        """Is ``(host, port)`` an allowed passthrough target (a tunnel not intercepted)?"""
        pol = self.policy
        if pol is None or not address:
            return False
        host, port = norm(address[0]), address[1]
        return pol.passthrough.match(host) is not None and pol.allow.match(host, port) is not None

    def is_passthrough(self, context) -> bool:
        return self.is_passthrough_address(context.server.address)

    def still_allowed(self, host: str, port: int, raw: bool, client: str | None = None) -> bool:
        """`client`: the connection's peer address, for hosts allowed to one source (allow_for)."""
        pol = self.policy
        if pol is None or (pol.allow.match(host, port) is None and pol.allow_for_client(host, port, client) is None):
            return False
        return not raw or self.is_passthrough_address((host, port))

    # -- refusing ------------------------------------------------------------------------

    def deny(self, flow, rule: str, reason: str, *, status: int = 403, hint: str = "") -> None:
        """Refuse a request that has not been forwarded yet: a local error response."""
        m = meta(flow)
        m.update(decision="deny", rule=rule, reason=reason)
        req = flow.request
        # Answered locally: never stream the body upstream. DLP streams bodies to `off`
        # hosts, and mitmproxy refuses a local response on a streaming flow.
        req.stream = False
        head = f"bottle firewall: refused {self.safe(req.method)} {self.safe(req.host)}:{req.port} [{rule}]"
        body = "\n".join(x for x in (head, reason, hint) if x) + "\n"
        flow.response = http.Response.make(
            status,
            body.encode("utf-8"),
            {
                "content-type": "text/plain; charset=utf-8",
                "cache-control": "no-store",
                FIREWALL_HEADER: f"deny; rule={rule}",
            },
        )

    def kill(self, flow, rule: str, reason: str) -> None:
        """Refuse a flow that is already past the point where a response can be set."""
        m = meta(flow)
        m.update(decision="deny", rule=rule, reason=reason)
        if flow.killable:
            flow.kill()

    def refused_in_transit(self, flow, rule: str, reason: str) -> None:
        """``mitm_limits`` cut a flow while its data was arriving (body or message too large)."""
        meta(flow).update(decision="deny", rule=rule, reason=reason)
        if flow.websocket is not None:  # a WebSocket has already been audited as allowed: one more line
            meta(flow).audited = False
        self.emit(flow)

    def refused_connections(self, client: str, count: int, reason: str) -> None:
        """``capacity.ConnectionCap`` closed `count` connections (the last from `client`) unread."""
        self.audit.decision(client=client, method="", host="", port=None, path="", decision="deny",
                            rule="connection-limit", reason=f"{reason}; {count} refused since the last such line",
                            status=None)

    def websocket_control(self, flow, event: wsproto.events.Event) -> wsproto.events.Event:
        """A ping, pong or close from the agent: scanned like a message; blanked when refused."""
        if isinstance(event, wsproto.events.CloseConnection):
            payload, what = (event.reason or "").encode("utf-8", "replace"), "WebSocket close reason"
        else:
            payload, what = bytes(event.payload), f"WebSocket {type(event).__name__.lower()}"
        if self.dlp.websocket_payload_ok(flow, what, payload):
            return event
        if isinstance(event, wsproto.events.CloseConnection):
            return wsproto.events.CloseConnection(code=event.code, reason=None)
        return type(event)(payload=b"")

    def websocket_control_to_agent(self, flow, event: wsproto.events.Event) -> wsproto.events.Event:
        return event  # what comes back is the egress proxy's to scrub; the firewall scans what leaves

    def refuse_connection(self, data: server_hooks.ServerConnectionHookData, rule: str, reason: str) -> None:
        server = data.server
        server.error = f"bottle firewall [{rule}]: {reason}"
        host, port = server.address if server.address else ("", 0)
        key = (data.client.id, norm(host), port)
        self.connect_refusals[key] = (rule, reason)
        while len(self.connect_refusals) > 1024:
            self.connect_refusals.popitem(last=False)

    def take_refusal(self, flow) -> tuple[str, str] | None:
        req = flow.request
        return self.connect_refusals.pop((flow.client_conn.id, norm(req.host), req.port), None)

    def close_client_id(self, client_id: str) -> bool:
        return close_connection(client_id)

    def close_client(self, client) -> bool:
        return self.close_client_id(client.id)

    def revoke(self) -> int:
        return self.revocation.revoke()

    def fail(self, hook: str, obj, exc: BaseException) -> None:
        """A hook raised: refuse whatever it was deciding about, log the (redacted) traceback."""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        logger.error("bottle firewall: hook %s failed, refusing (fail closed):\n%s", hook, self.safe(tb))
        reason = f"internal firewall error in {hook} ({type(exc).__name__}); refused (fail closed)"
        try:
            if isinstance(obj, http.HTTPFlow):
                if hook in REQUEST_PHASE_HOOKS:
                    self.deny(obj, "error", reason)
                else:
                    self.kill(obj, "error", reason)
                    if hook in ("response", "error", "http_connected", "http_connect_error"):
                        self.emit(obj)
            elif isinstance(obj, server_hooks.ServerConnectionHookData):
                self.refuse_connection(obj, "error", reason)
            elif hook == "tls_clienthello":
                obj.ignore_connection = False  # intercept: the per-request checks then still apply
            elif hook == "next_layer":
                obj.layer = RefuseLayer(obj.context)
            elif hasattr(obj, "kill"):
                m = meta(obj)
                m.update(decision="deny", rule="error", reason=reason)
                if obj.killable:
                    obj.kill()
                if getattr(obj, "client_conn", None) is not None:
                    self.close_client(obj.client_conn)
        except Exception:  # pragma: no cover - last resort, never let the failure path raise
            logger.exception("bottle firewall: fail-closed handler failed")

    # -- auditing -----------------------------------------------------------------------------

    def emit(self, flow) -> None:
        """Write the flow's audit line once."""
        m = meta(flow)
        if m.audited or flow.request is None:
            return
        m.audited = True
        req = flow.request
        resp = flow.response
        reason = m.reason
        if m.decision == "deny":
            bytes_out = bytes_in = 0
        else:
            bytes_out = m.bytes_out or len(req.raw_content or b"")
            bytes_in = m.bytes_in or (len(resp.raw_content or b"") if resp is not None else 0)
            if flow.error is not None:
                reason = "; ".join(x for x in (reason, f"upstream error: {self.safe(error_text(flow.error.msg))}")
                                   if x)
        self.audit.decision(
            client=peer(flow.client_conn),
            method=self.safe(req.method),
            host=self.safe(req.host),
            port=req.port,
            path=self.safe(req.path.split("?", 1)[0]),
            decision=m.decision,
            rule=m.rule,
            reason=reason,
            bytes_out=bytes_out,
            bytes_in=bytes_in,
            status=resp.status_code if resp is not None else None,
        )

    def audit_connection(self, context, method: str, decision: str, rule: str, reason: str) -> None:
        """A decision about a whole connection (no HTTP request to hang it on)."""
        host, port = context.server.address or ("", 0)
        self.audit.decision(
            client=peer(context.client),
            method=method,
            host=self.safe(norm(host)),
            port=port,
            path="",
            decision=decision,
            rule=rule,
            reason=reason,
            status=None,
        )


# How much of an upstream error's message the audit keeps.
ERROR_TEXT_LIMIT = 200


def error_text(message: str) -> str:
    """mitmproxy's message for a broken answer, without the bytes it quotes: `Bad HTTP response
    line: b'...'` holds what the upstream sent, maybe a credential the egress proxy injected
    and the upstream echoed, which the firewall never knows to redact."""
    quoted = re.search(r"\bb['\"]", message)
    text = message[:quoted.start()].rstrip(" :") + " (the upstream's bytes not kept)" if quoted else message
    return text[:ERROR_TEXT_LIMIT]

