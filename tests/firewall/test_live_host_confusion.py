"""What the upstream is told it is talking to, against the real launcher and real mitmproxy,
on loopback: the TLS server name the upstream receives (recorded on its side) must be the
tunnel's host the policy checked, never a name the agent chose in its own ClientHello."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from test_live import TIMEOUT, LiveFirewall, make_ca, pem_cert, pem_key
from test_live_hardening import connect_tunnel, read_until_closed

# The name the agent puts in its ClientHello: another service behind the same address (an
# SNI-routing load balancer would hand the connection to it, whatever the Host header says).
AGENT_SNI = "other-service.example"


def make_leaf(ca_key, ca_cert, ip: str | None, *names: str):
    """A certificate valid for the address `ip` (None: for no address) and for `names`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [*([x509.IPAddress(ipaddress.ip_address(ip))] if ip else []), *map(x509.DNSName, names)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


class SniUpstream:
    """An HTTPS upstream on 127.0.0.1 that records the server name of every ClientHello it
    receives (None: none was sent) and the Host of every request."""

    def __init__(self, tmp, ca, ip: str | None, *names: str):
        """`ca`: (key, certificate) of the CA its certificate comes from; `ip`, `names`: what
        that certificate is valid for."""
        ca_key, ca_cert = ca
        key, cert = make_leaf(ca_key, ca_cert, ip, *names)
        self.ca_pem = tmp / "sni-upstream-ca.pem"
        self.ca_pem.write_bytes(pem_cert(ca_cert))
        chain = tmp / "sni-upstream.pem"
        chain.write_bytes(pem_cert(cert) + pem_key(key))
        self.server_names: list[str | None] = []
        self.hosts: list[str] = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(chain)
        self.ctx.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(TIMEOUT)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"host:"):
                        self.hosts.append(line[5:].strip().decode())
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def upstream_ca():
    """One CA for both upstreams: the firewall trusts one bundle."""
    return make_ca("bottle test SNI upstream CA")


@pytest.fixture(scope="module")
def sni_upstream(tmp_path_factory, upstream_ca):
    """Valid for the address, the tunnel's name and the agent's name: the firewall's certificate
    check passes either way, so only the name sent tells them apart."""
    up = SniUpstream(tmp_path_factory.mktemp("sni-upstream"), upstream_ca, "127.0.0.1", "localhost", AGENT_SNI)
    yield up
    up.close()


@pytest.fixture(scope="module")
def name_only_upstream(tmp_path_factory, upstream_ca):
    """Valid for the agent's name only, not for its own address."""
    up = SniUpstream(tmp_path_factory.mktemp("name-only-upstream"), upstream_ca, None, AGENT_SNI)
    yield up
    up.close()


@pytest.fixture(scope="module")
def fw(tmp_path_factory, sni_upstream, name_only_upstream):
    port, other = sni_upstream.port, name_only_upstream.port
    f = LiveFirewall(tmp_path_factory.mktemp("fw"), sni_upstream,
                     allow=[f"127.0.0.1:{port}", f"localhost:{port}", f"127.0.0.1:{other}"])
    yield f
    f.close()


def get_through_tunnel(fw, host: str, port: int, server_name: str) -> bytes:
    """CONNECT host:port, TLS to the firewall naming `server_name`, one GET; the whole answer."""
    tunnel = connect_tunnel(fw, host, port)
    with fw.tls_context().wrap_socket(tunnel, server_hostname=server_name) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        return read_until_closed(tls)


@pytest.mark.parametrize(("tunnel_host", "upstream_name"), [("127.0.0.1", None), ("localhost", "localhost")])
def test_the_upstream_is_told_the_tunnels_host_never_the_agents_server_name(fw, sni_upstream, tunnel_host,
                                                                              upstream_name):
    """CONNECT to an allowed host, then a ClientHello naming another one: the upstream is offered
    the tunnel's host (none at all for an IP literal: an address is not a TLS server name), and
    the firewall checks its certificate for that, not for the agent's name."""
    before = len(sni_upstream.server_names)
    answer = get_through_tunnel(fw, tunnel_host, sni_upstream.port, AGENT_SNI)
    names = sni_upstream.server_names[before:]
    assert names, "no ClientHello reached the upstream"
    assert AGENT_SNI not in names, f"the upstream was told it serves {AGENT_SNI!r}: {names!r}"
    assert names == [upstream_name] * len(names)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nok\n"), answer
    assert sni_upstream.hosts[-1] == f"{tunnel_host}:{sni_upstream.port}"


def test_an_address_upstream_must_prove_the_address_not_the_agents_name(fw, name_only_upstream):
    """The certificate of an upstream reached by address is checked for that address: one valid
    only for the name the agent put in its ClientHello is refused before any request is sent."""
    n = len(fw.lines)
    answer = get_through_tunnel(fw, "127.0.0.1", name_only_upstream.port, AGENT_SNI)
    assert name_only_upstream.server_names, "no ClientHello reached the upstream"
    assert name_only_upstream.hosts == [], "a request reached an upstream whose certificate is not for its address"
    assert not answer.startswith(b"HTTP/1.1 200"), answer
    fw.wait_for(lambda r: r.get("method") == "GET" and r.get("port") == name_only_upstream.port, "GET line", since=n)
