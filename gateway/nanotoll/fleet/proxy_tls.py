"""The fault proxy's two TLS ends, so that a run with network faults is TLS end to end.

Toward the devices the proxy is a server. It presents a certificate of its own, issued
by the broker's CA for the loopback host the devices dial, so a device verifies it
exactly as it verifies the broker and needs nothing more than the CA it already holds.
Toward the broker the proxy is a client that verifies the broker's certificate against
that CA. In between it reads MQTT in cleartext, which is what cutting whole packets
needs. It never logs in itself: each device's CONNECT crosses unchanged, so the broker
still checks the device's own password and topic rights.

The proxy gets a key of its own rather than the broker's: the broker's key stays read by
mosquitto alone, and a proxy certificate is worth nothing once the run is over.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from ..broker import pki

CERTIFICATE_NAME = "fault-proxy.pem"
KEY_NAME = "fault-proxy.key"
# A run's proxy lives for the run; a day is ample and bounds a copied key's worth.
CERTIFICATE_DAYS = 1


class ProxyTLSError(ValueError):
    """The proxy's TLS cannot be set up; the message names the file."""


@dataclass(frozen=True)
class ProxyTLS:
    """The server context the devices meet and the client context toward the broker."""

    serve: ssl.SSLContext
    upstream: ssl.SSLContext
    certificate_file: Path


def issue_proxy_certificate(ca_file: Path, ca_key_file: Path, host: str,
                            folder: Path) -> tuple[Path, Path]:
    """A fault-proxy certificate and key for ``host``, signed by the broker's CA, written
    to ``folder`` (the key readable by its owner only); returns (certificate, key)."""
    try:
        authority = pki.load_authority(ca_file, ca_key_file)
    except pki.PKIError as exc:
        raise ProxyTLSError(f"the fault proxy needs the broker's CA and its key: {exc}") \
            from exc
    certificate, key = pki.issue_server(authority, [host], days=CERTIFICATE_DAYS)
    folder.mkdir(parents=True, exist_ok=True)
    certificate_path, key_path = folder / CERTIFICATE_NAME, folder / KEY_NAME
    certificate_path.write_bytes(pki.certificate_pem(certificate))
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pki.key_pem(key))
    return certificate_path, key_path


def serving_context(certificate_file: Path, key_file: Path) -> ssl.SSLContext:
    """What the devices meet: TLS 1.2 only, as the broker's listener offers (its
    ``tls_version tlsv1.2``), so a board's handshake costs the same through the proxy."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ProxyTLSError(f"{certificate_file} with {key_file}: {exc}") from exc
    return context


def upstream_context(ca_file: Path) -> ssl.SSLContext:
    """Toward the broker: its certificate must chain to the CA and name the host dialled."""
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ProxyTLSError(f"the broker's CA {ca_file}: {exc}") from exc


def proxy_tls(ca_file: Path, ca_key_file: Path, host: str, folder: Path) -> ProxyTLS:
    """Both ends for a proxy that listens on ``host``, its certificate kept in ``folder``."""
    certificate_file, key_file = issue_proxy_certificate(ca_file, ca_key_file, host, folder)
    return ProxyTLS(serving_context(certificate_file, key_file), upstream_context(ca_file),
                    certificate_file)
