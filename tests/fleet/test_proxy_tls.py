"""The fault proxy's certificate: issued by the broker's CA for the host the devices
dial, with a key of its own kept private; refused when the CA's key is not the CA's."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from nanotoll.broker import pki
from nanotoll.fleet.proxy_tls import (
    ProxyTLSError,
    issue_proxy_certificate,
    proxy_tls,
    serving_context,
)


def _authority(folder: Path, name: str = "test broker CA") -> tuple[Path, Path]:
    authority = pki.make_authority(name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_bytes(authority.certificate_pem())
    (folder / "ca.key").write_bytes(pki.key_pem(authority.key))
    return folder / "ca.pem", folder / "ca.key"


def test_the_certificate_is_the_cas_for_the_host_with_a_private_key(tmp_path: Path) -> None:
    ca_file, ca_key = _authority(tmp_path / "ca")
    certificate_file, key_file = issue_proxy_certificate(ca_file, ca_key, "127.0.0.1",
                                                         tmp_path / "proxy")
    certificate = pki.check_issued_by(certificate_file, ca_file)  # raises if not
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [str(a) for a in names.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(usage.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # a new key each time: a proxy's key is worth nothing after its run
    again, _ = issue_proxy_certificate(ca_file, ca_key, "127.0.0.1", tmp_path / "again")
    assert x509.load_pem_x509_certificate(again.read_bytes()).public_key() != \
        certificate.public_key()


def test_both_contexts_verify_against_the_ca(tmp_path: Path) -> None:
    ca_file, ca_key = _authority(tmp_path / "ca")
    tls = proxy_tls(ca_file, ca_key, "127.0.0.1", tmp_path / "proxy")
    assert tls.serve.maximum_version == tls.serve.minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls.upstream.verify_mode == ssl.CERT_REQUIRED and tls.upstream.check_hostname
    assert len(tls.upstream.get_ca_certs()) == 1


def test_a_ca_key_that_is_not_the_cas_is_refused(tmp_path: Path) -> None:
    ca_file, _ = _authority(tmp_path / "ca")
    _, stranger_key = _authority(tmp_path / "stranger", "another CA")
    with pytest.raises(ProxyTLSError, match="does not belong to"):
        issue_proxy_certificate(ca_file, stranger_key, "127.0.0.1", tmp_path / "proxy")
    assert not (tmp_path / "proxy").exists()


def test_a_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    authority = pki.make_authority("test CA")
    certificate, _key = pki.issue_server(authority, ["127.0.0.1"])
    _other, other_key = pki.issue_server(authority, ["127.0.0.1"])
    (tmp_path / "cert.pem").write_bytes(pki.certificate_pem(certificate))
    (tmp_path / "key.pem").write_bytes(pki.key_pem(other_key))
    with pytest.raises(ProxyTLSError, match="cert.pem"):
        serving_context(tmp_path / "cert.pem", tmp_path / "key.pem")
