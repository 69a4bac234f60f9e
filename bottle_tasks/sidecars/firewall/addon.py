"""The firewall as mitmproxy addons: one concern per class, one shared ``Firewall``.

``Firewall`` holds what the concerns share (current policy, scanner, resolver,
audit log) and lists the concern addons as its children, in the order their hooks
must run for each event:

    PolicyAddon   option ``bottle_policy``; SIGHUP reload keeping the old policy if the new one is bad
    HostGate      default deny: allowlist on CONNECT and on every request; Host/:authority must
                  name the tunnel's host; passthrough hosts are not intercepted
    DlpGuard      secrets in URL, headers and body; block | warn | off per host
    SsrfGuard     resolve, refuse internal addresses, dial exactly the checked address
    RawTunnels    non-HTTP traffic in a tunnel only for passthrough hosts
    Streaming     responses are streamed (never buffered), bytes counted for the audit
    Audit         one JSON line per decision

Every hook is wrapped in ``fail_closed``: an exception refuses the request.
Hooks skip flows an earlier concern has already refused.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import traceback
from collections import OrderedDict

from mitmproxy import ctx, exceptions, http, version
from mitmproxy.proxy import server_hooks

from . import policy as policy_mod
from . import ssrf
from .audit import AuditLog
from .dlp import BUILTIN_RULES, BodyError, Scanner, decode_body
from .failclosed import fail_closed
from .hosts import HostError, ip_literal, normalize_host, split_authority

logger = logging.getLogger("bottle.firewall")

META = "bottle.firewall"
FIREWALL_HEADER = "x-bottle-firewall"
REQUEST_PHASE_HOOKS = frozenset({"http_connect", "requestheaders", "request"})


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


def _peer(conn) -> str | None:
    peer = getattr(conn, "peername", None)
    return str(peer[0]) if peer else None


def _counter(m: dict, key: str):
    def count(chunk: bytes) -> bytes:
        m[key] += len(chunk)
        return chunk

    return count


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
        # server.id -> (host, port): the name a pinned server connection had before we put the IP in
        self.pins: dict[str, tuple[str, int]] = {}
        # (client id, host, port) -> (rule, reason) for connections refused at server_connect time,
        # picked up by the flow that asked for the connection when it fails.
        self.connect_refusals: OrderedDict[tuple, tuple[str, str]] = OrderedDict()
        if policy is not None:
            self.set_policy(policy)
        self.addons = [
            PolicyAddon(self),
            HostGate(self),
            # DLP before the SSRF guard: a secret in the host name must not leave as a DNS query
            DlpGuard(self),
            SsrfGuard(self),
            RawTunnels(self),
            Streaming(self),
            Audit(self),
        ]

    def set_policy(self, pol: policy_mod.Policy) -> None:
        self.policy = pol
        self.scanner = Scanner(pol.dlp.rules)

    # -- helpers shared by the concerns ------------------------------------------------

    def safe(self, text: str) -> str:
        """``text`` with secrets redacted: for everything we print or send back."""
        return self.scanner.redact(str(text))

    def deny(self, flow, rule: str, reason: str, *, status: int = 403, hint: str = "") -> None:
        """Refuse a request that has not been forwarded yet: a local error response."""
        m = meta(flow)
        m.update(decision="deny", rule=rule, reason=reason)
        req = flow.request
        # Answered locally: never stream the body upstream. DLP streams bodies to `off`
        # hosts, and mitmproxy refuses a local response on a streaming flow.
        req.stream = False
        head = f"bottle firewall: refused {req.method} {self.safe(req.host)}:{req.port} [{rule}]"
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

    def refuse_connection(self, data: server_hooks.ServerConnectionHookData, rule: str, reason: str) -> None:
        server = data.server
        server.error = f"bottle firewall [{rule}]: {reason}"
        host, port = server.address if server.address else ("", 0)
        key = (data.client.id, _norm(host), port)
        self.connect_refusals[key] = (rule, reason)
        while len(self.connect_refusals) > 1024:
            self.connect_refusals.popitem(last=False)

    def take_refusal(self, flow) -> tuple[str, str] | None:
        req = flow.request
        return self.connect_refusals.pop((flow.client_conn.id, _norm(req.host), req.port), None)

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
            elif hasattr(obj, "kill"):
                m = meta(obj)
                m.update(decision="deny", rule="error", reason=reason)
                if obj.killable:
                    obj.kill()
        except Exception:  # pragma: no cover - last resort, never let the failure path raise
            logger.exception("bottle firewall: fail-closed handler failed")

    def emit(self, flow) -> None:
        """Write the flow's audit line once."""
        m = meta(flow)
        if m["audited"] or flow.request is None:
            return
        m["audited"] = True
        req = flow.request
        resp = flow.response
        reason = m["reason"]
        if m["decision"] == "deny":
            bytes_out = bytes_in = 0
        else:
            bytes_out = m["bytes_out"] or len(req.raw_content or b"")
            bytes_in = m["bytes_in"] or (len(resp.raw_content or b"") if resp is not None else 0)
            if flow.error is not None:
                reason = "; ".join(x for x in (reason, f"upstream error: {self.safe(flow.error.msg)}") if x)
        self.audit.decision(
            client=_peer(flow.client_conn),
            method=req.method,
            host=self.safe(req.host),
            port=req.port,
            path=self.safe(req.path.split("?", 1)[0]),
            decision=m["decision"],
            rule=m["rule"],
            reason=reason,
            bytes_out=bytes_out,
            bytes_in=bytes_in,
            status=resp.status_code if resp is not None else None,
        )


def _norm(host: str) -> str:
    try:
        return normalize_host(host)
    except HostError:
        return str(host).lower()


class _Concern:
    def __init__(self, fw: Firewall):
        self.fw = fw


class PolicyAddon(_Concern):
    """Loads the policy named by the ``bottle_policy`` option; reloads it on SIGHUP."""

    _loop: asyncio.AbstractEventLoop | None = None

    def load(self, loader):
        loader.add_option(
            "bottle_policy",
            str,
            "",
            "Path of the bottle firewall policy (JSON). Without a policy every request is refused.",
        )

    def configure(self, updated):
        if "bottle_policy" in updated and ctx.options.bottle_policy:
            path = ctx.options.bottle_policy
            try:
                self.fw.set_policy(policy_mod.load(path))
            except policy_mod.PolicyError as e:
                raise exceptions.OptionsError(f"invalid firewall policy {path}: {e}") from None

    def running(self):
        try:
            self._loop = asyncio.get_running_loop()
            self._loop.add_signal_handler(signal.SIGHUP, self.reload)
        except (NotImplementedError, RuntimeError, ValueError) as e:  # not the main thread, or no signals
            self._loop = None
            logger.warning("bottle firewall: cannot install the SIGHUP reload handler: %s", e)
        self._apply_timeouts()
        pol = self.fw.policy
        listen = []
        if (ps := ctx.master.addons.get("proxyserver")) is not None:
            try:
                listen = [f"{a[0]}:{a[1]}" for a in ps.listen_addrs()]
            except Exception:  # pragma: no cover
                listen = []
        self.fw.audit.event(
            "ready",
            bottle=pol.bottle if pol else None,
            listen=listen,
            mitmproxy=version.VERSION,
            allow=len(pol.allow) if pol else 0,
            policy=ctx.options.bottle_policy or None,
        )

    def done(self):
        if self._loop is not None:
            try:
                self._loop.remove_signal_handler(signal.SIGHUP)
            except Exception:  # pragma: no cover
                pass
            self._loop = None

    def _apply_timeouts(self) -> None:
        pol = self.fw.policy
        if pol is not None and ctx.options.tcp_timeout != pol.idle_timeout:
            ctx.options.update(tcp_timeout=pol.idle_timeout)

    def reload(self) -> bool:
        """Re-read the policy file. On any problem keep the current policy and say why."""
        path = ctx.options.bottle_policy
        try:
            if not path:
                raise policy_mod.PolicyError(["no policy file configured (option bottle_policy)"])
            new = policy_mod.load(path)
        except policy_mod.PolicyError as e:
            self.fw.audit.event("policy-reload", ok=False, policy=path, reason=f"{e}; kept the previous policy")
            return False
        except Exception as e:  # noqa: BLE001 - keep the old policy whatever went wrong
            self.fw.audit.event(
                "policy-reload", ok=False, policy=path, reason=f"{type(e).__name__}; kept the previous policy"
            )
            return False
        self.fw.set_policy(new)
        try:
            self._apply_timeouts()
        except Exception as e:  # noqa: BLE001
            logger.warning("bottle firewall: could not apply idle_timeout: %s", e)
        self.fw.audit.event(
            "policy-reload",
            ok=True,
            policy=path,
            bottle=new.bottle,
            allow=len(new.allow),
            passthrough=len(new.passthrough),
        )
        return True


class HostGate(_Concern):
    """Default deny. The host is checked at CONNECT and again on every request in a tunnel."""

    @fail_closed
    def http_connect(self, flow: http.HTTPFlow):
        self._check_host(flow)
        if not refused(flow):
            pol = self.fw.policy
            if pol is not None and pol.passthrough.match(flow.request.host) is not None:
                m = meta(flow)
                m["rule"] = "passthrough"
                m["reason"] += " (passthrough: TLS not intercepted)"

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow):
        if refused(flow):
            return
        self._check_host(flow)
        if not refused(flow):
            self._check_authority(flow)

    @fail_closed
    def tls_clienthello(self, data):
        data.ignore_connection = False
        pol = self.fw.policy
        address = data.context.server.address
        if pol is None or not address:
            return
        host = _norm(address[0])
        if pol.passthrough.match(host) is None or pol.allow.match(host) is None:
            return
        sni = data.client_hello.sni
        if sni and _norm(sni) != host:
            # Someone tunnels to a passthrough host but names another: intercept instead, so the
            # request-level Host checks see what is really asked for.
            logger.warning("bottle firewall: SNI does not match the passthrough tunnel host; intercepting")
            return
        data.ignore_connection = True

    def _check_host(self, flow: http.HTTPFlow) -> None:
        fw = self.fw
        pol = fw.policy
        if pol is None:
            fw.deny(flow, "no-policy", "the firewall has no policy loaded, so it refuses everything")
            return
        raw = flow.request.host
        try:
            host = normalize_host(raw)
        except HostError as e:
            fw.deny(flow, "bad-host", f"the request host is not a valid host name ({fw.safe(e)})")
            return
        ip = ip_literal(host)
        if ip is not None and not ssrf.in_cidrs(ip, pol.allowed_cidrs):
            why = ssrf.classify(ip)
            if why is not None:
                fw.deny(flow, "ssrf", f"{host} is {why}; the firewall does not connect to internal addresses")
                return
        pattern = pol.allow.match(host)
        if pattern is None:
            shown = fw.safe(host)
            fw.deny(
                flow,
                "not-allowlisted",
                f"{shown} is not on the allowlist of bottle {pol.bottle!r}.",
                hint=f"To allow it, run on the host: inv allow {shown}",
            )
            return
        m = meta(flow)
        m.update(rule="allowlist", reason=f"matches {pattern.text}")

    def _check_authority(self, flow: http.HTTPFlow) -> None:
        """Host header and :authority / absolute-form target must name the host we connect to."""
        req = flow.request
        host = _norm(req.host)
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


class SsrfGuard(_Concern):
    """Resolves the host itself, refuses internal addresses, pins the checked address."""

    @fail_closed
    async def http_connect(self, flow: http.HTTPFlow):
        if not refused(flow):
            await self._precheck(flow)

    @fail_closed
    async def requestheaders(self, flow: http.HTTPFlow):
        if not refused(flow):
            await self._precheck(flow)

    async def _precheck(self, flow: http.HTTPFlow) -> None:
        """Early check so the client gets a clear 403; server_connect re-checks and pins."""
        fw = self.fw
        pol = fw.policy
        host, port = flow.request.host, flow.request.port
        try:
            addrs = await fw.resolver.resolve(host, port)
        except ssrf.ResolveError as e:
            fw.deny(flow, "dns", fw.safe(e), status=502)
            return
        verdict = ssrf.check(addrs, pol.allowed_cidrs)
        if not verdict.ok:
            fw.deny(
                flow,
                "ssrf",
                f"{fw.safe(_norm(host))} resolves to {verdict.reason}; "
                "the firewall does not connect to internal addresses",
            )

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
        if pol.allow.match(host) is None:  # defence in depth: never dial (or even resolve) an unlisted name
            fw.refuse_connection(data, "not-allowlisted", f"{fw.safe(_norm(host))} is not on the allowlist")
            return
        try:
            addrs = await fw.resolver.resolve(host, port)
        except ssrf.ResolveError as e:
            fw.refuse_connection(data, "dns", fw.safe(e))
            return
        verdict = ssrf.check(addrs, pol.allowed_cidrs)
        if not verdict.ok:
            fw.refuse_connection(
                data,
                "ssrf",
                f"{fw.safe(_norm(host))} resolves to {verdict.reason}; "
                "the firewall does not connect to internal addresses",
            )
            return
        if server.sni is None and ip_literal(host) is None:
            server.sni = _norm(host)  # TLS keeps the name (SNI + certificate check)
        # Dial exactly the checked address; the name is put back once connected.
        fw.pins[server.id] = (host, port)
        server.address = (str(verdict.address), port)

    @fail_closed
    def server_connected(self, data: server_hooks.ServerConnectionHookData):
        self._unpin(data.server)

    @fail_closed
    def server_connect_error(self, data: server_hooks.ServerConnectionHookData):
        self._unpin(data.server)

    def _unpin(self, server) -> None:
        pin = self.fw.pins.pop(server.id, None)
        if pin is not None:
            # mitmproxy refuses `server.address = ...` on an open connection (it would mean
            # retargeting it). This only puts back the name of the very address we dialled,
            # which the HTTP layer reads as the tunnel's host for the next requests.
            vars(server)["address"] = pin


class DlpGuard(_Concern):
    """Looks for secrets in what leaves: URL, headers, body. block | warn | off per host."""

    @fail_closed
    def http_connect(self, flow: http.HTTPFlow):
        if refused(flow):
            return
        self._scan_head(flow)

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow):
        if refused(flow):
            return
        action = self._scan_head(flow)
        if refused(flow) or action is None:
            return
        m = meta(flow)
        if action == "off":
            flow.request.stream = _counter(m, "bytes_out")  # nothing to scan: do not buffer
            return
        limit = self.fw.policy.dlp.max_body_bytes
        length = flow.request.headers.get("content-length", "")
        if length.strip().isdigit() and int(length) > limit:
            self._too_large(flow, int(length), limit)

    @fail_closed
    def request(self, flow: http.HTTPFlow):
        if refused(flow):
            return
        m = meta(flow)
        action = m["dlp_action"]
        if action in (None, "off"):
            return
        pol = self.fw.policy
        raw = flow.request.raw_content or b""
        m["bytes_out"] = len(raw)
        limit = pol.dlp.max_body_bytes
        if len(raw) > limit:
            self._too_large(flow, len(raw), limit)
            return
        try:
            body = decode_body(raw, flow.request.headers.get("content-encoding", ""), limit)
        except BodyError as e:
            if e.rule == "body-too-large" or action == "block":
                self.fw.deny(flow, f"dlp:{e.rule}", f"{e}; the body could not be checked for secrets")
            else:
                self._warn(flow, f"dlp:{e.rule}", str(e))
            return
        findings = self.fw.scanner.scan_body(body, flow.request.headers.get("content-type", ""))
        self._act(flow, findings, action)

    @fail_closed
    def websocket_message(self, flow: http.HTTPFlow):
        pol = self.fw.policy
        if flow.websocket is None or not flow.websocket.messages:
            return
        msg = flow.websocket.messages[-1]
        if not msg.from_client:
            return
        action = pol.dlp.action_for(flow.request.host) if pol else "block"
        if action == "off":
            return
        content = msg.content if isinstance(msg.content, bytes) else str(msg.content).encode()
        findings = self.fw.scanner.scan_body(content)
        if not findings:
            return
        reason = "; ".join(f.describe().replace("request body", "WebSocket message") for f in findings)
        decision = "deny" if action == "block" else "warn"
        if decision == "deny":
            msg.drop()
            reason += "; the message was dropped"
        req = flow.request
        self.fw.audit.decision(
            client=_peer(flow.client_conn),
            method="WEBSOCKET",
            host=self.fw.safe(req.host),
            port=req.port,
            path=self.fw.safe(req.path.split("?", 1)[0]),
            decision=decision,
            rule=f"dlp:{findings[0].rule}",
            reason=reason,
            bytes_out=0 if decision == "deny" else len(content),
            bytes_in=0,
            status=None,
        )

    def _scan_head(self, flow: http.HTTPFlow) -> str | None:
        pol = self.fw.policy
        if pol is None:
            return None
        req = flow.request
        action = pol.dlp.action_for(req.host)
        meta(flow)["dlp_action"] = action
        if action == "off":
            return action
        exempt = pol.dlp.exempt_for(req.host)
        seen: set[str] = set()
        scanner = self.fw.scanner
        findings = scanner.scan_url(req.host, req.path, seen)
        if req.authority:
            findings += scanner.scan_url(req.authority, "", seen)
        headers = [(k, v) for k, v in req.headers.items(multi=True)]
        findings += scanner.scan_headers(headers, exempt, seen)
        self._act(flow, findings, action)
        return action

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
        if m["decision"] == "warn":
            m["reason"] = f"{m['reason']}; {reason}"
        else:
            m.update(decision="warn", rule=rule, reason=reason)

    def _too_large(self, flow, size: int, limit: int) -> None:
        self.fw.deny(
            flow,
            "dlp:body-too-large",
            f"the request body ({size} bytes) is larger than dlp.max_body_bytes ({limit}), "
            "so it cannot be checked for secrets",
        )


class RawTunnels(_Concern):
    """Traffic in a CONNECT tunnel that is not HTTP (raw TCP, DNS) is uninspectable:
    only passthrough hosts may carry it."""

    @fail_closed
    def tcp_start(self, flow):
        self._gate(flow, "TCP")

    @fail_closed
    def dns_request(self, flow):
        self._gate(flow, "DNS")

    def _gate(self, flow, kind: str) -> None:
        fw = self.fw
        pol = fw.policy
        address = flow.server_conn.address or ("", 0)
        host, port = _norm(address[0]), address[1]
        m = meta(flow)
        if pol is not None and pol.passthrough.match(host) is not None and pol.allow.match(host) is not None:
            m.update(rule="passthrough", reason=f"raw {kind} to a passthrough host")
            decision = "allow"
        else:
            fw.kill(flow, f"raw-{kind.lower()}", f"raw {kind} traffic is only allowed to passthrough hosts")
            decision = "deny"
        fw.audit.decision(
            client=_peer(flow.client_conn),
            method=kind,
            host=fw.safe(host),
            port=port,
            path="",
            decision=decision,
            rule=m["rule"],
            reason=m["reason"],
            status=None,
        )


class Streaming(_Concern):
    """Never buffer responses: server-sent events and long downloads go straight through."""

    @fail_closed
    def responseheaders(self, flow: http.HTTPFlow):
        if refused(flow) or flow.response is None:
            return
        flow.response.stream = _counter(meta(flow), "bytes_in")


class Audit(_Concern):
    """Writes the decision line when a flow is finished."""

    @fail_closed
    def http_connected(self, flow: http.HTTPFlow):
        self.fw.emit(flow)

    @fail_closed
    def http_connect_error(self, flow: http.HTTPFlow):
        refusal = self.fw.take_refusal(flow)
        if refusal is not None and not refused(flow):
            rule, reason = refusal
            self.fw.deny(flow, rule, reason)  # replaces mitmproxy's 502 with our 403
        self.fw.emit(flow)

    @fail_closed
    def response(self, flow: http.HTTPFlow):
        self.fw.emit(flow)

    @fail_closed
    def error(self, flow: http.HTTPFlow):
        refusal = self.fw.take_refusal(flow)
        if refusal is not None and not refused(flow):
            m = meta(flow)
            m.update(decision="deny", rule=refusal[0], reason=refusal[1])
        self.fw.emit(flow)
