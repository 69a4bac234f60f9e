"""bottle_tasks.pki: per-bottle CAs and leaves, and 0600 key files."""
from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

# cryptography >= 42 (pyproject requires it): real chain verification, no fallback.
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store, VerificationError

from bottle_tasks import pki
from bottle_tasks.private_files import write_private


@pytest.fixture(scope="module")
def ca():
    return pki.mint_ca("bottle test CA")


@pytest.fixture(scope="module")
def leaf(ca):
    return pki.mint_leaf(ca, ["api.example.test", "egress", "10.0.0.7", "::1"])


def ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def verify_server(ca: pki.KeyPair, leaf: pki.KeyPair, name: str) -> None:
    """Chain-verify `leaf` for `name` against `ca` alone; raises on failure."""
    try:
        subject = IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = DNSName(name)
    verifier = (
        PolicyBuilder()
        .store(Store([ca.cert]))
        .time(datetime.now(timezone.utc))
        .build_server_verifier(subject)
    )
    chain = verifier.verify(leaf.cert, [])
    assert chain[-1] == ca.cert


# --- the CA ---------------------------------------------------------------


def test_ca_is_ec_p256_self_signed(ca):
    cert = ca.cert
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert isinstance(ca.key.curve, ec.SECP256R1)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "bottle test CA"
    cert.verify_directly_issued_by(cert)  # self-signature holds


def test_ca_extensions(ca):
    cert = ca.cert
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length == 0
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    assert not ku.value.key_encipherment
    ski = ext(cert, x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


def test_validity_is_short_and_starts_in_the_past(ca, leaf):
    now = datetime.now(timezone.utc)
    for pair in (ca, leaf):
        cert = pair.cert
        assert now - timedelta(minutes=10) < cert.not_valid_before_utc < now
        assert cert.not_valid_after_utc - now <= timedelta(days=30, minutes=1)
        assert cert.not_valid_after_utc - now > timedelta(days=29)
    short = pki.mint_ca("short", days=2)
    assert short.not_valid_after - now < timedelta(days=2, minutes=1)


def test_leaf_never_outlives_its_ca():
    ca = pki.mint_ca("brief CA", days=1)
    leaf = pki.mint_leaf(ca, ["a.test"], days=365)
    assert leaf.cert.not_valid_after_utc <= ca.cert.not_valid_after_utc


@pytest.mark.parametrize("days", [0, -1, 1.5, True])
def test_bad_days_rejected(days):
    with pytest.raises(ValueError):
        pki.mint_ca("x", days=days)


# --- the leaf -------------------------------------------------------------


def test_leaf_san_dns_and_ip(leaf):
    san = ext(leaf.cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.example.test", "egress"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("::1"),
    ]


def test_leaf_extensions(ca, leaf):
    cert = leaf.cert
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(ca.cert, x509.SubjectKeyIdentifier).value.digest
    assert cert.issuer == ca.cert.subject
    assert isinstance(leaf.key.curve, ec.SECP256R1)


def test_leaf_hostnames_normalized_and_deduplicated(ca):
    pair = pki.mint_leaf(ca, ["Egress.", "egress", "[fd00::2]", "fd00::2"])
    san = ext(pair.cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["egress"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("fd00::2")]


@pytest.mark.parametrize("hostnames", [[], [""], ["  "]])
def test_leaf_needs_a_hostname(ca, hostnames):
    with pytest.raises(ValueError):
        pki.mint_leaf(ca, hostnames)


def test_leaf_hostnames_must_be_a_list(ca):
    with pytest.raises(TypeError):
        pki.mint_leaf(ca, "egress")


# --- verification ---------------------------------------------------------


@pytest.mark.parametrize("name", ["api.example.test", "egress", "10.0.0.7", "::1"])
def test_ca_verifies_its_leaf(ca, leaf, name):
    verify_server(ca, leaf, name)


def test_leaf_does_not_verify_for_another_name(ca, leaf):
    with pytest.raises(VerificationError):
        verify_server(ca, leaf, "other.example.test")


def test_leaf_from_another_ca_does_not_verify(ca):
    stranger = pki.mint_ca("bottle test CA")  # same name, different key
    foreign = pki.mint_leaf(stranger, ["api.example.test"])
    with pytest.raises(VerificationError):
        verify_server(ca, foreign, "api.example.test")
    verify_server(stranger, foreign, "api.example.test")  # its own CA does


def test_tls_handshake_with_openssl_strict(ca, leaf, tmp_path):
    """OpenSSL (through `ssl`, with Python 3.13's strict flag) accepts the pair."""
    ca_file, key_file, cert_file = tmp_path / "ca.pem", tmp_path / "key.pem", tmp_path / "cert.pem"
    ca_file.write_bytes(ca.cert_pem)
    leaf.write(key_file, cert_file)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    client_ctx.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)

    def handshake(host: str, client: ssl.SSLContext) -> None:
        left, right = socket.socketpair()
        errors: list[BaseException] = []

        def serve():
            try:
                with server_ctx.wrap_socket(right, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:  # the client gave up; expected on failure
                errors.append(exc)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with client.wrap_socket(left, server_hostname=host) as tls:
                assert tls.recv(2) == b"ok"
        finally:
            left.close()
            thread.join(5)

    handshake("api.example.test", client_ctx)
    handshake("10.0.0.7", client_ctx)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake("other.example.test", client_ctx)
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(pki.mint_ca("other").cert_pem)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake("api.example.test", ssl.create_default_context(cafile=str(other_ca)))


# --- KeyPair and loading --------------------------------------------------


def test_load_round_trip(ca):
    again = pki.load(ca.key_pem, ca.cert_pem)
    assert again == ca
    assert pki.load(ca.key_pem.decode(), ca.cert_pem.decode()) == ca
    assert again.fingerprint == ca.fingerprint and len(ca.fingerprint) == 64


def test_load_rejects_a_mismatched_key(ca, leaf):
    with pytest.raises(ValueError, match="does not belong"):
        pki.load(leaf.key_pem, ca.cert_pem)


def test_load_rejects_garbage(ca):
    with pytest.raises(ValueError):
        pki.load(b"not a key", ca.cert_pem)


def test_combined_pem_reads_back(ca, tmp_path):
    path = write_private(tmp_path / "mitmproxy-ca.pem", ca.combined_pem)
    assert ca.combined_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pki.read(path) == pki.load(ca.key_pem, ca.cert_pem)


def test_read_two_files(leaf, tmp_path):
    leaf.write(tmp_path / "k.pem", tmp_path / "c.pem")
    assert pki.read(tmp_path / "k.pem", tmp_path / "c.pem") == leaf


# --- write_private --------------------------------------------------------


@pytest.fixture
def permissive_umask():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_private_is_0600_under_permissive_umask(tmp_path, permissive_umask):
    path = write_private(tmp_path / "key.pem", b"secret")
    assert path.read_bytes() == b"secret"
    assert mode(path) == 0o600
    assert os.listdir(tmp_path) == ["key.pem"]  # no temp file left behind


def test_write_private_is_0600_under_restrictive_umask(tmp_path):
    old = os.umask(0o277)
    try:
        path = write_private(tmp_path / "key.pem", b"secret")
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_write_private_replaces_a_readable_file(tmp_path, permissive_umask):
    path = tmp_path / "key.pem"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    write_private(path, b"new")
    assert path.read_bytes() == b"new" and mode(path) == 0o600


def test_write_private_replaces_a_symlink_without_following_it(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    link = tmp_path / "key.pem"
    link.symlink_to(target)
    write_private(link, b"secret")
    assert not link.is_symlink() and link.read_bytes() == b"secret"
    assert target.read_bytes() == b"untouched"


def test_write_private_creates_exclusively_with_0600(tmp_path, monkeypatch, permissive_umask):
    """The file is born 0600 (os.open's mode, O_EXCL), not chmod-ed afterwards."""
    calls = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        calls.append((path, flags, mode))
        fd = real_open(path, flags, mode, *args, **kwargs)
        calls.append(("born-mode", stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    monkeypatch.setattr(os, "open", spy)
    write_private(tmp_path / "key.pem", b"x")
    (path, flags, mode_arg), (_, born) = calls
    assert flags & os.O_CREAT and flags & os.O_EXCL
    assert mode_arg == 0o600 and born == 0o600
    assert os.path.dirname(path) == str(tmp_path)  # same dir: the rename is atomic


def test_write_private_needs_the_parent(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_private(tmp_path / "missing" / "key.pem", b"x")
    assert not (tmp_path / "missing").exists()


def test_write_private_cleans_up_on_failure(tmp_path, monkeypatch):
    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_private(tmp_path / "key.pem", b"x")
    assert os.listdir(tmp_path) == []


def test_keypair_write_modes(ca, tmp_path, permissive_umask):
    ca.write(tmp_path / "ca.key", tmp_path / "ca.crt")
    assert mode(tmp_path / "ca.key") == 0o600 and mode(tmp_path / "ca.crt") == 0o600


def test_read_without_a_key_block(ca, tmp_path):
    path = tmp_path / "cert-only.pem"
    path.write_bytes(ca.cert_pem)
    with pytest.raises(ValueError, match="PRIVATE KEY"):
        pki.read(path)


def test_a_kept_ca_is_the_same_next_time_and_renewed_before_it_expires(tmp_path):
    first = pki.kept_ca(tmp_path / "ca", "kept CA")
    assert pki.kept_ca(tmp_path / "ca", "kept CA").cert_pem == first.cert_pem
    assert (tmp_path / "ca" / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    # fewer days left than `renew_within`: a new one, kept in its place
    renewed = pki.kept_ca(tmp_path / "ca", "kept CA", renew_within=100)
    assert renewed.cert_pem != first.cert_pem
    assert pki.read(tmp_path / "ca" / "ca-key.pem", tmp_path / "ca" / "ca-cert.pem").cert_pem == renewed.cert_pem


def test_a_key_pairs_repr_never_shows_the_private_key():
    pair = pki.mint_ca("repr test")
    assert b"PRIVATE KEY" in pair.key_pem and "PRIVATE" not in repr(pair) and "key_pem" not in repr(pair)
