"""``nanotoll broker init``, ``run`` and ``owner``: the folder they make, an operator's own
CA, the owner's client and its password file, and refusals that name the file or the
fault."""

from __future__ import annotations

import datetime
import json
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from nanotoll.broker import pki
from nanotoll.broker.clients import has_client
from nanotoll.broker.site import BrokerSite
from nanotoll.cli import main
from nanotoll.protocol.signing import checksum_address
from nanotoll.servers.mosquitto import Mosquitto
from nanotoll.servers.process import free_port, port_in_use, stop_process, wait_for_port
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
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


OWNER = "0x" + "5a" * 20  # all lower case: no checksum to check


def _owner(broker: Mosquitto, *extra: str) -> int:
    assert broker.site is not None
    return main(["broker", "owner", str(broker.site.root), *extra])


def _logs_in(broker: Mosquitto, username: str, password: str) -> bool:
    """Whether the broker accepts this login over TLS (its CONNACK)."""
    answered, accepted = threading.Event(), []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.username_pw_set(username, password)
    client.tls_set(ca_certs=str(broker.ca_file))
    client.on_connect = lambda c, u, f, reason, p: (accepted.append(not reason.is_failure),
                                                    answered.set())
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert answered.wait(5), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return accepted[0]


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Mosquitto]:
    require("mosquitto")
    with Mosquitto(workdir=tmp_path / "broker", secure=True) as running:
        yield running


def test_owner_makes_the_owners_client_once_and_rotates_on_request(
        secure: Mosquitto, capsys: pytest.CaptureFixture[str]) -> None:
    assert secure.site is not None
    username = OWNER[2:]
    secret = secure.site.secrets / f"owner-{username}.password"
    assert _owner(secure, OWNER) == 0
    assert f"client {username} created, password in {secret}" in capsys.readouterr().out
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    first = secret.read_text().strip()
    assert _logs_in(secure, username, first)
    assert first not in secure.site.dynsec_file.read_text()

    # Again: kept as it is, and said so.
    assert _owner(secure, OWNER) == 0
    assert "exists, its password unchanged" in capsys.readouterr().out
    assert secret.read_text().strip() == first and _logs_in(secure, username, first)

    # --rotate: a new password, into a file that was readable by others before.
    elsewhere = secure.site.root / "owner.password"
    elsewhere.write_text("")
    elsewhere.chmod(0o644)
    assert _owner(secure, OWNER, "--rotate", "--password-file", str(elsewhere)) == 0
    assert "rotated" in capsys.readouterr().out
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o600
    second = elsewhere.read_text().strip()
    assert second != first and _logs_in(secure, username, second)
    assert not _logs_in(secure, username, first)

    # --json: the password printed once, no file written.
    assert _owner(secure, OWNER, "--rotate", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["state"], document["username"]) == ("rotated", username)
    assert _logs_in(secure, username, document["password"])
    assert secret.read_text().strip() == first and elsewhere.read_text().strip() == second


def test_owner_refusals_name_the_fault(secure: Mosquitto, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert secure.site is not None
    good = checksum_address(bytes.fromhex("5a" * 19 + "ab"))
    bad = "0x" + "".join(c.swapcase() if c.isalpha() else c for c in good[2:])
    with pytest.raises(SystemExit) as exit_info:
        _owner(secure, bad)
    assert exit_info.value.code == 2
    assert "wrong EIP-55 checksum" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _owner(secure, good[2:])  # no 0x: not an address a person can check
    assert "0x-prefixed" in capsys.readouterr().err

    assert _owner(secure, good, "--broker", f"127.0.0.1:{free_port()}") == 2
    assert "cannot reach" in capsys.readouterr().err

    admin_file = secure.site.admin_password_file
    right = admin_file.read_text()
    admin_file.write_text("not the admin password\n")
    try:
        assert _owner(secure, good) == 2
    finally:
        admin_file.write_text(right)
    assert "check the admin password" in capsys.readouterr().err

    assert main(["broker", "owner", str(tmp_path / "nothing"), good]) == 2
    assert "holds no broker" in capsys.readouterr().err
    # Nothing was made by any of them.
    with secure.admin() as admin:
        assert not has_client(admin, good[2:].lower())
    assert not list(secure.site.secrets.glob("owner-*"))
