"""The broker's certificates: a CA of the operator's (made here, or brought along) and
a server certificate it signs, both PEM files the broker, gateways and devices read.

P-256 keys: every client the project has (CPython's ssl, mbedTLS on the unix port,
ESP32 and Pico W) verifies ECDSA P-256, and its signatures are small enough for a
board's TLS handshake buffers.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 397  # the longest server certificate lifetime browsers accept


class PKIError(ValueError):
    """A certificate or key that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Authority:
    """A CA that signs server certificates: its certificate and private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def certificate_pem(self) -> bytes:
        return certificate_pem(self.certificate)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_authority(name: str, days: int = CA_DAYS) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = _now() - datetime.timedelta(minutes=5)  # tolerate a client clock a bit behind
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(certificate, key)


def load_authority(cert_path: Path, key_path: Path) -> Authority:
    """An operator's own CA: its certificate must be a CA's and match the key."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PKIError(f"CA certificate {cert_path}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PKIError(f"CA key {key_path}: {exc} (an unencrypted PEM key is needed)") \
            from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"CA key {key_path}: an EC key is needed, not {type(key).__name__}")
    if _public_der(key.public_key()) != _public_der(certificate.public_key()):
        raise PKIError(f"CA key {key_path} does not belong to {cert_path}")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound as exc:
        raise PKIError(f"{cert_path} is not a CA certificate (no basic constraints)") from exc
    if not constraints.value.ca:
        raise PKIError(f"{cert_path} is not a CA certificate")
    return Authority(certificate, key)


def _public_der(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def _alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_server(authority: Authority, hosts: Sequence[str], days: int = SERVER_DAYS,
                 not_before: datetime.datetime | None = None,
                 ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for ``hosts`` (names or IP addresses, the first one its
    common name). ``not_before`` lets a test make one that has already expired."""
    if not hosts:
        raise PKIError("a server certificate needs at least one host name or address")
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or (_now() - datetime.timedelta(minutes=5))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            authority.key.public_key()), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    return certificate, key


def check_issued_by(certificate_path: Path, ca_path: Path) -> x509.Certificate:
    """The certificate at ``certificate_path``, if the CA at ``ca_path`` signed it and it
    is valid now; else a PKIError that names both files."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PKIError(f"{certificate_path} or {ca_path}: {exc}") from exc
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise PKIError(f"{certificate_path} was not issued by the CA {ca_path}") from exc
    now = _now()
    if not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc:
        raise PKIError(f"{certificate_path} is valid from {certificate.not_valid_before_utc} "
                       f"to {certificate.not_valid_after_utc}, not now")
    return certificate
