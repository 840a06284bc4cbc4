"""The payment agent on the unix port over TLS with its own broker client (issue 14).

boards/unix/main.py under the project's MicroPython build (with ssl) buys from the
reference provider through the secure mosquitto, checking the broker against its CA in
DER. Each way the connection can fail (a certificate from another CA, an expired one, a
wrong password, a revoked device, a broker that is down) ends the console run with one
line that names the broker and the credential, and nothing signed, charged or written:
the provider heard no request and the device's state folder is as it was.
"""

from __future__ import annotations

import datetime
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nanotoll.bench.provider import ReferenceProvider
from nanotoll.broker import pki
from nanotoll.broker.clients import Credentials, revoke_device
from nanotoll.servers.mosquitto import Mosquitto
from support.agent_helpers import Device
from support.secure_broker import ca_der, secure_broker
from support.tools import require

PRICE = 1500


class Rig:
    """The secure broker, the device's login, the provider and the device's folder."""

    def __init__(self, folder: Path, broker: Mosquitto, login: Credentials,
                 provider: ReferenceProvider) -> None:
        self.folder = folder
        self.broker = broker
        self.login = login
        self.provider = provider
        self.ca = ca_der(broker, folder / "broker_ca.der")

    def device(self, **broker_keys: Any) -> Device:
        broker = {"host": self.broker.host, "port": self.broker.port, "ca": str(self.ca),
                  "username": self.login.username, "password": self.login.password,
                  **broker_keys}
        return Device(self.folder / "dev", self.broker.port, broker=broker, timeout_ms=4000)

    @property
    def where(self) -> str:
        """How the device's console names this broker."""
        return f"127.0.0.1:{self.broker.port} (TLS, CA {self.ca})"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    require("tls")
    with secure_broker(tmp_path / "broker") as (broker, login), \
            ReferenceProvider.on_secure_broker(broker) as provider:
        yield Rig(tmp_path, broker, login, provider)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*"))} if folder.exists() else {}


def _refused(rig: Rig, device: Device, charged: int = 0) -> str:
    """Run one purchase that cannot connect; the console's message, after checking that
    nothing was signed, charged or written."""
    state = device.state_file.parent
    before = _snapshot(state)
    heard = len(rig.provider.received)
    rc, lines, err = device.buy(1, timeout=60)
    assert rc == 1, (lines, err)
    assert lines and lines[-1].get("summary") and lines[-1]["ok"] == 0, lines
    assert len(rig.provider.received) == heard and rig.provider.book.charged == charged
    assert _snapshot(state) == before
    return str(lines[-1]["message"])


def test_purchases_over_tls_with_the_devices_own_client(rig: Rig) -> None:
    rc, lines, err = rig.device().buy(2)
    assert rc == 0, err
    assert [x["ok"] for x in lines if "i" in x] == [True, True], lines
    assert lines[-1]["cumulative"] == lines[-1]["acked"] == 2 * PRICE \
        == rig.provider.book.charged
    assert lines[-1]["mqtt_connects"] == 1


def test_a_certificate_from_another_ca_is_refused(rig: Rig) -> None:
    other = pki.make_authority("not the broker's CA")
    rig.ca.write_bytes(ssl.PEM_cert_to_DER_cert(other.certificate_pem().decode()))
    message = _refused(rig, rig.device())
    assert f"broker {rig.where}: The certificate is not correctly signed by the trusted CA" \
        in message, message


def test_an_expired_broker_certificate_is_refused(rig: Rig) -> None:
    site = rig.broker.site
    assert site is not None
    ca = pki.load_authority(site.ca_file, site.ca_key_file)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    site.issue_server(ca, ["127.0.0.1"], days=1, not_before=past)
    rig.broker.restart()  # mosquitto reads its certificate when it starts
    message = _refused(rig, rig.device())
    assert f"broker {rig.where}: The certificate validity has expired" in message, message


def test_a_wrong_password_is_refused(rig: Rig) -> None:
    message = _refused(rig, rig.device(password="not-the-password"))
    user = rig.login.username
    assert f"broker refused client nt-{user} (user {user})" in message, message
    assert "bad user name or password" in message or "not authorised" in message
    assert f"at {rig.where}" in message, message


def test_a_revoked_device_is_refused_and_keeps_what_it_paid(rig: Rig) -> None:
    device = rig.device()
    rc, lines, err = device.buy(1)
    assert rc == 0 and rig.provider.book.charged == PRICE, (lines, err)
    with rig.broker.admin() as admin:
        assert revoke_device(admin, rig.login.username)
    message = _refused(rig, device, charged=PRICE)
    assert f"(user {rig.login.username})" in message and rig.where in message, message
    rc, lines, err = device.run("--status")
    assert rc == 0 and lines[-1]["cumulative"] == lines[-1]["acked"] == PRICE, lines


def test_a_broker_that_is_down_is_named(rig: Rig) -> None:
    rig.broker.stop()
    message = _refused(rig, rig.device())
    assert f"broker {rig.where}: ECONNREFUSED" in message, message


def test_an_idle_device_over_tls_sleeps_in_the_kernel(rig: Rig, tmp_path: Path) -> None:
    """Two purchases 2 s apart: between them the device waits in poll on its socket's
    descriptor (boards/unix/tls_stream.py). asyncio's Stream over the TLS socket made the
    port poll in 1 ms sleeps: 3,752 calls in one run, against about 100 now."""
    strace = require("strace")
    trace = tmp_path / "poll.trace"
    argv = rig.device().argv("--buy", "weather", "--count", "2", "--interval-ms", "2000")
    done = subprocess.run([strace, "-f", "-e", "trace=poll", "-o", str(trace), *argv],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert rig.provider.book.charged == 2 * PRICE
    polls = [line for line in trace.read_text().splitlines() if " poll(" in line]
    assert len(polls) < 200, f"{len(polls)} poll calls in a 2 s pause"
