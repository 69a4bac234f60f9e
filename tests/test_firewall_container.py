"""Smoke test of the firewall sidecar as the controller runs it, with plain `docker` calls.

    client (curl) ──internal net──> firewall:3128 ──egress net──> api.upstream.test:8443
                                                                 (HTTPS, cert from a test CA)

Networks, containers and images are labelled bottle.test=1 and removed afterwards.
Traffic goes only to containers started here: every refused destination is refused
before the firewall resolves or dials it.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _helper():
    name = "bottle_tests_firewall_run_in_image"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent / "firewall" / "run_in_image.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


helper = _helper()
docker = helper.docker
LABEL = helper.LABEL
CLIENT_BASE = os.environ.get("BOTTLE_TEST_CLIENT_BASE_IMAGE", "debian:bookworm-slim")
CURL_DOCKERFILE = Path(__file__).resolve().parent / "images" / "curl.Dockerfile"
UPSTREAM = "api.upstream.test"
AWS = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key id
PROXY = "http://firewall:3128"

UPSTREAM_SERVER = r'''
import http.server, ssl, sys

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        body = b"hello from upstream\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"upstream saw {self.command} {self.path} host={self.headers.get('Host')}", flush=True)

    do_GET = do_POST = _reply

    def log_message(self, *a):
        pass

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/srv/upstream.pem")
srv = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("upstream ready", flush=True)
srv.serve_forever()
'''


# -- PKI (the controller's `ca` step does the same with bottle_tasks.pki) -------------------------


def _ca(cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(ca_key, ca_cert, host: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


# -- the environment ---------------------------------------------------------------------------------


def _ok(r, what: str) -> str:
    assert r.returncode == 0, f"{what} failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout.strip()


class Env:
    def __init__(self):
        self.id = uuid.uuid4().hex[:8]
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.images: list[str] = []
        self.stage = Path(tempfile.mkdtemp(prefix="bottle-fwtest-"))
        self.stage.chmod(0o700)
        self.fw = self.client = self.upstream = ""

    def name(self, role: str) -> str:
        return f"bottle-test-{self.id}-{role}"

    def network(self, role: str, *flags: str) -> str:
        name = self.name(role)
        _ok(docker("network", "create", "--label", LABEL, *flags, name), f"network create {name}")
        self.networks.append(name)
        return name

    def run(self, role: str, *args: str) -> str:
        name = self.name(role)
        self.containers.append(name)
        _ok(docker("run", "-d", "--init", "--name", name, "--label", LABEL, *args, timeout=120), f"docker run {name}")
        return name

    def logs(self, container: str) -> tuple[str, str]:
        r = docker("logs", container, timeout=60)
        return r.stdout, r.stderr

    def cleanup(self) -> None:
        for c in reversed(self.containers):
            docker("rm", "-f", c, timeout=60)
        for n in reversed(self.networks):
            docker("network", "rm", n, timeout=60)
        helper.remove_images(*self.images)
        shutil.rmtree(self.stage, ignore_errors=True)


def _wait_for_log(env: Env, container: str, needle: str, timeout: float = 60, since: int = 0) -> str:
    deadline = time.monotonic() + timeout
    out = err = ""
    while time.monotonic() < deadline:
        out, err = env.logs(container)
        if needle in out[since:]:
            return out
        state = docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip()
        if state == "false":
            break
        time.sleep(0.25)
    raise AssertionError(f"{container}: no {needle!r} in its log\n--- stdout ---\n{out}\n--- stderr ---\n{err}")


def _policy(egress_cidr: str, allow=(UPSTREAM,)) -> str:
    return json.dumps(
        {
            "bottle": "smoke",
            "allow": list(allow),
            "passthrough": [],
            "allowed_cidrs": [egress_cidr],
            "idle_timeout": 900,
            "dlp": {
                "action": "block",
                "hosts": {},
                "patterns": [],
                "max_body_bytes": 1048576,
                "exempt_headers": {},
            },
        }
    )


@pytest.fixture(scope="module")
def env():
    helper.require_docker((helper.BASE_IMAGE, CLIENT_BASE))
    e = Env()
    try:
        image = helper.firewall_image()
        curl_image = f"bottle-test/curl:{e.id}"
        with tempfile.TemporaryDirectory() as ctx:
            r = docker(
                "build", "--force-rm", "--label", LABEL, "--build-arg", f"BASE_IMAGE={CLIENT_BASE}",
                "-f", str(CURL_DOCKERFILE), "-t", curl_image, ctx, timeout=helper.BUILD_TIMEOUT,
            )  # fmt: skip
        e.images.append(curl_image)
        _ok(r, "docker build of the curl image")

        internal = e.network("internal", "--internal")
        egress = e.network("egress")
        e.egress_cidr = _ok(
            docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", egress), "network inspect"
        )

        # stage dir, as the controller's `ca` + `proxy` steps leave it: files 0600, owned by --user
        fw_ca_key, fw_ca_cert = _ca("bottle smoke firewall CA")
        up_ca_key, up_ca_cert = _ca("bottle smoke upstream CA")
        up_key, up_cert = _leaf(up_ca_key, up_ca_cert, UPSTREAM)
        fwdir, updir, cldir = (e.stage / d for d in ("firewall", "upstream", "client"))
        for d in (fwdir, updir, cldir):
            d.mkdir(mode=0o700)
        e.policy_path = fwdir / "policy.json"
        _write(e.policy_path, _policy(e.egress_cidr))
        _write(fwdir / "mitmproxy-ca.pem", _key_pem(fw_ca_key) + _cert_pem(fw_ca_cert))
        _write(fwdir / "extra-ca.pem", _cert_pem(up_ca_cert))  # the firewall must trust the test upstream
        _write(updir / "upstream.pem", _cert_pem(up_cert) + _key_pem(up_key))
        _write(updir / "server.py", UPSTREAM_SERVER)
        _write(cldir / "firewall-ca.pem", _cert_pem(fw_ca_cert), 0o644)
        cldir.chmod(0o755)
        user = f"{os.getuid()}:{os.getgid()}"

        e.upstream = e.run(
            "upstream", "--user", user, "--network", egress, "--network-alias", UPSTREAM,
            "-v", f"{updir}:/srv:ro", "--entrypoint", "/opt/bottle/venv/bin/python", image, "/srv/server.py",
        )  # fmt: skip
        # exactly the controller's flags
        e.fw = e.run(
            "firewall", "--user", user, "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--read-only", "--tmpfs", "/tmp", "-v", f"{fwdir}:/etc/bottle:ro", "--network", egress, image,
        )  # fmt: skip
        _ok(docker("network", "connect", "--alias", "firewall", internal, e.fw), "network connect")
        e.client = e.run("client", "--network", internal, "-v", f"{cldir}:/ca:ro", curl_image, "sleep", "infinity")
        _wait_for_log(e, e.upstream, "upstream ready")
        _wait_for_log(e, e.fw, '"event":"ready"')
        yield e
    finally:
        e.cleanup()


def curl(env: Env, *args: str) -> tuple[int, str, str]:
    r = docker(
        "exec", env.client, "curl", "-sS", "--max-time", "20", "--proxy", PROXY,
        "--cacert", "/ca/firewall-ca.pem", *args, timeout=60,
    )  # fmt: skip
    return r.returncode, r.stdout, r.stderr


def upstream_log(env: Env) -> str:
    return env.logs(env.upstream)[0]


def test_allowed_host_over_https(env):
    code, out, err = curl(env, f"https://{UPSTREAM}:8443/hello")
    assert code == 0, err
    assert out == "hello from upstream\n"


def test_not_allowlisted_host_gets_403(env):
    code, out, err = curl(env, "-o", "/dev/null", "-w", "%{http_connect}", "https://blocked.example.test/")
    assert out == "403", (code, out, err)
    code, out, err = curl(env, "-w", "\n%{http_code}", "http://blocked.example.test/x")
    assert out.endswith("\n403"), (out, err)
    assert "inv allow blocked.example.test" in out


def test_metadata_address_refused(env):
    code, out, err = curl(env, "-w", "\n%{http_code}", "http://169.254.169.254/latest/meta-data/")
    assert out.endswith("\n403") and "[ssrf]" in out, (out, err)
    code, out, err = curl(env, "-o", "/dev/null", "-w", "%{http_connect}", "https://169.254.169.254/")
    assert out == "403", (code, out, err)


@pytest.mark.parametrize(
    "where, args",
    [
        ("query", [f"https://{UPSTREAM}:8443/hello?key={AWS}"]),
        ("header", ["-H", f"X-Creds: {AWS}", f"https://{UPSTREAM}:8443/hello"]),
        ("body", ["-H", "Content-Type: application/json", "--data", json.dumps({"aws": {"id": AWS}}),
                  f"https://{UPSTREAM}:8443/submit"]),
    ],
)  # fmt: skip
def test_aws_key_refused(env, where, args):
    code, out, err = curl(env, "-w", "\n%{http_code}", *args)
    assert out.endswith("\n403"), (where, out, err)
    assert "dlp:aws-access-key-id" in out and AWS not in out
    assert AWS not in upstream_log(env)


def test_other_host_inside_allowed_tunnel_refused(env):
    code, out, err = curl(env, "-w", "\n%{http_code}", "-H", "Host: other.upstream.test", f"https://{UPSTREAM}:8443/hello")
    assert out.endswith("\n403") and "host-mismatch" in out, (out, err)
    assert "other.upstream.test" not in upstream_log(env)


def test_audit_log_is_json_lines_without_secrets(env):
    out, err = env.logs(env.fw)
    records = [json.loads(line) for line in out.splitlines()]
    decisions = [r for r in records if "decision" in r]
    assert records[0]["event"] == "ready"
    rules = {r["rule"] for r in decisions if r["decision"] == "deny"}
    assert {"not-allowlisted", "ssrf", "dlp:aws-access-key-id", "host-mismatch"} <= rules, rules
    assert any(r["decision"] == "allow" and r["host"] == UPSTREAM and r["status"] == 200 for r in decisions)
    assert AWS not in out and AWS not in err
    assert "Traceback" not in err and "Warning:" not in err, err


def test_healthcheck_script(env):
    r = docker("exec", env.fw, "/opt/bottle/venv/bin/python", "/opt/bottle/firewall/healthcheck.py")
    assert r.returncode == 0, r.stderr


def _reload_events(text: str) -> list[dict]:
    return [r for r in map(json.loads, text.splitlines()) if r.get("event") == "policy-reload"]


def test_sighup_reload(env):
    n = len(env.logs(env.fw)[0])
    tmp = env.policy_path.with_name("policy.json.new")
    _write(tmp, '{"bottle": "smoke", "allow": []')  # truncated: invalid
    os.replace(tmp, env.policy_path)
    _ok(docker("kill", "-s", "HUP", env.fw), "docker kill -s HUP")
    out = _wait_for_log(env, env.fw, '"event":"policy-reload"', since=n)
    assert _reload_events(out[n:])[-1]["ok"] is False
    code, body, err = curl(env, f"https://{UPSTREAM}:8443/hello")
    assert body == "hello from upstream\n", "the old policy must stay in force"

    n = len(out)
    _write(tmp, _policy(env.egress_cidr, allow=["registry.npmjs.org"]))
    os.replace(tmp, env.policy_path)
    _ok(docker("kill", "-s", "HUP", env.fw), "docker kill -s HUP")
    out = _wait_for_log(env, env.fw, '"event":"policy-reload"', since=n)
    assert _reload_events(out[n:])[-1]["ok"] is True
    code, body, err = curl(env, "-o", "/dev/null", "-w", "%{http_connect}", f"https://{UPSTREAM}:8443/hello")
    assert body == "403"


def test_stops_fast(env):
    t0 = time.monotonic()
    _ok(docker("stop", env.fw, timeout=60), "docker stop")
    assert time.monotonic() - t0 < 8
    assert docker("inspect", "-f", "{{.State.ExitCode}}", env.fw).stdout.strip() == "0"
