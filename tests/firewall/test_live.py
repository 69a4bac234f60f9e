"""The real launcher (python -m firewall.main) with real mitmproxy, on loopback only.

An HTTPS upstream on 127.0.0.1 (certificate from a test CA minted here), the
firewall on another loopback port, and http.client as the agent. Checks what the
hook-level tests cannot: the launcher, stdout carrying only JSON lines, the pinned
dial through mitmproxy's real connection code, unbuffered SSE, SIGHUP, SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import http.client
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fwtest import policy_doc

AWS = "AKIAIOSFODNN7EXAMPLE"
TIMEOUT = 15


# -- PKI ---------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca_key, ca_cert, host: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_cert(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# -- upstream --------------------------------------------------------------------------------


class Upstream:
    def __init__(self, tmp: Path):
        ca_key, ca_cert = make_ca("bottle test upstream CA")
        key, cert = make_leaf(ca_key, ca_cert, "localhost")
        self.ca_pem = tmp / "upstream-ca.pem"
        self.ca_pem.write_bytes(pem_cert(ca_cert))
        self.cert_file = tmp / "up.pem"  # certificate and key for "localhost", from the CA above
        self.cert_file.write_bytes(pem_cert(cert) + pem_key(key))
        self.sse_release = threading.Event()
        self.seen_hosts: list[str] = []
        # (method, path, headers, body length) of every request that reached the upstream
        self.requests: list[tuple[str, str, dict, int]] = []
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                upstream.requests.append((self.command, self.path, dict(self.headers), len(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                upstream.seen_hosts.append(self.headers.get("Host", ""))
                upstream.requests.append((self.command, self.path, dict(self.headers), 0))
                if self.path.startswith("/sse"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Cache-Control", "no-cache")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b"data: first\n\n")
                    self.wfile.flush()
                    upstream.sse_release.wait(TIMEOUT)
                    self.wfile.write(b"data: second\n\n")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                body = b"hello from upstream\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file)
        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the firewall hanging up on us (refusals, SSE end) is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.sse_release.set()
        self.server.shutdown()
        self.server.server_close()


# -- firewall ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveFirewall:
    def __init__(self, tmp: Path, upstream: Upstream, stdout=subprocess.PIPE, **policy_overrides):
        """`stdout`: where the audit log goes (piped to `lines` unless given)."""
        self.tmp = tmp
        ca_key, ca_cert = make_ca("bottle test firewall CA")
        self.ca_cert_pem = tmp / "firewall-ca-cert.pem"
        self.ca_cert_pem.write_bytes(pem_cert(ca_cert))
        confdir = tmp / "confdir"
        confdir.mkdir()
        (confdir / "mitmproxy-ca.pem").write_bytes(pem_key(ca_key) + pem_cert(ca_cert))
        self.policy_path = tmp / "policy.json"
        settings = {
            "allow": ["localhost", f"localhost:{upstream.port}", "registry.npmjs.org"],
            "passthrough": [],
            "allowed_cidrs": ["127.0.0.0/8", "::1/128"],
        }
        doc = policy_doc(**{**settings, **policy_overrides})
        self.write_policy(doc)
        self.port = free_port()
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "firewall.main",
                "--policy", str(self.policy_path),
                "--confdir", str(confdir),
                "--upstream-ca", str(upstream.ca_pem),
                "--listen-host", "127.0.0.1",
                "--listen-port", str(self.port),
            ],  # fmt: skip
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": "/opt/bottle"},
        )
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stderr, self._stderr), daemon=True).start()
        if stdout == subprocess.PIPE:
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
            self.wait_for(lambda x: x.get("event") == "ready", what="ready line")

    @staticmethod
    def _pump(stream, sink):
        for line in stream:
            sink.append(line)

    def write_policy(self, doc) -> None:
        tmp = self.policy_path.with_suffix(".new")
        tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        os.replace(tmp, self.policy_path)

    def reload(self, doc) -> dict:
        """Write a new policy, SIGHUP the firewall, and return its verdict (the policy-reload line)."""
        n = len(self.lines)
        self.write_policy(doc)
        self.proc.send_signal(signal.SIGHUP)
        return self.wait_for(lambda r: r.get("event") == "policy-reload", "reload line", since=n)

    def records(self) -> list[dict]:
        return [json.loads(x) for x in list(self.lines)]

    def wait_for(self, pred, what: str, since: int = 0) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for rec in self.records()[since:]:
                if pred(rec):
                    return rec
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {what}; stdout={self.lines!r} stderr={''.join(self._stderr)[-3000:]}")

    def stderr(self) -> str:
        return "".join(self._stderr)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)

    # -- clients --------------------------------------------------------------------------

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert_pem))

    def tunnel(self, host: str, port: int, context: ssl.SSLContext | None = None) -> http.client.HTTPSConnection:
        """An HTTPS connection to host:port through the firewall (trusting its CA unless `context`)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=TIMEOUT,
                                           context=context or self.tls_context())
        conn.set_tunnel(host, port)
        return conn

    def https(self, host: str, port: int, path: str, headers: dict | None = None):
        conn = self.tunnel(host, port)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode(), resp.headers
        finally:
            conn.close()

    def plain(self, url: str, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            conn.request("GET", url, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode(), resp.headers
        finally:
            conn.close()


@pytest.fixture(scope="module")
def fw(tmp_path_factory, upstream):
    f = LiveFirewall(tmp_path_factory.mktemp("fw"), upstream)
    yield f
    f.close()


def test_ready_line_and_stdout_only_json(fw):
    ready = fw.records()[0]
    assert ready["event"] == "ready" and ready["bottle"] == "demo"
    assert f"127.0.0.1:{fw.port}" in ready["listen"]
    assert ready["mitmproxy"].startswith("12.")


def test_allowed_https_through_intercepting_tunnel(fw, upstream):
    status, body, _ = fw.https("localhost", upstream.port, "/hello?x=1")
    assert (status, body) == (200, "hello from upstream\n")
    rec = fw.wait_for(lambda r: r.get("method") == "GET" and r.get("path") == "/hello", "GET audit line")
    assert rec["decision"] == "allow" and rec["status"] == 200 and rec["bytes_in"] == len(body)
    assert rec["client"] == "127.0.0.1" and rec["host"] == "localhost"
    connect = fw.wait_for(lambda r: r.get("method") == "CONNECT", "CONNECT audit line")
    assert connect["decision"] == "allow"
    # intercepted: a client that trusts only the upstream's CA does not accept the firewall's certificate
    ctx = ssl.create_default_context(cafile=str(upstream.ca_pem))
    conn = fw.tunnel("localhost", upstream.port, ctx)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/hello")
    conn.close()


def test_not_allowlisted_connect_gets_403(fw):
    with pytest.raises(OSError, match="403"):
        fw.https("evil.example", 443, "/")
    rec = fw.wait_for(lambda r: r.get("host") == "evil.example", "deny line")
    assert rec["decision"] == "deny" and rec["rule"] == "not-allowlisted" and rec["status"] == 403


def test_plain_http_denial_explains_how_to_allow(fw):
    status, body, headers = fw.plain("http://evil.example/x")
    assert status == 403
    assert "inv allow evil.example" in body
    assert headers["x-bottle-firewall"] == "deny; rule=not-allowlisted"


def test_metadata_address_refused(fw):
    status, body, _ = fw.plain("http://169.254.169.254/latest/meta-data/")
    assert status == 403 and "ssrf" in body
    with pytest.raises(OSError, match="403"):
        fw.https("169.254.169.254", 443, "/")


def test_other_host_inside_allowed_tunnel_refused(fw, upstream):
    before = len(upstream.seen_hosts)
    status, body, _ = fw.https("localhost", upstream.port, "/hello", {"Host": "registry.npmjs.org"})
    assert status == 403 and "host-mismatch" in body
    assert len(upstream.seen_hosts) == before, "the request must not reach the upstream"


def test_dlp_refuses_secret_and_never_logs_it(fw, upstream):
    status, body, _ = fw.https("localhost", upstream.port, f"/hello?key={AWS}")
    assert status == 403 and "dlp:aws-access-key-id" in body and AWS not in body
    status, body, _ = fw.https("localhost", upstream.port, "/hello", {"X-Creds": AWS})
    assert status == 403 and "dlp:aws-access-key-id" in body
    fw.wait_for(lambda r: r.get("rule") == "dlp:aws-access-key-id", "dlp line")
    assert AWS not in "".join(fw.lines)
    assert AWS not in fw.stderr()


def post(fw, upstream, path: str, body: bytes) -> tuple[int, str]:
    conn = fw.tunnel("localhost", upstream.port)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_a_json_body_with_a_lone_surrogate_escape_is_scanned_not_refused_as_a_failure(fw, upstream):
    # JSON.stringify writes a lone UTF-16 surrogate as "\ud800"; undone, RE2 (the seed-phrase
    # rule) could not take the text, and the request was refused as a hook failure.
    words = "the quick brown fox jumps over the lazy dog and then some more words"
    status, body = post(fw, upstream, "/surrogate", ('{"text": "\\ud800 ' + words + '"}').encode())
    assert status == 200, body
    assert any(r[:2] == ("POST", "/surrogate") for r in upstream.requests), "it never reached the upstream"
    status, body = post(fw, upstream, "/surrogate-secret", ('{"text": "\\ud800 ' + words + '", "k": "' + AWS + '"}').encode())
    assert status == 403 and "dlp:aws-access-key-id" in body, body
    assert not any(r[1] == "/surrogate-secret" for r in upstream.requests)


def test_keep_alive_requests_are_each_checked_and_audited(fw, upstream):
    """Requests that share one tunnel (and one upstream connection) are each re-checked (host,
    DLP) and each get their own audit line."""
    n0 = len(fw.lines)
    seen = len(upstream.seen_hosts)
    conn = fw.tunnel("localhost", upstream.port)

    def get(path, headers=None):
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()

    try:
        assert get("/ka/1") == (200, "hello from upstream\n")
        tunnel = conn.sock
        status, body = get("/ka/2", {"Host": "registry.npmjs.org"})
        assert status == 403 and "host-mismatch" in body
        status, body = get("/ka/3", {"X-Creds": AWS})
        assert status == 403 and "dlp:aws-access-key-id" in body
        assert get("/ka/4") == (200, "hello from upstream\n")
        assert conn.sock is tunnel, "all four went through the same tunnel"
    finally:
        conn.close()
    assert len(upstream.seen_hosts) == seen + 2, "only the two allowed requests reach the upstream"
    fw.wait_for(lambda r: r.get("path") == "/ka/4", "last keep-alive line", since=n0)
    lines = [r for r in fw.records()[n0:] if r.get("path", "").startswith("/ka/")]
    assert [(r["path"], r["decision"], r["rule"]) for r in lines] == [
        ("/ka/1", "allow", "allowlist"),
        ("/ka/2", "deny", "host-mismatch"),
        ("/ka/3", "deny", "dlp:aws-access-key-id"),
        ("/ka/4", "allow", "allowlist"),
    ]
    assert len([r for r in fw.records()[n0:] if r.get("method") == "CONNECT"]) == 1


def test_mitm_it_is_not_answered_locally(fw):
    """mitmproxy's onboarding app is not loaded: mitm.it is a host like any other, and not allowed."""
    status, _, headers = fw.plain("http://mitm.it/")
    assert status == 403 and headers["x-bottle-firewall"] == "deny; rule=not-allowlisted"


def test_event_stream_is_not_buffered(fw, upstream):
    upstream.sse_release.clear()
    conn = fw.tunnel("localhost", upstream.port)
    try:
        conn.request("GET", "/sse")
        resp = conn.getresponse()
        assert resp.status == 200
        # the upstream holds the stream open until we release it: the first event must arrive first
        first = resp.fp.readline() + resp.fp.readline()
        assert first == b"data: first\n\n"
        upstream.sse_release.set()
        rest = resp.read()
        assert b"data: second" in rest
    finally:
        upstream.sse_release.set()
        conn.close()


def test_every_stdout_line_is_a_json_object(fw):
    for line in list(fw.lines):
        assert line.endswith("\n")
        assert isinstance(json.loads(line), dict)


def test_no_hook_failed(fw):
    """Nothing above should have gone through the fail-closed path."""
    assert "fail closed" not in fw.stderr(), fw.stderr()
    assert "Traceback" not in fw.stderr(), fw.stderr()


def test_sighup_reload_and_keep_old_on_invalid(tmp_path, upstream):
    fw = LiveFirewall(tmp_path, upstream)
    try:
        assert fw.https("localhost", upstream.port, "/hello")[0] == 200
        rec = fw.reload('{"bottle": "demo", "allow": ["localhost"], "nope": 1}')
        assert rec["ok"] is False and "nope" in rec["reason"]
        assert fw.https("localhost", upstream.port, "/hello")[0] == 200  # old policy still in force
        rec = fw.reload(policy_doc(allow=["registry.npmjs.org"], passthrough=[], allowed_cidrs=["127.0.0.0/8"]))
        assert rec["ok"] is True
        with pytest.raises(OSError, match="403"):
            fw.https("localhost", upstream.port, "/hello")
    finally:
        fw.close()
    assert fw.proc.returncode == 0, fw.stderr()


def test_a_firewall_that_cannot_write_its_audit_log_stops_rather_than_serve(tmp_path, upstream):
    """Its stdout's reader is gone: the first line (ready) cannot be written, and no request may
    pass that the operator will never see. Lines are written once per event-loop turn, outside
    any hook, so the firewall itself must stop, and say why."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        fw = LiveFirewall(tmp_path, upstream, stdout=write_end)
    finally:
        os.close(write_end)
    try:
        assert fw.proc.wait(TIMEOUT) == 74
    finally:
        fw.close()
    time.sleep(0.1)  # the stderr pump's last line
    assert "the audit log) cannot be written" in fw.stderr() and "BrokenPipeError" in fw.stderr()
    with socket.socket() as s, pytest.raises(OSError):  # nothing listens any more
        s.connect(("127.0.0.1", fw.port))


def test_passthrough_host_is_not_intercepted(tmp_path, upstream):
    fw = LiveFirewall(tmp_path, upstream, passthrough=["localhost"])
    try:
        # the client trusts only the upstream's own CA: this works only if the firewall does not
        # intercept, i.e. the upstream's certificate reaches the client untouched
        ctx = ssl.create_default_context(cafile=str(upstream.ca_pem))
        conn = fw.tunnel("localhost", upstream.port, ctx)
        conn.request("GET", "/hello")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"hello from upstream\n")
        conn.close()
        rec = fw.wait_for(lambda r: r.get("method") == "CONNECT", "CONNECT line")
        assert rec["rule"] == "passthrough"
    finally:
        fw.close()


def test_a_passthrough_tunnel_is_closed_when_a_reload_ends_its_passthrough(tmp_path, upstream):
    """Passed through, a tunnel is raw TLS the firewall cannot read (no DLP). The operator takes
    the host out of `passthrough` (it stays allowed): the open tunnel must close, or it stays
    uninspected until it goes idle. It was never tracked as raw (mitmproxy's ignored TLS
    connection fires no tcp_start), so the reload closed nothing."""
    fw = LiveFirewall(tmp_path, upstream, passthrough=["localhost"])
    try:
        conn = fw.tunnel("localhost", upstream.port, ssl.create_default_context(cafile=str(upstream.ca_pem)))
        conn.request("GET", "/before-the-reload")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"hello from upstream\n")  # the upstream's own certificate
        rec = fw.reload(policy_doc(allow=["localhost", f"localhost:{upstream.port}"], passthrough=[],
                                   allowed_cidrs=["127.0.0.0/8", "::1/128"]))
        assert rec["ok"] is True and rec["closed"] == 1, rec
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.request("GET", "/after-the-reload")
            conn.getresponse().read()
        conn.close()
        assert [r[1] for r in upstream.requests if r[1].endswith("-the-reload")] == ["/before-the-reload"]
    finally:
        fw.close()


def test_bad_policy_fails_startup(tmp_path, upstream):
    policy = tmp_path / "policy.json"
    policy.write_text('{"bottle": "demo"}')
    confdir = tmp_path / "c"
    confdir.mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "firewall.main", "--policy", str(policy), "--confdir", str(confdir),
         "--upstream-ca", str(upstream.ca_pem), "--listen-port", str(free_port())],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": "/opt/bottle"},
    )  # fmt: skip
    assert r.returncode == 78
    assert "allow: is required" in r.stderr
    assert r.stdout == ""
