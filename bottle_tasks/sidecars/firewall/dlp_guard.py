"""DLP as a mitmproxy addon: secrets in anything that leaves, block | warn | off per host.

Scanned: the method, the request target (host, path, query, authority), header names and
values, trailers, the body after its Content-Encoding is undone (bounded; every gzip member
and zstd frame) and as it leaves (a coding's own fields: gzip's file name), WebSocket
messages and the payloads of the agent's WebSocket control frames (ping, pong, close).
A finding names the rule and where it was seen, never the secret.

Bodies are buffered to be scanned, so their size is bounded as they arrive: a body over
``dlp.max_body_bytes`` is refused at the first byte past the limit (``mitm_limits``),
never read whole. Hosts whose action is ``off`` are streamed and not bounded.
"""

from __future__ import annotations

from mitmproxy import http

from . import mitm_limits
from .dlp import BodyError, decode_body
from .failclosed import fail_closed
from .flowstate import Concern, counter, meta, peer, refused, settled


class DlpGuard(Concern):
    """Looks for secrets in what leaves; refuses, warns or lets it be, per host."""

    def __init__(self, fw):
        super().__init__(fw)
        # Client connections that opened a CONNECT tunnel. The egress proxy's injected headers
        # come as plain proxy requests; what it relays in a tunnel is the agent's own traffic,
        # so nothing in a tunnel is exempt, whichever address it comes from.
        self.tunnelled: set[str] = set()

    @fail_closed
    def http_connect(self, flow: http.HTTPFlow):
        self.tunnelled.add(flow.client_conn.id)
        if not settled(flow):
            self._scan_head(flow)

    def client_disconnected(self, client):
        self.tunnelled.discard(client.id)

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow):
        if settled(flow):
            return
        action = self._scan_head(flow)
        if refused(flow) or action is None:
            return
        m = meta(flow)
        if action == "off":
            flow.request.stream = counter(m, "bytes_out")  # nothing to scan: do not buffer
            return
        limit = self.fw.policy.dlp.max_body_bytes
        declared = mitm_limits.declared_size(flow.request)
        if declared > limit:
            self._too_large(flow, declared, limit)
            return
        mitm_limits.limit_request_body(flow, limit)  # chunked / HTTP/2: bounded as it arrives

    @fail_closed
    def request(self, flow: http.HTTPFlow):
        if settled(flow):
            return
        m = meta(flow)
        action = m.dlp_action
        if action in (None, "off"):
            return
        req = flow.request
        raw = req.raw_content or b""
        m.bytes_out = len(raw)
        limit = self.fw.policy.dlp.max_body_bytes
        if len(raw) > limit:
            self._too_large(flow, len(raw), limit)
            return
        seen = set(self.fw.policy.dlp.rules_off_for(req.host))  # rules already "seen" are not reported
        findings = []
        if req.trailers:
            findings += self.fw.scanner.scan_headers(req.trailers.items(multi=True), where="trailer", seen=seen)
        try:
            body = decode_body(raw, req.headers.get("content-encoding", ""), limit)
        except BodyError as e:
            if e.rule == "body-too-large" or action == "block":
                self.fw.deny(flow, f"dlp:{e.rule}", f"{e}; the body could not be checked for secrets")
            else:
                self._warn(flow, f"dlp:{e.rule}", str(e))
            return
        findings += self.fw.scanner.scan_body(body, req.headers.get("content-type", ""), seen)
        if body is not raw:
            # The bytes that leave, too: a coding's own fields (a gzip member's file name, a zstd
            # skippable frame) are not in what decoding gives, and an upstream may keep them.
            findings += self.fw.scanner.scan_body(raw, "", seen)
        self._act(flow, findings, action)

    @fail_closed
    def websocket_message(self, flow: http.HTTPFlow):
        if flow.websocket is None or not flow.websocket.messages:
            return
        msg = flow.websocket.messages[-1]
        if not msg.from_client:
            return
        content = msg.content if isinstance(msg.content, bytes) else str(msg.content).encode()
        if not self.websocket_payload_ok(flow, "WebSocket message", content):
            msg.drop()

    def websocket_payload_ok(self, flow: http.HTTPFlow, what: str, payload: bytes) -> bool:
        """Scan what the agent sends over a WebSocket; False: do not forward it (audited)."""
        pol = self.fw.policy
        action = pol.dlp.action_for(flow.request.host) if pol else "block"
        if action == "off" or not payload:
            return True
        findings = self.fw.scanner.scan_body(payload, seen=set(pol.dlp.rules_off_for(flow.request.host) if pol else ()))
        if not findings:
            return True
        reason = "; ".join(f.describe().replace("request body", what) for f in findings)
        decision = "deny" if action == "block" else "warn"
        if decision == "deny":
            reason += "; it was not forwarded"
        req = flow.request
        self.fw.audit.decision(
            client=peer(flow.client_conn),
            method="WEBSOCKET",
            host=self.fw.safe(req.host),
            port=req.port,
            path=self.fw.safe(req.path.split("?", 1)[0]),
            decision=decision,
            rule=f"dlp:{findings[0].rule}",
            reason=reason,
            bytes_out=0 if decision == "deny" else len(payload),
            bytes_in=0,
            status=None,
        )
        return decision != "deny"

    def _scan_head(self, flow: http.HTTPFlow) -> str | None:
        pol = self.fw.policy
        if pol is None:
            return None
        req = flow.request
        action = pol.dlp.action_for(req.host)
        meta(flow).dlp_action = action
        if action == "off":
            return action
        source = None if flow.client_conn.id in self.tunnelled else peer(flow.client_conn)
        exempt = pol.dlp.exempt_for(req.host, source)
        own = self._sidecars_own(flow)
        if own is not None:
            exempt = exempt | own
        seen = set(pol.dlp.rules_off_for(req.host))  # rules already "seen" are not reported
        findings = self.fw.scanner.scan_head(req.method, req.host, req.path, req.authority,
                                             req.headers.items(multi=True), exempt, seen)
        self._act(flow, findings, action)
        if own is not None:  # the sidecar scanned what it sends (the git gate: every line a push adds)
            meta(flow).dlp_action = "off"
            return "off"
        return action

    def _sidecars_own(self, flow: http.HTTPFlow) -> frozenset[str] | None:
        """A delegated sidecar's own request to a host allowed for it alone: the headers that
        carry its credential; None for every other request. The agent is on no such network,
        so this holds inside a tunnel too (the gate's HTTPS is a tunnel of its own)."""
        pol, client = self.fw.policy, peer(flow.client_conn)
        headers = pol.dlp.delegated_for(client)
        if headers is None or pol.allow_for_client(flow.request.host, flow.request.port, client) is None:
            return None
        return headers

    def _act(self, flow, findings, action: str) -> None:
        if not findings:
            return
        rule = f"dlp:{findings[0].rule}"
        reason = "; ".join(f.describe() for f in findings)
        if action == "block":
            self.fw.deny(
                flow,
                rule,
                f"{reason}. The request was not forwarded.",
                hint="If this is intended, the bottle's policy can set a DLP action per host (block|warn|off).",
            )
        elif action == "warn":
            self._warn(flow, rule, reason)

    def _warn(self, flow, rule: str, reason: str) -> None:
        m = meta(flow)
        if m.decision == "warn":
            m.reason = f"{m.reason}; {reason}"
        else:
            m.update(decision="warn", rule=rule, reason=reason)

    def _too_large(self, flow, size: int, limit: int) -> None:
        self.fw.deny(flow, "dlp:body-too-large", too_large_reason(size, limit))


def too_large_reason(size: int | None, limit: int) -> str:
    what = f"the request body ({size} bytes)" if size is not None else "the request body"
    return f"{what} is larger than dlp.max_body_bytes ({limit}), so it cannot be checked for secrets"
