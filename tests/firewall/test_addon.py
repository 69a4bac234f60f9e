"""The addon, driven through mitmproxy's hooks with taddons/tflow."""

import asyncio
import gzip
import io
import ipaddress
import json
import os
import signal

import pytest
from fwtest import (
    CLIENT,
    SAMPLES,
    FakeDNS,
    Harness,
    assert_decision_line,
    connect_flow,
    make_policy,
    meta,
    policy_doc,
    request_flow,
)
from mitmproxy import flow, hooks, http
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.proxy.layers import tcp as tcp_layer
from mitmproxy.proxy.layers import websocket as ws_layer
from mitmproxy.test import tflow

AWS = "AKIAIOSFODNN7EXAMPLE"


def denied(f, rule, status=403):
    assert f.response is not None, "expected a refusal"
    assert f.response.status_code == status, f.response.content
    assert f.response.headers["x-bottle-firewall"] == f"deny; rule={rule}"
    assert meta(f).decision == "deny" and meta(f).rule == rule


# -- 1. default deny ---------------------------------------------------------------------


async def test_connect_to_allowlisted_host_is_allowed():
    with Harness(make_policy()) as h:
        f = await h.connect("registry.npmjs.org")
        assert f.response.status_code == 200
        line = h.last()
        assert_decision_line(line)
        assert line | {"ts": None} == {
            "ts": None,
            "client": CLIENT[0],
            "method": "CONNECT",
            "host": "registry.npmjs.org",
            "port": 443,
            "path": "",
            "decision": "allow",
            "rule": "allowlist",
            "reason": "matches registry.npmjs.org",
            "bytes_out": 0,
            "bytes_in": 0,
            "status": 200,
        }


async def test_wildcard_matches_subdomain_not_apex():
    with Harness(make_policy()) as h:
        f = await h.connect("files.pypi.org")
        assert f.response.status_code == 200
        assert h.last()["reason"] == "matches *.pypi.org"
        f = await h.connect("pypi.org")
        denied(f, "not-allowlisted")


async def test_denied_connect_body_names_host_and_fix():
    with Harness(make_policy()) as h:
        f = await h.connect("evil.example", 443)
        denied(f, "not-allowlisted")
        body = f.response.text
        assert "evil.example" in body
        assert "inv allow evil.example" in body
        assert "demo" in body
        line = h.last()
        assert_decision_line(line)
        assert (line["decision"], line["rule"], line["status"], line["host"]) == (
            "deny",
            "not-allowlisted",
            403,
            "evil.example",
        )
        assert h.dns.calls == [], "a host that is not allowed must not even be resolved"


async def test_plain_http_request_to_other_host_denied():
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("GET", "http://evil.example/x?secret=1"))
        denied(f, "not-allowlisted")
        assert "inv allow evil.example" in f.response.text
        line = h.last()
        assert line["path"] == "/x" and line["method"] == "GET" and line["port"] == 80


async def test_allowed_request_passes_and_is_audited():
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("POST", "https://registry.npmjs.org/-/v1/search?q=rich", b"{}"))
        assert f.response.status_code == 200 and "x-bottle-firewall" not in f.response.headers
        line = h.last()
        assert_decision_line(line)
        assert line["decision"] == "allow" and line["path"] == "/-/v1/search"
        assert line["bytes_out"] == 2 and line["bytes_in"] == len(b"upstream says hi")
        assert line["status"] == 200


async def test_no_policy_denies_everything():
    with Harness(None) as h:
        f = await h.connect("registry.npmjs.org")
        denied(f, "no-policy")
        data = await h.server_connect("registry.npmjs.org")
        assert data.server.error


# -- host re-checked on every request in a tunnel -------------------------------------------


async def test_host_header_for_another_host_in_tunnel_denied():
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("GET", "https://registry.npmjs.org/", host_header="evil.example"))
        denied(f, "host-mismatch")
        assert "evil.example" in f.response.text
        assert h.last()["rule"] == "host-mismatch"


async def test_host_header_other_allowed_host_in_tunnel_also_denied():
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("GET", "https://registry.npmjs.org/", host_header="files.pypi.org"))
        denied(f, "host-mismatch")


async def test_h2_authority_mismatch_denied():
    with Harness(make_policy()) as h:
        f = await h.request(
            request_flow("GET", "https://registry.npmjs.org/", http2=True, authority="evil.example")
        )
        denied(f, "host-mismatch")
        ok = await h.request(request_flow("GET", "https://registry.npmjs.org/", http2=True))
        assert ok.response.status_code == 200


async def test_absolute_form_target_mismatch_denied():
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("GET", "https://registry.npmjs.org/", authority="evil.example:443"))
        denied(f, "host-mismatch")


async def test_host_header_port_must_match_when_given():
    with Harness(make_policy()) as h:
        f = await h.request(
            request_flow("GET", "https://registry.npmjs.org/", host_header="registry.npmjs.org:8443")
        )
        denied(f, "host-mismatch")
        for good in ("registry.npmjs.org", "registry.npmjs.org:443", "REGISTRY.npmjs.org."):
            f = await h.request(request_flow("GET", "https://registry.npmjs.org/", host_header=good))
            assert f.response.status_code == 200, good


async def test_host_header_port_in_other_digits_is_a_mismatch_not_an_error():
    """'²' passes str.isdigit() but not int(): the port was an exception (rule "error", a traceback
    in the log on every such request); '٤٤٣' was read as 443."""
    with Harness(make_policy()) as h:
        for port in ("\u00b2", "\u0664\u0664\u0663"):
            f = await h.request(request_flow("GET", "https://registry.npmjs.org/", host_header=f"registry.npmjs.org:{port}"))
            denied(f, "host-mismatch")


async def test_duplicate_host_headers_all_checked():
    with Harness(make_policy()) as h:
        f = request_flow("GET", "https://registry.npmjs.org/")
        f.request.headers.add("Host", "evil.example")
        await h.request(f)
        denied(f, "host-mismatch")


async def test_policy_change_applies_inside_open_tunnel():
    with Harness(make_policy()) as h:
        assert (await h.connect("registry.npmjs.org")).response.status_code == 200
        h.fw.set_policy(make_policy(allow=["*.pypi.org"], passthrough=[]))
        f = await h.request(request_flow("GET", "https://registry.npmjs.org/"))
        denied(f, "not-allowlisted")


# -- 2. passthrough -------------------------------------------------------------------------


async def test_passthrough_hosts_not_intercepted():
    with Harness(make_policy()) as h:
        f = await h.connect("pass.example.com")
        assert f.response.status_code == 200 and h.last()["rule"] == "passthrough"
        assert (await h.clienthello("pass.example.com", "pass.example.com")).ignore_connection is True
        assert (await h.clienthello("pass.example.com", None)).ignore_connection is True
        assert (await h.clienthello("registry.npmjs.org", "registry.npmjs.org")).ignore_connection is False
        # SNI naming another host: intercept so the request checks apply
        assert (await h.clienthello("pass.example.com", "evil.example")).ignore_connection is False


async def test_raw_tcp_only_to_passthrough_hosts():
    with Harness(make_policy()) as h:
        f = tflow.ttcpflow()
        f.server_conn.address = ("registry.npmjs.org", 22)
        await h.hook(tcp_layer.TcpStartHook(f))
        assert f.error is not None and meta(f).rule == "raw-tcp"
        assert h.last()["decision"] == "deny"
        g = tflow.ttcpflow()
        g.server_conn.address = ("pass.example.com", 443)
        await h.hook(tcp_layer.TcpStartHook(g))
        assert g.error is None and h.last()["decision"] == "allow"
        # passthrough does not widen the ports: 22 of a passthrough host is not allowed either
        k = tflow.ttcpflow()
        k.server_conn.address = ("pass.example.com", 22)
        await h.hook(tcp_layer.TcpStartHook(k))
        assert k.error is not None and h.last()["decision"] == "deny"


# -- 3. SSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "addr",
    [
        "127.0.0.1",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.0.10",
        "169.254.169.254",
        "100.64.0.7",
        "224.0.0.251",
        "0.0.0.0",
        "240.0.0.9",
        "::1",
        "fc00::5",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
async def test_allowed_name_resolving_internal_is_refused(addr):
    dns = FakeDNS({"registry.npmjs.org": [addr]})
    with Harness(make_policy(), dns) as h:
        f = await h.connect("registry.npmjs.org")
        denied(f, "ssrf")
        assert "registry.npmjs.org" in f.response.text and "internal" in f.response.text
        f = await h.request(request_flow("GET", "http://registry.npmjs.org/"))
        denied(f, "ssrf")
        data = await h.server_connect("registry.npmjs.org")
        assert data.server.error and "ssrf" in data.server.error
        assert data.server.address == ("registry.npmjs.org", 443)


@pytest.mark.parametrize("literal", ["169.254.169.254", "127.0.0.1", "10.1.1.1", "[::1]", "100.100.100.200"])
async def test_literal_internal_ip_refused_without_dns(literal):
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("GET", f"http://{literal}/latest/meta-data/"))
        denied(f, "ssrf")
        f = await h.connect(literal.strip("[]"), 443)
        denied(f, "ssrf")
        assert h.dns.calls == []


async def test_literal_public_ip_needs_allowlisting():
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("GET", "http://93.184.216.34/"))
        denied(f, "not-allowlisted")


async def test_allowed_cidrs_let_internal_upstream_through():
    with Harness(make_policy()) as h:
        f = await h.connect("api.upstream.test")
        assert f.response.status_code == 200
        data = await h.server_connect("api.upstream.test", 8443)
        assert not data.server.error
        assert data.server.address == ("172.30.5.20", 8443)


async def test_mixed_public_and_internal_answers_refused():
    dns = FakeDNS({"registry.npmjs.org": ["93.184.216.34", "127.0.0.1"]})
    with Harness(make_policy(), dns) as h:
        denied(await h.connect("registry.npmjs.org"), "ssrf")


async def test_dns_failure_is_a_502_refusal():
    with Harness(make_policy(), FakeDNS({})) as h:
        f = await h.connect("registry.npmjs.org")
        denied(f, "dns", status=502)


async def test_server_connect_pins_the_checked_address():
    with Harness(make_policy()) as h:
        data = await h.server_connect("registry.npmjs.org", 443)
        server = data.server
        assert not server.error
        # dial the checked IP, keep the name for TLS
        assert server.address == ("93.184.216.34", 443)
        assert server.sni == "registry.npmjs.org"
        from mitmproxy.connection import ConnectionState
        from mitmproxy.proxy import server_hooks

        server.state = ConnectionState.OPEN  # as mitmproxy has it when server_connected runs
        await h.hook(server_hooks.ServerConnectedHook(data))
        assert server.address == ("registry.npmjs.org", 443)
        assert len(h.fw.pins) == 0


async def test_a_pin_whose_connect_never_ends_goes_with_its_server():
    """mitmproxy waits for its per-address connection limit after server_connect; cancelled
    there, neither server_connected nor server_connect_error runs. The pin stayed for ever
    (one per cancelled connect: the agent repeats it at will)."""
    import gc

    with Harness(make_policy()) as h:
        data = await h.server_connect("registry.npmjs.org", 443)
        assert len(h.fw.pins) == 1
        del data
        gc.collect()
        assert len(h.fw.pins) == 0


async def test_server_connect_error_restores_name():
    from mitmproxy.proxy import server_hooks

    with Harness(make_policy()) as h:
        data = await h.server_connect("registry.npmjs.org", 443)
        await h.hook(server_hooks.ServerConnectErrorHook(data))
        assert data.server.address == ("registry.npmjs.org", 443)


async def test_server_connect_never_dials_unlisted_host():
    with Harness(make_policy()) as h:
        data = await h.server_connect("evil.example", 443)
        assert "not-allowlisted" in data.server.error
        assert h.dns.calls == []


async def test_dns_rebinding_between_check_and_connect():
    dns = FakeDNS({"registry.npmjs.org": ["93.184.216.34"]})
    with Harness(make_policy(), dns, ttl=5) as h:
        f = await h.connect("registry.npmjs.org")
        assert f.response.status_code == 200
        dns.table["registry.npmjs.org"] = ["169.254.169.254"]  # the attacker's DNS flips
        # within the cache window: the connection uses the address that was checked
        data = await h.server_connect("registry.npmjs.org")
        assert data.server.address == ("93.184.216.34", 443)
        # after it: the new answer is checked again, and refused
        h.clock[0] += 10
        data = await h.server_connect("registry.npmjs.org")
        assert data.server.error and "169.254.169.254" in data.server.error
        assert data.server.address == ("registry.npmjs.org", 443)


async def test_server_side_refusal_is_reported_on_the_connect_flow():
    """A refusal at connect time (no early check happened) ends up as a 403 on the CONNECT."""

    dns = FakeDNS({"registry.npmjs.org": ["10.0.0.1"]})
    with Harness(make_policy(), dns) as h:
        f = connect_flow("registry.npmjs.org")
        data = await h.server_connect("registry.npmjs.org", client=f.client_conn)
        assert data.server.error
        # mitmproxy answers the CONNECT with a 502 and runs http_connect_error
        f.response = http.Response.make(502, b"Cannot connect")
        await h.hook(http_layer.HttpConnectErrorHook(f))
        denied(f, "ssrf")
        assert h.last()["rule"] == "ssrf" and h.last()["status"] == 403


# -- 4. DLP -----------------------------------------------------------------------------------


async def test_dlp_secret_in_query_refused():
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("GET", f"https://registry.npmjs.org/x?key={AWS}&a=1"))
        denied(f, "dlp:aws-access-key-id")
        assert AWS not in f.response.text
        assert "query" in f.response.text
        assert AWS not in h.out.getvalue()


async def test_dlp_secret_in_header_refused():
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("GET", "https://registry.npmjs.org/", headers={"X-Token": AWS}))
        denied(f, "dlp:aws-access-key-id")
        assert "header x-token" in f.response.text
        assert AWS not in f.response.text and AWS not in h.out.getvalue()


async def test_dlp_secret_in_json_body_refused():
    with Harness(make_policy()) as h:
        body = json.dumps({"creds": {"id": AWS}}).encode()
        f = await h.request(
            request_flow("POST", "https://registry.npmjs.org/x", body, {"content-type": "application/json"})
        )
        denied(f, "dlp:aws-access-key-id")
        assert "body" in f.response.text
        assert AWS not in f.response.text and AWS not in h.out.getvalue()
        assert h.last()["bytes_out"] == 0


async def test_dlp_secret_in_gzipped_body_refused():
    with Harness(make_policy()) as h:
        body = gzip.compress(b"token=" + SAMPLES["github-token"].encode())
        f = await h.request(
            request_flow("POST", "https://registry.npmjs.org/x", body, {"content-encoding": "gzip"})
        )
        denied(f, "dlp:github-token")


async def test_dlp_secret_in_a_codings_own_fields_refused():
    # a gzip member's file name is not in the decoded body, but it leaves with the bytes
    with Harness(make_policy()) as h:
        named = io.BytesIO()
        with gzip.GzipFile(filename=AWS, mode="wb", fileobj=named, mtime=0) as member:
            member.write(b"harmless")
        f = await h.request(
            request_flow("POST", "https://registry.npmjs.org/x", named.getvalue(), {"content-encoding": "gzip"})
        )
        denied(f, "dlp:aws-access-key-id")


async def test_secret_in_host_name_is_refused_before_any_dns_lookup():
    pol = make_policy(allow=["*.example.com"], passthrough=[])
    with Harness(pol) as h:
        f = await h.connect(f"{AWS}.example.com")
        denied(f, "dlp:aws-access-key-id")
        f = request_flow("GET", "http://x.example.com/")
        f.request.data.host = f"{AWS}.example.com"  # as an absolute-form target keeps it
        await h.request(f)
        denied(f, "dlp:aws-access-key-id")
        assert h.dns.calls == [], "the secret must not leave as a DNS query"
        assert AWS not in f.response.text and AWS not in h.out.getvalue()


async def test_dlp_policy_pattern():
    with Harness(make_policy()) as h:
        token = "itk_" + "Ab1" * 10 + "Zz"
        f = await h.request(request_flow("POST", "https://registry.npmjs.org/x", f"t={token}".encode()))
        denied(f, "dlp:internal-token")
        assert token not in f.response.text and token not in h.out.getvalue()


async def test_dlp_exempt_header_only_on_its_host():
    key = SAMPLES["anthropic-api-key"]

    pol = make_policy(dlp={"hosts": {}})  # block everywhere, so the exemption is what matters
    with Harness(pol) as h:
        f = await h.request(
            request_flow("POST", "https://api.anthropic.com/v1/messages", b"{}", {"x-api-key": key})
        )
        assert f.response.status_code == 200, f.response.text
        # the same header towards another host is a leak
        f = await h.request(
            request_flow("POST", "https://registry.npmjs.org/x", b"{}", {"x-api-key": key})
        )
        denied(f, "dlp:anthropic-api-key")
        # and another header on the exempt host is still scanned
        f = await h.request(
            request_flow("POST", "https://api.anthropic.com/v1/messages", b"{}", {"authorization": key})
        )
        denied(f, "dlp:anthropic-api-key")
        # the exempt header from a client that is not the egress proxy (the agent itself)
        f = request_flow("POST", "https://api.anthropic.com/v1/messages", b"{}", {"x-api-key": key})
        f.client_conn.peername = ("172.30.9.3", 40000)
        await h.request(f)
        denied(f, "dlp:anthropic-api-key")
        # and the same key in the body of an exempt-header request is still refused
        f = await h.request(
            request_flow("POST", "https://api.anthropic.com/v1/messages", key.encode(), {"x-api-key": key})
        )
        denied(f, "dlp:anthropic-api-key")
        assert key not in h.out.getvalue()


async def test_dlp_exempts_nothing_inside_a_tunnel_even_from_the_egress_proxy():
    """The egress proxy relays the agent's own tunnels (to hosts without routes) from its
    exempt address: what travels in a tunnel is the agent's, so nothing in it is exempt."""
    key = SAMPLES["anthropic-api-key"]

    pol = make_policy(dlp={"hosts": {}})
    with Harness(pol) as h:
        tunnel = connect_flow("api.anthropic.com")
        await h.hook(http_layer.HttpConnectHook(tunnel))
        inside = request_flow("POST", "https://api.anthropic.com/v1/messages", b"{}", {"x-api-key": key})
        inside.client_conn = tunnel.client_conn  # the same client connection as the CONNECT
        await h.request(inside)
        denied(inside, "dlp:anthropic-api-key")
        # a plain proxy request from the egress proxy's address is exempt, as before
        f = await h.request(
            request_flow("POST", "https://api.anthropic.com/v1/messages", b"{}", {"x-api-key": key})
        )
        assert f.response.status_code == 200, f.response.text


async def test_dlp_warn_lets_request_through_and_logs():
    with Harness(make_policy()) as h:
        body = json.dumps({"messages": [{"content": f"my key is {AWS}"}]}).encode()
        f = await h.request(
            request_flow("POST", "https://api.anthropic.com/v1/messages?beta=true", body)
        )
        assert f.response.status_code == 200
        line = h.last()
        assert_decision_line(line)
        assert line["decision"] == "warn" and line["rule"] == "dlp:aws-access-key-id"
        assert line["path"] == "/v1/messages"
        assert AWS not in h.out.getvalue()


async def test_dlp_off_skips_scanning_and_streams_body():
    with Harness(make_policy()) as h:
        f = request_flow("PUT", f"https://files.pypi.org/x?k={AWS}", b"x" * 5_000_000)
        await h.hook(http_layer.HttpRequestHeadersHook(f))
        assert f.response is None
        assert callable(f.request.stream)
        f.request.stream(b"x" * 5_000_000)
        await h.hook(http_layer.HttpRequestHook(f))
        assert f.response is None
        f.response = http.Response.make(200)
        await h.hook(http_layer.HttpResponseHook(f))
        assert h.last()["bytes_out"] == 5_000_000 and h.last()["decision"] == "allow"


async def test_oversized_body_refused_unless_off():
    pol = make_policy(dlp={"max_body_bytes": 1000})
    with Harness(pol) as h:
        big = b"a" * 1001
        f = await h.request(request_flow("POST", "https://registry.npmjs.org/x", big))
        denied(f, "dlp:body-too-large")
        # known early, from Content-Length, before the body is buffered
        f = request_flow("POST", "https://registry.npmjs.org/x", big)
        await h.hook(http_layer.HttpRequestHeadersHook(f))
        denied(f, "dlp:body-too-large")
        # chunked (no Content-Length): caught once buffered
        f = request_flow("POST", "https://registry.npmjs.org/x", big)
        del f.request.headers["content-length"]
        await h.request(f)
        denied(f, "dlp:body-too-large")
        # warn does not exempt from the size limit
        f = await h.request(request_flow("POST", "https://api.anthropic.com/v1/messages", big))
        denied(f, "dlp:body-too-large")
        # off does
        f = await h.request(request_flow("POST", "https://files.pypi.org/x", big))
        assert f.response.status_code == 200
        # a small gzip body that inflates past the limit
        f = await h.request(
            request_flow("POST", "https://registry.npmjs.org/x", gzip.compress(b"a" * 100_000),
                         {"content-encoding": "gzip"})
        )
        denied(f, "dlp:body-too-large")


async def test_refusal_after_dlp_chose_streaming_is_not_streamed():
    """A later concern refusing (here: DNS) must undo the stream DLP set for an `off`
    host: mitmproxy cannot both answer locally and stream the body."""
    with Harness(make_policy(), FakeDNS({})) as h:
        for url in ("https://registry.npmjs.org/x", "https://files.pypi.org/x"):
            f = request_flow("POST", url, b"", {"transfer-encoding": "chunked"})
            f.request.headers.pop("content-length", None)
            await h.hook(http_layer.HttpRequestHeadersHook(f))
            denied(f, "dns", status=502)
            assert not f.request.stream


async def test_secret_in_path_is_redacted_from_audit():
    with Harness(make_policy(dlp={"action": "warn", "hosts": {}})) as h:
        f = await h.request(request_flow("GET", f"https://registry.npmjs.org/k/{AWS}/x"))
        assert f.response.status_code == 200
        assert h.last()["path"] == "/k/[REDACTED:aws-access-key-id]/x"
        assert AWS not in h.out.getvalue()


async def test_ordinary_requests_not_flagged():
    with Harness(make_policy()) as h:
        flows = [
            request_flow("GET", "https://registry.npmjs.org/left-pad", headers={"accept": "application/json",
                         "user-agent": "npm/10.8.2 node/v22.11.0 linux x64", "npm-session": "1a2b3c4d5e6f7a8b"}),
            request_flow("GET", "https://files.pypi.org/packages/ab/cd/rich-13.9.4-py3-none-any.whl"),
            request_flow("POST", "https://registry.npmjs.org/-/npm/v1/security/advisories/bulk",
                         json.dumps({"left-pad": ["1.3.0"], "react": ["18.3.1"]}).encode(),
                         {"content-type": "application/json"}),
        ]
        for f in flows:
            await h.request(f)
            assert f.response.status_code == 200, f.response.text


async def test_websocket_message_with_secret_dropped():
    with Harness(make_policy()) as h:
        f = tflow.twebsocketflow()
        f.request.host = "registry.npmjs.org"
        from mitmproxy import websocket

        message = websocket.WebSocketMessage(1, True, f"id={AWS}".encode())
        f.websocket.messages.append(message)
        await h.hook(ws_layer.WebsocketMessageHook(f))
        assert message.dropped
        assert f.websocket.messages == [], "a message is not kept once the hooks have seen it"
        assert h.last()["rule"] == "dlp:aws-access-key-id" and h.last()["method"] == "WEBSOCKET"
        assert AWS not in h.out.getvalue()


# -- 5. fail closed, streaming, timeouts --------------------------------------------------------


async def test_exception_in_hook_refuses_request(monkeypatch):
    with Harness(make_policy()) as h:
        def boom(*a, **k):
            raise RuntimeError("kaboom " + AWS)

        monkeypatch.setattr(h.fw.scanner, "scan_head", boom)
        f = await h.request(request_flow("GET", "https://registry.npmjs.org/"))
        denied(f, "error")
        assert "fail closed" in f.response.text
        line = h.last()
        assert line["decision"] == "deny" and line["rule"] == "error"
        assert AWS not in h.out.getvalue()


async def test_exception_in_connect_hook_refuses(monkeypatch):
    with Harness(make_policy()) as h:
        monkeypatch.setattr(h.fw.policy.allow, "match", lambda *a: 1 / 0)
        denied(await h.connect("registry.npmjs.org"), "error")


async def test_exception_in_server_connect_refuses_connection(monkeypatch):
    with Harness(make_policy()) as h:
        async def broken(*a, **k):
            raise ValueError("resolver broke")

        monkeypatch.setattr(h.fw.resolver, "resolve", broken)
        data = await h.server_connect("registry.npmjs.org")
        assert data.server.error and "internal firewall error" in data.server.error


async def test_exception_in_responseheaders_kills_flow(monkeypatch):
    with Harness(make_policy()) as h:
        import firewall.streaming as A

        monkeypatch.setattr(A, "counter", lambda *a: 1 / 0)
        f = request_flow("GET", "https://registry.npmjs.org/")
        await h.hook(http_layer.HttpRequestHeadersHook(f))
        await h.hook(http_layer.HttpRequestHook(f))
        f.response = http.Response.make(200, b"x")
        await h.hook(http_layer.HttpResponseHeadersHook(f))
        assert f.error is not None and f.error.msg == f.error.KILLED_MESSAGE
        assert meta(f).rule == "error"


async def test_hooks_really_fail_closed_under_mitmproxy_dispatch(monkeypatch):
    """Through AddonManager.trigger_event, which would log-and-continue on an exception."""

    with Harness(make_policy()) as h:
        monkeypatch.setattr(h.fw.scanner, "scan_body", lambda *a, **k: 1 / 0)
        f = request_flow("POST", "https://registry.npmjs.org/x", b"{}")
        await h.tctx.master.addons.trigger_event(http_layer.HttpRequestHeadersHook(f))
        await h.tctx.master.addons.trigger_event(http_layer.HttpRequestHook(f))
        denied(f, "error")


async def test_event_stream_responses_are_streamed():
    with Harness(make_policy()) as h:
        f = request_flow("POST", "https://api.anthropic.com/v1/messages?beta=true", b"{}")
        resp = http.Response.make(200, b"", {"content-type": "text/event-stream"})
        await h.hook(http_layer.HttpRequestHeadersHook(f))
        await h.hook(http_layer.HttpRequestHook(f))
        f.response = resp
        await h.hook(http_layer.HttpResponseHeadersHook(f))
        assert f.response.stream, "SSE must not be buffered"
        assert callable(f.response.stream)
        assert f.response.stream(b"event: ping\n\n") == b"event: ping\n\n"
        await h.hook(http_layer.HttpResponseHook(f))
        assert h.last()["bytes_in"] == len(b"event: ping\n\n")


async def test_refusals_are_not_streamed():
    with Harness(make_policy()) as h:
        f = await h.request(request_flow("GET", "https://evil.example/"))
        assert not f.response.stream


async def test_idle_timeout_applied_to_mitmproxy_option(tmp_path):
    p = tmp_path / "policy.json"
    p.write_text(json.dumps(policy_doc(idle_timeout=1234)))
    with Harness() as h:
        h.tctx.configure(h.fw, bottle_policy=str(p))
        await h.tctx.master.addons.invoke_addon(h.fw, hooks.RunningHook())
        try:
            assert h.tctx.options.tcp_timeout == 1234
        finally:
            await h.tctx.master.addons.invoke_addon(h.fw, hooks.DoneHook())


# -- 6. audit format ------------------------------------------------------------------------------


async def test_audit_lines_are_plain_json_lines():
    with Harness(make_policy()) as h:
        await h.connect("registry.npmjs.org")
        await h.request(request_flow("GET", "https://registry.npmjs.org/a?b=c"))
        await h.request(request_flow("GET", "https://evil.example/"))
        await h.request(request_flow("GET", f"https://registry.npmjs.org/?k={AWS}"))
        raw = h.out.getvalue()
        assert raw.endswith("\n")
        for text in raw.splitlines():
            line = json.loads(text)
            assert_decision_line(line)
            assert line["ts"].endswith("Z")
            assert isinstance(line["port"], int)
        assert [x["decision"] for x in h.decisions()] == ["allow", "allow", "deny", "deny"]
        assert "b=c" not in raw and AWS not in raw


async def test_upstream_error_is_audited():
    with Harness(make_policy()) as h:
        f = request_flow("GET", "https://registry.npmjs.org/")
        await h.hook(http_layer.HttpRequestHeadersHook(f))
        await h.hook(http_layer.HttpRequestHook(f))
        f.error = flow.Error("Connection refused")
        await h.hook(http_layer.HttpErrorHook(f))
        line = h.last()
        assert line["decision"] == "allow" and "Connection refused" in line["reason"]
        assert line["status"] is None


async def test_an_endless_path_makes_a_short_audit_line():
    """A 60 KB path of control bytes wrote a 360 KB line (`\\u0001` each): 250 such requests
    rotated the whole kept log away, every earlier decision with it."""
    with Harness(make_policy()) as h:
        await h.request(request_flow("GET", "https://evil.example/" + "\x01" * 60000))
        record = h.last()
        line = next(text for text in h.out.getvalue().splitlines() if '"decision"' in text)
        assert record["decision"] == "deny" and len(line) < 8192, len(line)
        assert record["path"].endswith("(cut from 60001 characters)")


async def test_an_upstream_errors_quoted_bytes_stay_out_of_the_audit():
    """mitmproxy quotes what a broken upstream sent: maybe the credential the egress proxy
    injected, echoed, which the firewall cannot know to redact."""
    with Harness(make_policy()) as h:
        f = request_flow("GET", "https://registry.npmjs.org/")
        await h.hook(http_layer.HttpRequestHeadersHook(f))
        await h.hook(http_layer.HttpRequestHook(f))
        f.error = flow.Error("Bad HTTP response line: b'x-api-key: sk-live-echoed-1234567890 " + "x" * 5000 + "'")
        await h.hook(http_layer.HttpErrorHook(f))
        reason = h.last()["reason"]
        assert "Bad HTTP response line" in reason and "echoed" not in reason and len(reason) < 300, reason


# -- 7. reload ------------------------------------------------------------------------------------


def _write(path, doc):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    os.replace(tmp, path)  # the controller replaces the file atomically by rename


async def test_reload_keeps_old_policy_when_new_is_invalid(tmp_path):
    p = tmp_path / "policy.json"
    _write(p, policy_doc())
    with Harness() as h:
        h.tctx.configure(h.fw, bottle_policy=str(p))
        loader = h.fw.addons[0]
        old = h.fw.policy
        assert old.bottle == "demo"
        _write(p, policy_doc(allow=["registry.npmjs.org"], passthrough=[], surprise=True))
        assert loader.reload() is False
        assert h.fw.policy is old
        _write(p, "{broken")
        assert loader.reload() is False
        assert h.fw.policy is old
        events = [x for x in h.lines() if x.get("event") == "policy-reload"]
        assert [e["ok"] for e in events] == [False, False]
        assert "surprise" in events[0]["reason"] and "kept the previous policy" in events[0]["reason"]
        # still enforcing the old policy
        assert (await h.connect("files.pypi.org")).response.status_code == 200
        _write(p, policy_doc(allow=["registry.npmjs.org"], passthrough=[]))
        assert loader.reload() is True
        assert h.fw.policy is not old
        denied(await h.connect("files.pypi.org"), "not-allowlisted")
        assert [x for x in h.lines() if x.get("event") == "policy-reload"][-1]["ok"] is True


async def test_invalid_policy_at_startup_is_an_options_error(tmp_path):
    from mitmproxy import exceptions

    p = tmp_path / "policy.json"
    p.write_text(json.dumps(policy_doc(idle_timeout="soon")))

    with Harness() as h:
        with pytest.raises(exceptions.OptionsError, match="idle_timeout"):
            h.tctx.configure(h.fw, bottle_policy=str(p))
        assert h.fw.policy is None


async def _reload_as(h, path, bottle: str) -> None:
    """Rewrite the policy for `bottle`, send SIGHUP, and wait (up to 1 s) for the firewall to take it."""
    _write(path, policy_doc(bottle=bottle))
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if h.fw.policy.bottle == bottle:
            return


async def test_sighup_reloads_policy(tmp_path):
    p = tmp_path / "policy.json"
    _write(p, policy_doc())
    with Harness() as h:
        h.tctx.configure(h.fw, bottle_policy=str(p))
        await h.tctx.master.addons.invoke_addon(h.fw, hooks.RunningHook())
        try:
            ready = [x for x in h.lines() if x.get("event") == "ready"]
            assert ready and ready[0]["bottle"] == "demo"
            await _reload_as(h, p, "other")
            assert h.fw.policy.bottle == "other"
        finally:
            await h.tctx.master.addons.invoke_addon(h.fw, hooks.DoneHook())


async def test_the_scanner_is_prepared_after_the_ready_line_and_after_a_reload(tmp_path):
    """Its prefilter takes ~25 ms to build: not on the way to the ready line the controller
    waits for, nor left for the agent's first request; built just after, while nothing waits."""
    from firewall import policy_reload

    p = tmp_path / "policy.json"
    _write(p, policy_doc())
    with Harness() as h:
        h.tctx.configure(h.fw, bottle_policy=str(p))
        assert "_prefilter" not in vars(h.fw.scanner)  # loading the policy does not build it
        await h.tctx.master.addons.invoke_addon(h.fw, hooks.RunningHook())
        try:
            assert [x for x in h.lines() if x.get("event") == "ready"]
            assert "_prefilter" not in vars(h.fw.scanner)  # the ready line comes first
            await asyncio.sleep(policy_reload.PREPARE_SCANNER_AFTER + 0.05)
            assert "_prefilter" in vars(h.fw.scanner)
            prepared = h.fw.scanner
            await _reload_as(h, p, "other")
            assert h.fw.policy.bottle == "other" and h.fw.scanner is not prepared  # a new scanner
            await asyncio.sleep(policy_reload.PREPARE_SCANNER_AFTER + 0.05)
            assert "_prefilter" in vars(h.fw.scanner)
        finally:
            await h.tctx.master.addons.invoke_addon(h.fw, hooks.DoneHook())


async def test_connect_to_ipv6_literal_allowlisted_and_public():
    pol = make_policy(allow=["2606:4700::1111"], passthrough=[])
    with Harness(pol) as h:
        f = await h.connect("2606:4700::1111")
        assert f.response.status_code == 200
        data = await h.server_connect("2606:4700::1111")
        assert data.server.address == ("2606:4700::1111", 443)
        assert data.server.sni == "2606:4700::1111"  # an IP as SNI: none is sent; the certificate is checked for the IP
        assert ipaddress.ip_address(data.server.address[0])
