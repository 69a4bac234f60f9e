"""Per-bottle certificate authorities, minted in-process with `cryptography`.

Every bottle gets its own short-lived CAs (EC P-256): nothing is shared between
bottles, nothing outlives them by long, and no key ever goes through a
subprocess's argv or into an image. `write_private` puts key material on disk
with mode 0600 from the first byte.

Certificates follow the profile that strict verifiers insist on (Python 3.13's
default `VERIFY_X509_STRICT`, cryptography's own `x509.verification`):
critical BasicConstraints and KeyUsage on the CA, SubjectKeyIdentifier on both,
AuthorityKeyIdentifier on the leaf, SAN + serverAuth on the leaf.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .private_files import write_private

# Certificates start this far in the past, so a container whose clock lags the
# controller's a little still accepts them.
CLOCK_SKEW = timedelta(minutes=5)
ORGANIZATION = "bottle"


@dataclass(frozen=True)
class KeyPair:
    """A private key and its certificate, both PEM (the key unencrypted PKCS#8)."""

    key_pem: bytes = field(repr=False)  # never in a log line, a traceback's locals or an f-string
    cert_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):  # bottle mints only P-256 keys
            raise ValueError(f"expected an elliptic-curve key, got {type(key).__name__}")
        return key

    @property
    def combined_pem(self) -> bytes:
        """Key then certificate in one PEM: mitmproxy's `mitmproxy-ca.pem` format."""
        return self.key_pem + self.cert_pem

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate's DER, lowercase hex."""
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def not_valid_after(self) -> datetime:
        return self.cert.not_valid_after_utc

    def write(self, key_path: str | os.PathLike, cert_path: str | os.PathLike) -> None:
        """Write the key and the certificate, each 0600 (see `write_private`)."""
        write_private(key_path, self.key_pem)
        write_private(cert_path, self.cert_pem)


def load(key_pem: bytes, cert_pem: bytes) -> KeyPair:
    """A KeyPair from PEM bytes; raises ValueError if unparsable or the key doesn't match."""
    key_pem, cert_pem = _as_bytes(key_pem), _as_bytes(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    cert = x509.load_pem_x509_certificate(cert_pem)
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise ValueError("the private key does not belong to the certificate")
    return KeyPair(key_pem=key_pem, cert_pem=cert_pem)


def read(key_path: str | os.PathLike, cert_path: str | os.PathLike | None = None) -> KeyPair:
    """Load a KeyPair from files; with one path, that file holds key and certificate."""
    key_data = Path(key_path).read_bytes()
    cert_data = key_data if cert_path is None else Path(cert_path).read_bytes()
    return load(_pem_block(key_data, b"PRIVATE KEY"), _pem_block(cert_data, b"CERTIFICATE"))


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """digitalSignature always; keyCertSign and cRLSign for a CA only."""
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=signs_certificates,
        crl_sign=signs_certificates, encipher_only=False, decipher_only=False)


def mint_ca(common_name: str, days: int = 30) -> KeyPair:
    """A self-signed CA that may sign leaves only (pathlen 0), valid `days` days."""
    _check_days(days)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    not_before = datetime.now(timezone.utc) - CLOCK_SKEW
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + CLOCK_SKEW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key_pem=_key_pem(key), cert_pem=cert.public_bytes(serialization.Encoding.PEM))


def kept_ca(directory: str | os.PathLike, common_name: str, days: int = 90, renew_within: int = 7) -> KeyPair:
    """A CA kept in `directory` (ca-key.pem, ca-cert.pem; 0600) from one run to the next, and
    minted anew when it has fewer than `renew_within` days left. For the tests' and the
    bench's stand-in upstreams: the bundle that trusts it is an input of every image's tag,
    so the same CA lets the next run reuse the images instead of building (and leaving
    behind) a new set each time."""
    folder = Path(directory)
    key, cert = folder / "ca-key.pem", folder / "ca-cert.pem"
    if key.exists() and cert.exists():
        pair = read(key, cert)
        if pair.not_valid_after - datetime.now(timezone.utc) > timedelta(days=renew_within):
            return pair
    folder.mkdir(parents=True, exist_ok=True)
    pair = mint_ca(common_name, days=days)
    pair.write(key, cert)
    return pair


def mint_leaf(ca: KeyPair, hostnames: list[str], days: int = 30) -> KeyPair:
    """A server certificate for `hostnames` (DNS names, or IP addresses) signed by `ca`.

    Its validity never reaches past the CA's own.
    """
    _check_days(days)
    sans = _subject_alt_names(hostnames)
    ca_cert, ca_key = ca.cert, ca.key
    key = ec.generate_private_key(ec.SECP256R1())
    not_before = datetime.now(timezone.utc) - CLOCK_SKEW
    not_after = min(not_before + CLOCK_SKEW + timedelta(days=days), ca_cert.not_valid_after_utc)
    try:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(str(hostnames[0]).strip()))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(key_pem=_key_pem(key), cert_pem=cert.public_bytes(serialization.Encoding.PEM))


_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL
)


def _pem_block(data: bytes, label_suffix: bytes) -> bytes:
    """The first PEM block whose label ends with `label_suffix` (e.g. b"PRIVATE KEY")."""
    for match in _PEM_BLOCK.finditer(data):
        if match.group(1).endswith(label_suffix):
            block = match.group(0)
            return block if block.endswith(b"\n") else block + b"\n"
    raise ValueError(f"no {label_suffix.decode()} PEM block found")


def _subject_alt_names(hostnames: list[str]) -> list[x509.GeneralName]:
    if isinstance(hostnames, (str, bytes)):
        raise TypeError("hostnames must be a list of names, not one string")
    sans: list[x509.GeneralName] = []
    for raw in hostnames:
        host = str(raw).strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            raise ValueError("empty hostname")
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            entry = x509.DNSName(_dns_name(host))
        if entry not in sans:
            sans.append(entry)
    if not sans:
        raise ValueError("a leaf certificate needs at least one hostname")
    return sans


def _dns_name(host: str) -> str:
    host = host.rstrip(".").lower()
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    return host


def _name(common_name: str) -> x509.Name:
    common_name = common_name.strip()
    if not common_name:
        raise ValueError("empty common name")
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),  # ub-common-name
        ]
    )


def _check_days(days: int) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ValueError(f"days must be a positive integer, not {days!r}")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)
