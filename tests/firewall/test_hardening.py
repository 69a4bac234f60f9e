"""Hardening at the hook level: what a tunnel may carry, ports, DLP in every field, header
hygiene, ALPN/SNI, WebSocket control frames, the health check, linear-time patterns.
test_live_hardening.py checks the same against real mitmproxy and real sockets."""

from __future__ import annotations

import json
import types

import pytest
import wsproto.events
from firewall import mitm_limits
from firewall.healthcheck import HEALTH_HOST, HEALTH_PATH
from firewall.tunnels import MAX_UNDECIDED, RefuseLayer, may_still_be_parsed
from fwtest import Harness, make_policy, meta, request_flow
from mitmproxy import connection, http
from mitmproxy.proxy import commands, events, layer, layers
from mitmproxy.proxy import context as pcontext
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.proxy.layers import tls as tls_layer
from mitmproxy.test import tflow

AWS = "AKIAIOSFODNN7EXAMPLE"


def denied(f, rule, status=403):
    assert f.response is not None, "expected a refusal"
    assert f.response.status_code == status, f.response.content
    assert meta(f).decision == "deny" and meta(f).rule == rule, meta(f)


# -- only parsed traffic leaves ------------------------------------------------------------------


def next_layer(h: Harness, address, client_data: bytes, chosen_cls=None, server_data: bytes = b""):
    """A NextLayer as mitmproxy hands it to addons, after its own NextLayer addon chose ``chosen_cls``."""
    ctx = pcontext.Context(tflow.tclient_conn(), h.tctx.options)
    ctx.server = connection.Server(address=address)
    nl = layer.NextLayer(ctx)
    if client_data:
        nl.events.append(events.DataReceived(ctx.client, client_data))
    if server_data:
        nl.events.append(events.DataReceived(ctx.server, server_data))
    nl.layer = chosen_cls(ctx) if chosen_cls else None
    return nl


async def decide(h: Harness, nl):
    await h.hook(layer.NextLayerHook(nl))
    return nl.layer


@pytest.mark.parametrize(
    "data",
    [b"\x00\x01\x02raw bytes\r\n", b"SSH-2.0-OpenSSH_9.2\r\n", b"\x17\x03\x03\x00\x10secret", b"GET\x00 / HTTP/1.1\r\n"],
)
async def test_raw_tcp_to_allowed_host_is_refused_not_relayed(data):
    with Harness(make_policy()) as h:
        nl = next_layer(h, ("registry.npmjs.org", 443), data, layers.TCPLayer)
        assert isinstance(await decide(h, nl), RefuseLayer)
        line = h.last()
        assert (line["decision"], line["rule"], line["method"]) == ("deny", "raw-tcp", "TCP")


async def test_server_speaking_first_is_refused():
    with Harness(make_policy()) as h:
        nl = next_layer(h, ("registry.npmjs.org", 443), b"", layers.TCPLayer, server_data=b"220 smtp ready\r\n")
        assert isinstance(await decide(h, nl), RefuseLayer)


@pytest.mark.parametrize("data", [b"\x16", b"\x16\x03", b"G", b"GE", b"GET", b"GET /x", b"POST /a HTTP/1.1"])
async def test_too_little_to_tell_waits_for_more(data):
    with Harness(make_policy()) as h:
        nl = next_layer(h, ("registry.npmjs.org", 443), data, layers.TCPLayer)
        assert await decide(h, nl) is None  # mitmproxy asks again when more bytes arrive
        assert h.decisions() == []


async def test_waiting_is_bounded():
    with Harness(make_policy()) as h:
        nl = next_layer(h, ("registry.npmjs.org", 443), b"A" * (MAX_UNDECIDED + 1))
        assert isinstance(await decide(h, nl), RefuseLayer)
        assert h.last()["rule"] == "undecided"


def test_may_still_be_parsed():
    assert may_still_be_parsed(b"") and may_still_be_parsed(b"\x16") and may_still_be_parsed(b"GET / HTTP/1.1")
    assert not may_still_be_parsed(b"\x16\x04")
    assert not may_still_be_parsed(b"GET / HTTP/1.1\r\n")  # complete line: mitmproxy decided with it
    assert not may_still_be_parsed(b"\x00")


@pytest.mark.parametrize("cls", [layers.HttpLayer, layers.ServerTLSLayer])
async def test_inspected_layers_are_kept(cls):
    with Harness(make_policy()) as h:
        ctx = pcontext.Context(tflow.tclient_conn(), h.tctx.options)
        ctx.server = connection.Server(address=("registry.npmjs.org", 443))
        nl = layer.NextLayer(ctx)
        nl.events.append(events.DataReceived(ctx.client, b"GET / HTTP/1.1\r\n"))
        chosen = layers.HttpLayer(ctx, http_layer.HTTPMode.transparent) if cls is layers.HttpLayer else cls(ctx)
        nl.layer = chosen
        assert await decide(h, nl) is chosen


async def test_raw_tcp_to_passthrough_host_is_kept():
    with Harness(make_policy()) as h:
        nl = next_layer(h, ("pass.example.com", 443), b"\x00raw", layers.TCPLayer)
        assert isinstance(await decide(h, nl), layers.TCPLayer)
        nl = next_layer(h, ("pass.example.com", 22), b"\x00raw", layers.TCPLayer)
        assert isinstance(await decide(h, nl), RefuseLayer), "passthrough does not open other ports"


def test_refuse_layer_closes_the_client_and_relays_nothing():
    ctx = pcontext.Context(tflow.tclient_conn(), None)
    ctx.server = connection.Server(address=("registry.npmjs.org", 443))
    ctx.server.state = connection.ConnectionState.OPEN
    refuse = RefuseLayer(ctx)
    cmds = list(refuse.handle_event(events.DataReceived(ctx.client, b"payload")))
    closed = [c.connection for c in cmds if isinstance(c, commands.CloseConnection)]
    assert ctx.client in closed and ctx.server in closed
    assert not [c for c in cmds if isinstance(c, commands.SendData)]
    assert list(refuse.handle_event(events.DataReceived(ctx.client, b"more"))) == []


# -- ports ------------------------------------------------------------------------------------------


async def test_allowed_host_on_other_port_is_refused_with_the_fix():
    with Harness(make_policy()) as h:
        f = await h.connect("registry.npmjs.org", 22)
        denied(f, "port")
        assert "inv allow registry.npmjs.org:22" in f.response.text
        f = await h.connect("registry.npmjs.org", 80)
        assert f.response.status_code == 200
        f = await h.connect("api.upstream.test", 8443)  # listed with its port
        assert f.response.status_code == 200
        data = await h.server_connect("registry.npmjs.org", 5432)
        assert data.server.error and "not on the allowlist" in data.server.error


# -- DLP in every field ----------------------------------------------------------------------------


async def test_secret_in_method_refused_and_not_logged():
    with Harness(make_policy()) as h:
        f = await h.request(request_flow(AWS, "https://registry.npmjs.org/"))
        assert f.response.status_code in (400, 403)
        assert AWS not in h.out.getvalue() and AWS not in f.response.text


async def test_secret_in_method_is_a_dlp_finding():
    with Harness(make_policy()) as h:
        f = request_flow("GET", "https://registry.npmjs.org/")
        f.request.method = "AKIAIOSFODNN7EXAMPLE"  # a token, so the hygiene check lets DLP decide
        await h.hook(http_layer.HttpRequestHeadersHook(f))
        assert meta(f).rule in ("dlp:aws-access-key-id", "bad-method")
        h.fw.emit(f)
        assert AWS not in h.out.getvalue()


@pytest.mark.parametrize("name", [f"X-{AWS}", f"x-{AWS.lower()}", AWS.lower()])
async def test_secret_in_header_name_refused(name):
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("GET", "https://registry.npmjs.org/", headers=[(name, "1")]))
        denied(f, "dlp:aws-access-key-id")
        assert "header name" in f.response.text
        assert AWS not in h.out.getvalue() and AWS.lower() not in h.out.getvalue()


async def test_secret_split_over_repeated_headers_refused():
    with Harness(make_policy()) as h:
        headers = [("X-Part", AWS[:10]), ("X-Part", AWS[10:])]
        f = await h.request(request_flow("GET", "https://registry.npmjs.org/", headers=headers))
        denied(f, "dlp:aws-access-key-id")


async def test_secret_in_trailers_refused():
    with Harness(make_policy()) as h:
        f = request_flow("POST", "https://registry.npmjs.org/x", b"harmless")
        f.request.trailers = http.Headers(x_checksum=AWS)
        await h.request(f)
        denied(f, "dlp:aws-access-key-id")
        assert "trailer x-checksum" in f.response.text


@pytest.mark.parametrize(
    "body",
    [
        # NDJSON, each character of the key a \\u escape
        ('{"a": 1}\n{"k": "' + "".join(f"\\u{ord(c):04x}" for c in AWS) + '"}\n').encode(),
        # JSON inside a JSON string (escaped twice)
        json.dumps({"outer": json.dumps({"k": "".join(f"\\u{ord(c):04x}" for c in AWS)})}).encode(),
        # mixed escapes in text that is not JSON at all
        ("key=AKIA" + "".join(f"\\u{ord(c):04X}" for c in AWS[4:])).encode(),
    ],
)
async def test_secret_behind_json_escapes_refused(body):
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("POST", "https://registry.npmjs.org/x", body, {"content-type": "text/plain"}))
        denied(f, "dlp:aws-access-key-id")


def test_escaped_backslash_is_not_an_escape():
    from firewall.dlp import _unescaped

    assert list(_unescaped("\\\\u0041")) == ["\\u0041", "A"]  # one pass per level of escaping


async def test_secret_in_websocket_control_frames_blanked():
    with Harness(make_policy()) as h:
        f = tflow.twebsocketflow()
        f.request.host = "registry.npmjs.org"
        secret = f"id={AWS}".encode()
        out = h.fw.websocket_control(f, wsproto.events.Ping(payload=secret))
        assert isinstance(out, wsproto.events.Ping) and bytes(out.payload) == b""
        assert h.last()["rule"] == "dlp:aws-access-key-id" and "ping" in h.last()["reason"]
        out = h.fw.websocket_control(f, wsproto.events.Pong(payload=secret))
        assert isinstance(out, wsproto.events.Pong) and bytes(out.payload) == b""
        out = h.fw.websocket_control(f, wsproto.events.CloseConnection(code=1000, reason=f"bye {AWS}"))
        assert out.code == 1000 and not out.reason
        benign = wsproto.events.Ping(payload=b"keepalive")
        assert h.fw.websocket_control(f, benign) is benign
        assert AWS not in h.out.getvalue()


def test_websocket_frames_of_the_agent_go_through_the_guard():
    """The wrapped send2 hands the agent's control frames (towards the server) to the guard."""
    from mitmproxy.proxy.layers import websocket as ws_layers

    seen = []

    class Spy:
        def websocket_control(self, flow, event):
            seen.append(event)
            return wsproto.events.Ping(payload=b"")

        def refused_in_transit(self, flow, rule, reason):  # pragma: no cover
            pass

    with Harness(make_policy()) as h:
        try:
            mitm_limits.install(Spy())
            server = connection.Server(address=("registry.npmjs.org", 443))
            ws = ws_layers.WebsocketConnection(wsproto.ConnectionType.CLIENT, conn=server)
            ws.bottle_flow = tflow.twebsocketflow()
            cmd = ws.send2(wsproto.events.Ping(payload=b"payload"))
            assert seen and bytes(seen[0].payload) == b"payload"
            assert b"payload" not in cmd.data
        finally:
            mitm_limits.install(h.fw)


# -- HTTP/2 requests sent on over HTTP/1 -------------------------------------------------------------


def http1_bytes_for(request: http.Request, body: bytes) -> bytes:
    """What mitmproxy's HTTP/1 client (as wrapped) writes for `request`, then `body`, then the end."""
    with Harness(make_policy()):  # installs the wrapped layers
        ctx = pcontext.Context(tflow.tclient_conn(), None)
        ctx.server = connection.Server(address=("registry.npmjs.org", 443))
        client = http_layer._http1.Http1Client(ctx)
        sent = [*client.send(http_layer.RequestHeaders(1, request, end_stream=not body))]
        if body:
            sent += [*client.send(http_layer.RequestData(1, body))]
        sent += [*client.send(http_layer.RequestEndOfMessage(1))]
        return b"".join(c.data for c in sent if isinstance(c, commands.SendData))


SMUGGLED = b"DELETE /admin HTTP/1.1\r\nHost: registry.npmjs.org\r\n\r\n"


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/3"])
def test_an_http2_body_without_a_length_is_chunked_on_http1(version):
    request = http.Request.make("POST", "https://registry.npmjs.org/upload")
    request.http_version = version
    request.headers.pop("content-length", None)
    wire = http1_bytes_for(request, SMUGGLED)
    head, _, rest = wire.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), head
    # the body is one chunk and the end: the next hop cannot read it as a request of its own
    assert rest == b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"


def test_an_http2_request_with_a_length_or_no_body_is_sent_as_it_is():
    with_length = http.Request.make("POST", "https://registry.npmjs.org/upload", b"abc")
    with_length.http_version = "HTTP/2.0"
    wire = http1_bytes_for(with_length, b"abc")
    assert b"content-length: 3" in wire.lower() and b"transfer-encoding" not in wire.lower()
    assert wire.endswith(b"\r\n\r\nabc")
    bodiless = http.Request.make("GET", "https://registry.npmjs.org/")
    bodiless.http_version = "HTTP/2.0"
    bodiless.headers.pop("content-length", None)
    wire = http1_bytes_for(bodiless, b"")
    assert b"transfer-encoding" not in wire.lower() and wire.endswith(b"\r\n\r\n")


# -- header hygiene ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, rule, status",
    [
        ([("X-A", "one\rtwo")], "bad-header", 400),
        ([("X-A", "one\x00two")], "bad-header", 400),
        ([("X-A", "a" * (16 * 1024 + 1))], "header-limit", 431),
        ([(f"X-{i}", "b" * 8000) for i in range(10)], "header-limit", 431),
        ([("Transfer-Encoding", "gzip, chunked")], "transfer-coding", 501),
        ([("Connection", "content-length")], "bad-header", 400),
    ],
)
async def test_malformed_or_oversized_heads_refused(headers, rule, status):
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("POST", "https://registry.npmjs.org/x", b"x", headers=headers))
        denied(f, rule, status)


async def test_hop_by_hop_headers_stripped():
    with Harness(make_policy()) as h:
        headers = [
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Keep-Alive", "timeout=5"),
            ("Connection", "keep-alive, X-Internal"),
            ("X-Internal", "hop only"),
            ("X-Kept", "end to end"),
        ]
        f = await h.request(request_flow("GET", "https://registry.npmjs.org/", headers=headers))
        sent = f.request.headers
        for name in ("proxy-connection", "proxy-authorization", "keep-alive", "x-internal"):
            assert name not in sent, name
        assert sent["x-kept"] == "end to end" and sent["connection"] == "keep-alive"


async def test_websocket_upgrade_keeps_its_connection_header():
    with Harness(make_policy()) as h:
        headers = [("Connection", "Upgrade"), ("Upgrade", "websocket")]
        f = await h.request(request_flow("GET", "https://registry.npmjs.org/ws", headers=headers))
        assert f.request.headers["connection"] == "upgrade" and f.request.headers["upgrade"] == "websocket"


# -- TLS: ALPN and SNI --------------------------------------------------------------------------


async def test_upstream_is_offered_only_the_protocols_the_firewall_speaks():
    with Harness(make_policy()) as h:
        ctx = pcontext.Context(tflow.tclient_conn(), h.tctx.options)
        ctx.server = connection.Server(address=("registry.npmjs.org", 443))
        hello = types.SimpleNamespace(sni="evil.example", alpn_protocols=[b"h2", AWS.encode(), b"http/1.1", b"x"])
        ctx.client.alpn_offers = list(hello.alpn_protocols)
        data = tls_layer.ClientHelloData(ctx, hello)
        await h.hook(tls_layer.TlsClienthelloHook(data))
        assert ctx.client.alpn_offers == [b"h2", b"http/1.1"]
        assert ctx.server.sni == "registry.npmjs.org"
        assert not data.ignore_connection


# -- the health check -----------------------------------------------------------------------------


async def test_health_request_is_answered_locally():
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("GET", f"http://{HEALTH_HOST}{HEALTH_PATH}"))
        assert f.response.status_code == 200 and f.response.text == "ok\n"
        assert h.decisions() == [] and h.dns.calls == []
        other = await h.request(request_flow("GET", f"http://{HEALTH_HOST}/other"))
        assert other.response.status_code == 403  # only the health path is special


async def test_health_says_no_policy():
    with Harness(None) as h:
        f = await h.request(request_flow("GET", f"http://{HEALTH_HOST}{HEALTH_PATH}"))
        assert f.response.status_code == 503


# -- linear-time patterns --------------------------------------------------------------------------


async def test_backtracking_pattern_cannot_pin_the_cpu():
    """`(a+)+$` takes exponential time in a backtracking engine on 'aaaa…!'; on RE2 it is linear,
    so this finishes at once (with Python's re it would not finish at all)."""

    pol = make_policy(dlp={"patterns": [{"name": "evil", "regex": "(a+)+$"}]})
    with Harness(pol) as h:
        f = await h.request(
            request_flow("GET", "https://registry.npmjs.org/", headers=[("X-A", "a" * 10_000 + "!")])
        )
        assert f.response.status_code == 200
        f = await h.request(request_flow("GET", "https://registry.npmjs.org/", headers=[("X-A", "aaaa")]))
        denied(f, "dlp:evil")


# -- seed phrases on the model's API host ----------------------------------------------------------


async def test_seed_phrase_rule_off_only_where_the_policy_says():
    from mnemonic import Mnemonic

    phrase = Mnemonic("english").to_mnemonic(bytes(range(16))).encode()

    pol = make_policy(dlp={"hosts": {}, "rules_off": {"api.anthropic.com": ["seed-phrase"]}})
    with Harness(pol) as h:
        f = await h.request(request_flow("POST", "https://api.anthropic.com/v1/messages", phrase))
        assert f.response.status_code == 200, f.response.text  # prose to the model: not a finding
        f = await h.request(request_flow("POST", "https://registry.npmjs.org/x", phrase))
        denied(f, "dlp:seed-phrase")
        # every other rule keeps the host's action
        f = await h.request(request_flow("POST", "https://api.anthropic.com/v1/messages", AWS.encode()))
        denied(f, "dlp:aws-access-key-id")


def test_rules_off_names_known_rules_only():
    from firewall import policy as P

    with pytest.raises(P.PolicyError, match="unknown rule"):
        make_policy(dlp={"rules_off": {"api.anthropic.com": ["no-such-rule"]}})


def test_a_connection_asking_ever_new_hosts_is_not_followed_but_closed_at_the_next_reload():
    """A wildcard that resolves any name lets one keep-alive connection ask a new host each
    request: each was remembered for its revocation, without end."""
    from types import SimpleNamespace

    from firewall.revocation import MAX_TRACKED, Revocation

    closed, events = [], []
    fw = SimpleNamespace(policy=None, still_allowed=lambda *target, client: True,
                         close_client_id=lambda client_id: closed.append(client_id) or True,
                         audit=SimpleNamespace(event=lambda *a, **k: events.append(k)), safe=str)
    revocation = Revocation(fw)
    busy, quiet = SimpleNamespace(id="busy", peername=("172.30.0.3", 1)), SimpleNamespace(id="quiet", peername=None)
    for i in range(MAX_TRACKED + 500):
        revocation.track(busy, f"h{i}.wild.example", 443, False)
    revocation.track(quiet, "one.example", 443, False)
    assert len(revocation.targets["busy"]) == MAX_TRACKED
    assert revocation.revoke() == 1 and closed == ["busy"]  # every target still allowed: closed all the same
    assert "not followed" in events[0]["reason"] and "busy" not in revocation.overflowed
