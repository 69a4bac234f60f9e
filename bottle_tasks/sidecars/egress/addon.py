"""The egress proxy as a mitmproxy addon: routes, credential injection, and the hand-over
to the firewall.

The agent's only proxy. It terminates the agent's TLS with the bottle's egress CA and
then, for every request:

1. refuses a Host header or ``:authority`` that names another host than the tunnel's;
2. on a host that has routes: normalises the path (``routes.normalize_path``), finds the
   route for port, method and path (and for any method the request asks the upstream to
   take instead, ``overrides.py``: ``X-HTTP-Method-Override`` and kin, a ``_method`` query
   parameter, or a ``_method`` field of a form or JSON body, which is then read whole before
   anything is sent, bounded as the firewall bounds it; a header naming another path,
   ``X-Original-URL`` and kin, refuses), drops
   whatever the agent sent in every header any route of the host injects (any letter case,
   every copy: the firewall exempts those names from DLP on that host) and sets the
   matched route's; no route: 403 naming the host, method and path and how to add a route;
   a route that injects, asked over plain HTTP: 403 (the credential would leave
   unencrypted). Hosts without routes pass unchanged;
3. hands the request to the firewall as a plain-HTTP proxy request in absolute form
   (``GET https://host/path``) over the link network, so only the firewall opens TLS to
   the upstream: the allowlist, SSRF guard, DLP and audit log decide as for any request;
4. on a routed host, what comes back has every secret it injects masked (``scrub.py``): an
   upstream that echoes the request's headers must not hand the agent the credential. So
   the request asks for no content coding and no byte range (a compressed body cannot be
   scrubbed, nor a secret fetched a few bytes at a time), and an answer in a content
   coding anyway is refused (502).

A CONNECT to a host without routes that the firewall's policy allows is not opened here
at all: it is relayed to the firewall as a CONNECT of its own (``relay.py``).

It never connects anywhere but the firewall, streams bodies both ways (but those held to be
read for ``_method``), and a tunnel it
opened carries only what it parsed (the firewall's ``tunnels`` rules). It serves at most
``capacity.MAX_CLIENT_CONNECTIONS`` connections of the agent's at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import traceback

import wsproto.events
from firewall import capacity, mitm_limits
from firewall import policy as firewall_policy
from firewall.dlp_guard import too_large_reason
from firewall.failclosed import fail_closed
from firewall.flowstate import close_connection
from firewall.healthcheck import HEALTH_HOST, HEALTH_PATH
from firewall.hosts import HostError, normalize_host, split_authority
from firewall.jsonlines import JsonLines
from firewall.tunnels import RefuseLayer, becomes_websocket, judge
from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import layer, server_hooks

from . import overrides, relay, scrub
from . import routes as routes_mod

logger = logging.getLogger("bottle.egress")
EGRESS_HEADER = "x-bottle-egress"
REQUEST_PHASE_HOOKS = frozenset({"requestheaders", "request"})
ROUTED = "route"  # flow.metadata["bottle.egress"] of a request to a routed host
SCRUBBER = "bottle.scrubber"  # flow.metadata: the scrubber of the secrets a routed request was given


def scrubber_of(flow: http.HTTPFlow) -> scrub.Scrubber:
    """The scrubber for what a routed flow returns: the one in force when it was injected."""
    return flow.metadata[SCRUBBER]
CODING_DENIED = "deny-coding"  # ... of one whose answer came in a content coding (replaced)
# flow.metadata of a routed request held whole until its body's `_method` fields are read:
# (host, normalised path, the methods its head claims)
BODY_TO_READ = "bottle.egress.body-to-read"
# Request headers that would have a routed upstream answer in a form the scrub cannot read
# whole: compressed (`te` asks for a compressed transfer coding, as `accept-encoding` for a
# content coding), or a few bytes of a reflected secret at a time.
UNSCRUBBABLE_ASKS = ("range", "if-range", "te")
CODING_REFUSED = (b"bottle egress: refused [content-coding]\nthe upstream of a routed host answered in a "
                  b"content or transfer coding although asked for none; the egress proxy cannot check it "
                  b"for the credential it injected, so it is not passed on.\n")


# stdout: one JSON object per line, route decisions and lifecycle events, never a secret;
# `main` batches it for 2 ms at most, as the firewall's audit log (`jsonlines`)
LINES = JsonLines()


def log_line(**fields) -> None:
    LINES.write(fields)


def _refused_connections(client: str, count: int, reason: str) -> None:
    log_line(decision="deny", rule="connection-limit", client=client,
             reason=f"{reason}; {count} refused since the last such line")


class Egress:
    """Routes, injection and the hand-over to the firewall (one addon; its hooks fail closed)."""

    def __init__(self):
        self.fw = self  # failclosed calls self.fw.fail(...)
        mitm_limits.install(self)  # the HTTP/1 bounds, HTTP/2 back-pressure, HTTP/2 bodies framed
        # the agent's connections at once; its WebSocket messages draw on the pool while they
        # are assembled, and so do the bodies held to be read (the others are streamed)
        self.addons = [capacity.ConnectionCap(_refused_connections), capacity.PoolRelease()]
        self.routes: dict[str, tuple[routes_mod.Route, ...]] = {}
        self.injected: dict[str, frozenset[str]] = {}  # per routed host: every header its routes set
        self.secrets: dict[str, str] = {}
        self.scrubber = scrub.Scrubber(())
        self.policy: firewall_policy.Policy | None = None  # the firewall's: which tunnels to relay
        self.relayed = relay.Relayed()
        self.firewall: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- configuration -------------------------------------------------------------------------

    def load(self, loader):
        loader.add_option("bottle_routes", str, "", "Path of routes.json.")
        loader.add_option("bottle_secrets", str, "", "Path of secrets.json (the values routes inject).")
        loader.add_option("bottle_firewall", str, "firewall:3128", "host:port of the bottle's firewall.")
        loader.add_option("bottle_policy", str, "", "Path of the firewall's policy.json (tunnels it would accept "
                          "are relayed unopened); without it every tunnel is opened here.")

    def configure(self, updated):
        if "bottle_firewall" in updated:
            host, port = split_authority(ctx.options.bottle_firewall)
            self.firewall = (host, port or 3128)
        if {"bottle_routes", "bottle_secrets", "bottle_policy"} & set(updated):
            try:
                self._load()
            except (routes_mod.RouteError, firewall_policy.PolicyError) as e:
                raise exceptions.OptionsError(f"invalid egress configuration: {e}") from None

    def _load(self) -> int:
        _, routes = routes_mod.load(ctx.options.bottle_routes)
        secrets = routes_mod.load_secrets(ctx.options.bottle_secrets, routes) if ctx.options.bottle_secrets else {}
        if not ctx.options.bottle_secrets and any(r.inject for r in routes):
            raise routes_mod.RouteError(["routes inject secrets but no secrets file is configured"])
        by_host: dict[str, list[routes_mod.Route]] = {}
        for route in routes:
            by_host.setdefault(route.host, []).append(route)
        pol = firewall_policy.load(ctx.options.bottle_policy) if ctx.options.bottle_policy else None
        self.routes = {host: tuple(rs) for host, rs in by_host.items()}
        self.injected = {host: frozenset(i.header for r in rs for i in r.inject) for host, rs in by_host.items()}
        self.secrets = secrets
        self.scrubber = _scrubber(routes, secrets)
        self.policy = pol
        for client_id in self.relayed.now_routed(self.routes):
            close_connection(client_id)  # its next connection is intercepted, with the injection
        return len(routes)

    def running(self):
        try:
            self._loop = asyncio.get_running_loop()
            self._loop.add_signal_handler(signal.SIGHUP, self.reload)
        except (NotImplementedError, RuntimeError, ValueError) as e:
            logger.warning("bottle egress: cannot install the SIGHUP reload handler: %s", e)
        log_line(event="ready", routes=sum(len(r) for r in self.routes.values()))

    def reload(self) -> bool:
        """Re-read routes and secrets; on any problem keep the current ones and say why."""
        old = (self.routes, self.secrets, self.scrubber, self.policy)
        try:
            count = self._load()
        except (routes_mod.RouteError, firewall_policy.PolicyError) as e:
            self.routes, self.secrets, self.scrubber, self.policy = old
            log_line(event="routes-reload", ok=False, reason=f"{e}; kept the previous routes")
            return False
        except Exception as e:  # noqa: BLE001 - keep the old routes whatever went wrong
            self.routes, self.secrets, self.scrubber, self.policy = old
            log_line(event="routes-reload", ok=False, reason=f"{type(e).__name__}; kept the previous routes")
            return False
        log_line(event="routes-reload", ok=True, routes=count)
        return True

    # -- refusing ---------------------------------------------------------------------------------

    def deny(self, flow: http.HTTPFlow, status: int, rule: str, reason: str, hint: str = "") -> None:
        req = flow.request
        flow.metadata["bottle.egress"] = "deny"
        body = "\n".join(x for x in (f"bottle egress: refused [{rule}]", reason, hint) if x) + "\n"
        req.stream = False
        flow.response = http.Response.make(
            status, body.encode(), {"content-type": "text/plain; charset=utf-8", EGRESS_HEADER: f"deny; rule={rule}"}
        )
        log_line(decision="deny", rule=rule, method=_printable(req.method), host=_printable(req.host),
                 path=_printable(req.path.split("?", 1)[0]))

    def fail(self, hook: str, obj, exc: BaseException) -> None:
        logger.error("bottle egress: hook %s failed, refusing (fail closed):\n%s", hook,
                     "".join(traceback.format_exception_only(type(exc), exc)))
        try:
            if isinstance(obj, http.HTTPFlow):
                if hook in REQUEST_PHASE_HOOKS and obj.response is None:
                    self.deny(obj, 502, "error", f"internal egress error in {hook}; refused (fail closed)")
                elif obj.killable:
                    obj.kill()
            elif isinstance(obj, server_hooks.ServerConnectionHookData):
                obj.server.error = "bottle egress: internal error (fail closed)"
            elif hook == "next_layer":
                obj.layer = RefuseLayer(obj.context)
        except Exception:  # pragma: no cover
            logger.exception("bottle egress: fail-closed handler failed")

    # -- what mitm_limits calls back into --------------------------------------------------------

    def refused_in_transit(self, flow: http.HTTPFlow, rule: str, reason: str) -> None:
        """``mitm_limits`` cut a flow while its data arrived (a body or message too large)."""
        req = flow.request
        log_line(decision="deny", rule=rule, method=_printable(req.method), host=_printable(req.pretty_host),
                 path=_printable(req.path.split("?", 1)[0]), reason=reason)

    def websocket_control(self, flow: http.HTTPFlow, event):
        return event  # the firewall scans the agent's control frames

    def websocket_control_to_agent(self, flow: http.HTTPFlow, event):
        """A routed upstream's ping, pong or close: scrubbed as its messages are (a close reason
        or a pong may echo the credential as well as a message can)."""
        if flow.metadata.get("bottle.egress") != ROUTED:
            return event
        if isinstance(event, wsproto.events.CloseConnection):
            if not event.reason:
                return event
            reason = scrubber_of(flow).scrub(event.reason.encode("utf-8", "replace")).decode("utf-8", "replace")
            return wsproto.events.CloseConnection(code=event.code, reason=reason)
        return type(event)(payload=scrubber_of(flow).scrub(bytes(event.payload)))

    # -- the request path -------------------------------------------------------------------------

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow):
        req = flow.request
        if req.host == HEALTH_HOST and req.path == HEALTH_PATH:
            flow.metadata["bottle.egress"] = "health"
            flow.response = http.Response.make(200, b"ok\n", {"content-type": "text/plain"})
            return
        try:
            host = normalize_host(req.host)
        except HostError:
            return self.deny(flow, 400, "bad-host", "the request host is not a valid host name")
        if not self._authority_matches(req, host):
            return self.deny(flow, 403, "host-mismatch",
                             "the Host header or :authority names another host than this connection's")
        routes = self.routes.get(host)
        if routes is not None:
            try:
                path = routes_mod.normalize_path(req.path)
            except routes_mod.PathError as e:
                return self.deny(flow, 400, "path", f"{e}; routed hosts get unambiguous paths only")
            fields = list(req.headers.items(multi=True))
            named = overrides.in_path_headers(fields)
            if named:
                return self.deny(flow, 403, "path-override", f"the request names another path in {_printable(named[0])}; "
                                 "a routed host is asked for the request line's path alone.",
                                 "Send the request to that path itself.")
            claimed = overrides.in_head(req.method, fields, path)
            route = self._route_for(flow, host, path, claimed)
            if route is None:
                return
            if route.methods and overrides.body_may_claim(req.http_version, fields):
                return self._read_body_first(flow, host, path, claimed, route)
            if not self._apply(flow, host, path, route):
                return
        self._hand_to_firewall(flow, host)

    @fail_closed
    def request(self, flow: http.HTTPFlow):
        """A routed request held whole: the route must cover what its body claims too."""
        held = flow.metadata.pop(BODY_TO_READ, None)
        if held is None or flow.response is not None:
            return
        host, path, claimed = held
        try:
            claimed += overrides.in_body(list(flow.request.headers.items(multi=True)), flow.request.raw_content or b"")
        except overrides.Unreadable as e:
            return self.deny(flow, 403, "no-route", f"{e}: it could ask the upstream for a method no route "
                             f"of this bottle covers on {host}.",
                             "Send the body without it, or let the route allow every method "
                             "(inv route add without --method).")
        route = self._route_for(flow, host, path, claimed, where="in the body's _method")
        if route is not None and self._apply(flow, host, path, route):
            self._hand_to_firewall(flow, host, stream=False)

    def _route_for(self, flow: http.HTTPFlow, host: str, path: str, claimed: list[str],
                   where: str = "as a method override") -> routes_mod.Route | None:
        """The first route that serves the request's port and covers its path and every
        method it claims; None, with the request refused, when none does."""
        req = flow.request
        shown = path.split("?", 1)[0]
        # A route serves its own port only: a credential meant for the API on 443 never goes
        # to whatever else the same host runs on a port the firewall also allows.
        on_port = [r for r in self.routes.get(host, ()) if r.serves(req.port)]
        route = next((r for r in on_port if all(r.matches(m, shown) for m in claimed)), None)
        if route is None:
            method = next((m for m in claimed if not any(r.matches(m, shown) for r in on_port)), req.method)
            said = "" if method == req.method else f" (asked for {where} of {req.method})"
            at = host if req.port in routes_mod.WEB_PORTS else f"{host}:{req.port}"
            self.deny(flow, 403, "no-route", f"no route of this bottle covers {_printable(method)} {at}{shown}{said}.",
                      f"To add one, run on the host: inv route add {at} --path {shown} --method {_printable(method)}")
        return route

    def _read_body_first(self, flow: http.HTTPFlow, host: str, path: str, claimed: list[str],
                         route: routes_mod.Route) -> None:
        """Hold the body whole (nothing is sent before `request`), bounded as the firewall
        bounds what it holds: a route limited to some methods must see the body's claims."""
        limit, reason = self._body_bound(host, route)
        if mitm_limits.declared_size(flow.request) > limit:
            return self.deny(flow, 413, "body-too-large", reason)
        mitm_limits.limit_request_body(flow, limit, ("body-too-large", reason))
        flow.metadata[BODY_TO_READ] = (host, path, claimed)

    def _body_bound(self, host: str, route: routes_mod.Route) -> tuple[int, str]:
        """The most of a body held here, and why a larger one is refused: the firewall's own
        bound where it scans the host's bodies (it would refuse a larger one too)."""
        if self.policy is not None and self.policy.dlp.action_for(host) != "off":
            limit = self.policy.dlp.max_body_bytes
            return limit, too_large_reason(None, limit)
        limit = capacity.MAX_HELD_ITEM
        return limit, (f"the request body is larger than {limit} bytes, the most the egress proxy reads to find "
                       f"a {overrides.FIELD} field in it on a route limited to {', '.join(route.methods)}")

    def _apply(self, flow: http.HTTPFlow, host: str, path: str, route: routes_mod.Route) -> bool:
        """Inject the route's headers into the request; False when the route refuses it."""
        req = flow.request
        if route.inject and req.scheme != "https":
            # The firewall would send it on as it came: the credential in cleartext.
            self.deny(flow, 403, "cleartext", f"this route injects credentials, and {req.scheme}://{host} "
                      "would carry them unencrypted.", f"Use https://{host}")
            return False
        req.path = path
        self._inject(req, host, route)
        _ask_for_scrubbable(req)
        flow.metadata["bottle.egress"] = ROUTED
        # What this flow returns is scrubbed for the secrets in force when they were injected,
        # for as long as it lasts: a reload (`route rm`, a new secret) drops the old secret from
        # the proxy's scrubber, and a WebSocket opened before could still echo it.
        flow.metadata[SCRUBBER] = self.scrubber
        log_line(decision="route", host=host, method=req.method, path=path.split("?", 1)[0],
                 injected=[i.header for i in route.inject])
        return True

    def _authority_matches(self, req: http.Request, host: str) -> bool:
        claims = [req.authority] if req.authority else []
        claims += req.headers.get_all("host")
        for value in claims:
            try:
                h, p = split_authority(value)
                if normalize_host(h) != host or (p is not None and p != req.port):
                    return False
            except HostError:
                return False
        return True

    def _inject(self, req: http.Request, host: str, route: routes_mod.Route) -> None:
        # Every header any route of the host injects goes, whichever route matched: the firewall
        # exempts those names from DLP on this host, so a route that injects nothing must not
        # carry the agent's own value under one of them.
        for name in self.injected[host]:
            _drop(req.headers, name)
        for injection in route.inject:
            req.headers[injection.header] = injection.value(self.secrets[injection.secret])

    def _hand_to_firewall(self, flow: http.HTTPFlow, host: str, stream: bool = True) -> None:
        """Send the request to the firewall as `METHOD scheme://host[:port]/path` over plain HTTP."""
        req = flow.request
        default = 443 if req.scheme == "https" else 80
        authority = host if req.port == default else f"{host}:{req.port}"
        if ":" in host and req.port != default:
            authority = f"[{host}]:{req.port}"
        # The Host header as the request goes: the agent's own spelling (`API.X.COM.`, `api.x.com:443`,
        # a soft hyphen inside) matched the route once normalised, but an upstream's front end may pick
        # another virtual host, and backend, for it, with the injected credential. HTTP/2 from the
        # agent has none: the firewall gets HTTP/1 with this one.
        _drop(req.headers, "host")
        req.headers.insert(0, "host", authority)
        req.path = f"{req.scheme}://{authority}{req.path}"
        # data.*: the host/port/scheme setters would rewrite the Host header too
        req.data.scheme = b"http"
        assert self.firewall is not None  # set by configure() before the proxy serves
        req.data.host, req.data.port = self.firewall
        req.authority = ""
        req.stream = stream  # bodies (multi-MiB model requests) are streamed unless held to be read

    @fail_closed
    def responseheaders(self, flow: http.HTTPFlow):
        resp, handled = flow.response, flow.metadata.get("bottle.egress")
        if resp is None or handled not in (None, ROUTED):
            return  # answered here
        if handled is None:
            resp.stream = True  # server-sent events go through as produced
            return
        if resp.status_code == 101 and not becomes_websocket(flow):
            # Past a switch to anything but a WebSocket, mitmproxy relays raw bytes both ways,
            # unscrubbed (the firewall lets that happen only for a passthrough host).
            upgrade = _printable(resp.headers.get("upgrade", ""))
            log_line(decision="deny", rule="raw-upgrade", method=_printable(flow.request.method),
                     host=_printable(flow.request.pretty_host), reason=f"the upstream switched protocols to "
                     f"{upgrade!r}, not to a WebSocket: what it sends after would not be scrubbed")
            flow.kill()
            return
        if _content_coded(resp) and _may_have_body(flow):
            flow.metadata["bottle.egress"] = CODING_DENIED
            log_line(decision="deny", rule="content-coding", method=_printable(flow.request.method),
                     host=_printable(flow.request.pretty_host), status=resp.status_code)
            flow.response = _coding_refusal()
            return
        scrubber = scrubber_of(flow)
        resp.headers.fields = scrubber.fields(resp.headers.fields)
        resp.data.reason = scrubber.scrub(resp.data.reason)
        resp.stream = scrubber.stream()  # streamed still, a secret's length less one held back

    @fail_closed
    def response(self, flow: http.HTTPFlow):
        resp = flow.response
        if resp is None:
            return
        if flow.metadata.get("bottle.egress") == ROUTED and resp.trailers:
            resp.trailers.fields = scrubber_of(flow).fields(resp.trailers.fields)
        if flow.metadata.get("bottle.egress") == CODING_DENIED:
            resp.content = CODING_REFUSED  # the upstream's bodyless answer: nothing was streamed

    @fail_closed
    def websocket_message(self, flow: http.HTTPFlow):
        if flow.websocket is None or not flow.websocket.messages:
            return
        message = flow.websocket.messages[-1]
        if not message.from_client and flow.metadata.get("bottle.egress") == ROUTED:
            message.content = scrubber_of(flow).scrub(message.content)
        # mitmproxy relays the message from its own reference; kept in the flow, every message
        # of a long-lived WebSocket would stay in memory until it closes.
        flow.websocket.messages.clear()

    @fail_closed
    def server_connect(self, data: server_hooks.ServerConnectionHookData):
        """The only server the egress proxy ever talks to is the firewall."""
        address = data.server.address
        if address is None or (address[0], address[1]) != self.firewall:
            data.server.error = f"bottle egress: only the firewall is reachable, not {address}"

    @fail_closed
    def next_layer(self, nextlayer: layer.NextLayer):
        """Relay a tunnel the firewall would accept to it unopened; otherwise the firewall's
        rule: only parsed traffic (nothing leaves here but to the firewall)."""
        if relay.is_connect_tunnel(nextlayer) and self._relay(nextlayer):
            return
        refusal = judge(nextlayer, passthrough=False)
        if refusal is not None:
            nextlayer.layer = RefuseLayer(nextlayer.context)
            log_line(decision="deny", rule=refusal[0], method="TCP",
                     host=_printable(str(nextlayer.context.server.address)))


    def _relay(self, nextlayer: layer.NextLayer) -> bool:
        address = nextlayer.context.server.address
        try:
            host = normalize_host(address[0])
        except HostError:
            return False  # opened here, and refused as a bad host
        if host in self.routes or not relay.relayable(self.policy, host, address[1]):
            return False
        assert self.firewall is not None  # set by configure() before the proxy serves
        nextlayer.layer = relay.relay_layer(nextlayer.context, self.firewall)
        self.relayed.add(nextlayer.context.client.id, host)
        return True

    def client_disconnected(self, client):
        self.relayed.forget(client.id)


def _scrubber(routes: tuple[routes_mod.Route, ...], secrets: dict[str, str]) -> scrub.Scrubber:
    """Masks every secret value a route injects (formatted: the secret alone is in each)."""
    return scrub.Scrubber(secrets[i.secret] for r in routes for i in r.inject)


def _ask_for_scrubbable(req: http.Request) -> None:
    """Ask a routed upstream for an answer the scrub can read: whole and uncompressed."""
    trailers = "trailers" in [t.split(";")[0].strip().lower() for t in ",".join(req.headers.get_all("te")).split(",")]
    for name in UNSCRUBBABLE_ASKS:
        _drop(req.headers, name)
    if trailers:  # gRPC asks for them so; the trailers are scrubbed
        req.headers["te"] = "trailers"
    _drop(req.headers, "accept-encoding")
    req.headers["accept-encoding"] = "identity"


def _drop(headers: http.Headers, name: str) -> None:
    """Every copy of the header `name`, in any letter case."""
    while name in headers:
        del headers[name]


def _content_coded(resp: http.Response) -> bool:
    """In a content coding, or a transfer coding other than chunked (`gzip, chunked`)."""
    content = [c.strip().lower() for c in ",".join(resp.headers.get_all("content-encoding")).split(",")]
    transfer = [c.strip().lower() for c in ",".join(resp.headers.get_all("transfer-encoding")).split(",")]
    return any(c not in ("", "identity") for c in content) or any(c not in ("", "identity", "chunked") for c in transfer)


def _may_have_body(flow: http.HTTPFlow) -> bool:
    assert flow.response is not None
    status = flow.response.status_code
    return flow.request.method != "HEAD" and status not in (204, 304) and status >= 200


def _coding_refusal() -> http.Response:
    """A 502 in place of the upstream's answer, streamed: the upstream's body is dropped as it
    arrives and the refusal sent at its end (mitmproxy still reads the body it announced)."""
    refusal = http.Response.make(502, CODING_REFUSED, {"content-type": "text/plain; charset=utf-8",
                                                        EGRESS_HEADER: "deny; rule=content-coding"})
    refusal.stream = lambda chunk: b"" if chunk else CODING_REFUSED
    return refusal


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in str(text))[:200]
