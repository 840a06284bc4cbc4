"""``nanotoll broker init`` and ``run``: the folder they make, an operator's own CA, and
refusals that name the file at fault."""

from __future__ import annotations

import datetime
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from nanotoll.broker import pki
from nanotoll.broker.site import BrokerSite
from nanotoll.cli import main
from nanotoll.servers.process import free_port, port_in_use, stop_process, wait_for_port
from support.tools import require

PROVIDER = "cd" * 20


def _init(root: Path, *extra: str) -> int:
    return main(["broker", "init", str(root), "--host", "127.0.0.1", "--port",
                 str(free_port()), *extra])


def test_init_makes_a_broker_folder_and_keeps_secrets_private(tmp_path: Path) -> None:
    root = tmp_path / "site"
    assert _init(root, "--provider", "0x" + PROVIDER.upper()) == 0
    site = BrokerSite(root)
    for secret in (site.admin_password_file, site.gateway_password_file(PROVIDER),
                   site.server_key_file, site.ca_key_file, site.dynsec_file):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert pki.check_issued_by(site.server_cert_file, site.ca_file)
    assert site.admin_password() not in site.dynsec_file.read_text()
    assert "allow_anonymous false" in site.config_file.read_text()
    # A second init would replace the CA every client trusts: refused.
    assert _init(root) == 2


def test_an_operators_own_ca_signs_the_server_and_stays_theirs(tmp_path: Path) -> None:
    own = pki.make_authority("operator CA")
    (tmp_path / "ca.pem").write_bytes(own.certificate_pem())
    (tmp_path / "ca.key").write_bytes(pki.key_pem(own.key))
    root = tmp_path / "site"
    assert _init(root, "--ca-cert", str(tmp_path / "ca.pem"), "--ca-key",
                 str(tmp_path / "ca.key")) == 0
    site = BrokerSite(root)
    assert not site.ca_key_file.exists()
    assert site.ca_file.read_bytes() == own.certificate_pem()
    assert pki.check_issued_by(site.server_cert_file, site.ca_file)


def test_a_key_that_is_not_the_cas_is_refused(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    own, other = pki.make_authority("operator CA"), pki.make_authority("other")
    (tmp_path / "ca.pem").write_bytes(own.certificate_pem())
    (tmp_path / "ca.key").write_bytes(pki.key_pem(other.key))
    assert _init(tmp_path / "site", "--ca-cert", str(tmp_path / "ca.pem"), "--ca-key",
                 str(tmp_path / "ca.key")) == 2
    assert f"{tmp_path / 'ca.key'} does not belong to" in capsys.readouterr().err
    assert not (tmp_path / "site" / "mosquitto.conf").exists()


def test_run_serves_tls_and_refuses_an_expired_certificate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require("mosquitto")
    root = tmp_path / "site"
    assert _init(root) == 0
    site = BrokerSite(root)
    process = subprocess.Popen([sys.executable, "-m", "nanotoll.cli", "broker", "run",
                                str(root)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(site.listener().port, process, 10, "nanotoll broker run")
    finally:
        stop_process(process)
    # SIGTERM reached mosquitto itself: the port is free again.
    assert not port_in_use(site.listener().port)

    ca = pki.load_authority(site.ca_file, site.ca_key_file)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    site.issue_server(ca, ["127.0.0.1"], days=1, not_before=past)
    capsys.readouterr()
    assert main(["broker", "run", str(root)]) == 2
    assert f"{site.server_cert_file} is valid from" in capsys.readouterr().err
