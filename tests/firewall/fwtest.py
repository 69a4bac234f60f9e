"""Helpers for the firewall unit tests (run inside the firewall image)."""

from __future__ import annotations

import copy
import io
import json
import random
import socket
import string
import time
import types

from firewall import policy as policy_mod
from firewall.addon import Firewall, meta
from firewall.audit import DECISION_KEYS, AuditLog
from firewall.ssrf import Resolver
from mitmproxy import connection, http
from mitmproxy.proxy import context as pcontext
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.proxy.layers import tls as tls_layer
from mitmproxy.test import taddons, tflow

CLIENT = ("172.30.5.3", 40000)

BASE_POLICY = {
    "bottle": "demo",
    "allow": [
        "registry.npmjs.org", "*.pypi.org", "api.anthropic.com", "api.upstream.test", "api.upstream.test:8443",
        "pass.example.com",
    ],
    "passthrough": ["pass.example.com"],
    "allowed_cidrs": ["172.30.5.0/24"],
    "idle_timeout": 900,
    "dlp": {
        "action": "block",
        "hosts": {"api.anthropic.com": "warn", "files.pypi.org": "off"},
        "patterns": [{"name": "internal-token", "regex": "itk_[A-Za-z0-9]{32}"}],
        "max_body_bytes": 1048576,
        "exempt_headers": {"api.anthropic.com": ["x-api-key"]},
        "exempt_sources": ["172.30.5.0/24"],
    },
}

PUBLIC = "93.184.216.34"

ALNUM = string.ascii_letters + string.digits


def rnd(n: int, alphabet: str = ALNUM, seed: int = 7) -> str:
    r = random.Random(seed + n)
    return "".join(r.choice(alphabet) for _ in range(n))


# Fake credentials, built at run time so no literal credential-looking string sits in the repo.
SAMPLES = {
    "anthropic-api-key": "sk-ant-api03-" + rnd(93, ALNUM + "-_") + "AA",
    "openai-api-key": "sk-proj-" + rnd(120, ALNUM + "-_"),
    "aws-access-key-id": "AKIAIOSFODNN7EXAMPLE",  # AWS's documented example id
    "aws-secret-access-key": "aws_secret_access_key = " + rnd(40, ALNUM + "/+"),
    "github-token": "ghp_" + rnd(36),
    "gitlab-token": "glpat-" + rnd(20, ALNUM + "-_"),
    "slack-token": "xoxb-" + "1234567890-" + rnd(24),
    "slack-webhook": "https://hooks.slack.com/services/T0000AAAA/B0000BBBB/" + rnd(24),
    "google-api-key": "AIza" + rnd(35, ALNUM + "-_"),
    "stripe-secret-key": "sk_" + "live_" + rnd(24),
    "npm-token": "npm_" + rnd(36),
    "pypi-token": "pypi-AgEIcHlwaS5vcmc" + rnd(60, ALNUM + "-_"),
    "private-key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + rnd(40) + "\n-----END RSA PRIVATE KEY-----",
}

DEFAULT_DNS = {
    "registry.npmjs.org": [PUBLIC],
    "files.pypi.org": ["151.101.0.223"],
    "upload.pypi.org": ["151.101.0.223"],
    "api.anthropic.com": ["160.79.104.10"],
    "api.upstream.test": ["172.30.5.20"],
    "pass.example.com": [PUBLIC],
}


def policy_doc(**overrides) -> dict:
    doc = copy.deepcopy(BASE_POLICY)
    for k, v in overrides.items():
        if k == "dlp" and isinstance(v, dict):
            doc["dlp"].update(v)
        else:
            doc[k] = v
    return doc


def make_policy(**overrides) -> policy_mod.Policy:
    return policy_mod.parse(policy_doc(**overrides))


class FakeDNS:
    """getaddrinfo stand-in: name -> addresses; records every lookup."""

    def __init__(self, table: dict[str, list[str]] | None = None):
        self.table = dict(DEFAULT_DNS if table is None else table)
        self.calls: list[str] = []

    async def __call__(self, host, port, type=0, proto=0, family=0, flags=0):
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for ip in self.table[host]:
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            sockaddr = (ip, port, 0, 0) if fam == socket.AF_INET6 else (ip, port)
            out.append((fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return out


class Harness:
    """A Firewall inside a taddons context, with an in-memory audit log and fake DNS."""

    def __init__(self, pol: policy_mod.Policy | None = None, dns: FakeDNS | None = None, ttl: float = 10.0):
        self.out = io.StringIO()
        self.dns = dns or FakeDNS()
        self.clock = [1000.0]
        self.fw = Firewall(
            policy=pol,
            audit=AuditLog(out=self.out),
            resolver=Resolver(getaddrinfo=self.dns, ttl=ttl, clock=lambda: self.clock[0]),
        )
        self.tctx: taddons.context | None = None

    def __enter__(self):
        self.tctx = taddons.context(self.fw)
        self.tctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self.tctx.__exit__(*exc)

    async def hook(self, hook_obj) -> None:
        await self.tctx.master.addons.invoke_addon(self.fw, hook_obj)

    # -- whole request cycles ---------------------------------------------------------

    async def connect(self, host: str, port: int = 443, headers=None) -> http.HTTPFlow:
        """A CONNECT as mitmproxy runs it: http_connect, then connected or connect_error."""
        f = connect_flow(host, port, headers)
        await self.hook(http_layer.HttpConnectHook(f))
        if f.response is None:
            f.response = http.Response.make(200, b"")
            await self.hook(http_layer.HttpConnectedHook(f))
        else:
            await self.hook(http_layer.HttpConnectErrorHook(f))
        return f

    async def request(self, f: http.HTTPFlow, response: http.Response | None = None) -> http.HTTPFlow:
        """requestheaders, request, then (unless refused) a response from 'upstream'."""
        await self.hook(http_layer.HttpRequestHeadersHook(f))
        await self.hook(http_layer.HttpRequestHook(f))
        if f.response is None:
            f.response = response or http.Response.make(200, b"upstream says hi", {"content-type": "text/plain"})
            await self.hook(http_layer.HttpResponseHeadersHook(f))
            if callable(f.response.stream):
                body = f.response.raw_content or b""
                f.response.stream(body)
        else:
            await self.hook(http_layer.HttpResponseHeadersHook(f))
        await self.hook(http_layer.HttpResponseHook(f))
        return f

    async def server_connect(self, host: str, port: int = 443, client=None):
        data = server_hooks.ServerConnectionHookData(
            client=client or tflow.tclient_conn(), server=connection.Server(address=(host, port))
        )
        await self.hook(server_hooks.ServerConnectHook(data))
        return data

    async def clienthello(self, host: str, sni: str | None, port: int = 443):
        ctx = pcontext.Context(tflow.tclient_conn(), self.tctx.options)
        ctx.server = connection.Server(address=(host, port))
        data = tls_layer.ClientHelloData(ctx, types.SimpleNamespace(sni=sni))
        await self.hook(tls_layer.TlsClienthelloHook(data))
        return data

    # -- audit ------------------------------------------------------------------------

    def lines(self) -> list[dict]:
        raw = self.out.getvalue()
        assert raw == "" or raw.endswith("\n")
        return [json.loads(x) for x in raw.splitlines()]

    def decisions(self) -> list[dict]:
        return [x for x in self.lines() if "decision" in x]

    def last(self) -> dict:
        d = self.decisions()
        assert d, "no audit decision line written"
        return d[-1]


def _client():
    c = tflow.tclient_conn()
    c.peername = CLIENT
    return c


def connect_flow(host: str, port: int = 443, headers=None, client=None) -> http.HTTPFlow:
    f = http.HTTPFlow(client or _client(), connection.Server(address=None))
    now = time.time()
    f.request = http.Request(
        host,
        port,
        b"CONNECT",
        b"",
        f"{host}:{port}".encode(),
        b"",
        b"HTTP/1.1",
        http.Headers(
            [(b"Host", f"{host}:{port}".encode())] + [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        ),
        b"",
        None,
        now,
        now,
    )
    f.live = True
    return f


def request_flow(
    method: str,
    url: str,
    content: bytes | str = b"",
    headers: dict | list | None = None,
    host_header: str | None = None,
    http2: bool = False,
    authority: str | None = None,
) -> http.HTTPFlow:
    """A request as the firewall sees it (inside a tunnel, request.host is the tunnel's host).
    ``host_header`` overrides the Host header the client sent."""
    f = http.HTTPFlow(_client(), connection.Server(address=None))
    req = http.Request.make(method, url, content, {})
    if isinstance(headers, dict):
        headers = list(headers.items())
    for k, v in headers or []:
        req.headers.add(k, v)
    if http2:
        req.http_version = "HTTP/2.0"
        req.headers.pop("Host", None)
        req.authority = authority if authority is not None else req.host
    elif authority is not None:
        req.authority = authority
    if host_header is not None:
        req.headers["Host"] = host_header
    f.request = req
    f.live = True
    return f


def assert_decision_line(line: dict) -> None:
    assert tuple(line) == DECISION_KEYS, line
    assert line["decision"] in ("allow", "deny", "warn")
    assert "?" not in line["path"]


__all__ = [
    "ALNUM",
    "SAMPLES",
    "rnd",
    "BASE_POLICY",
    "CLIENT",
    "FakeDNS",
    "Harness",
    "PUBLIC",
    "assert_decision_line",
    "connect_flow",
    "make_policy",
    "meta",
    "policy_doc",
    "request_flow",
]
