"""The secure broker for device tests (TLS, a client per party, topic rights), set up as
``nanotoll broker init`` and ``device provision`` leave it for the test keys of
support.agent_helpers: the provider's gateway client exists, and the device has its own
client. ``ReferenceProvider.on_secure_broker`` logs the provider in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nanotoll.bench.provider import DEVICE_KEY, PROVIDER_KEY, addr_hex
from nanotoll.broker.clients import Credentials, add_device
from nanotoll.broker.dynsec import Client, DynsecAdmin, Role, new_password
from nanotoll.broker.rights import Acl
from nanotoll.servers.mosquitto import Mosquitto

from support.tools import require


@contextmanager
def secure_broker(workdir: Path, *, device_key: bytes = DEVICE_KEY
                  ) -> Iterator[tuple[Mosquitto, Credentials]]:
    """A running secure mosquitto and the device's login on it."""
    require("mosquitto")
    provider = addr_hex(PROVIDER_KEY)
    with Mosquitto(workdir=workdir, secure=True, providers=[provider]) as broker:
        with broker.admin() as admin:
            login = add_device(admin, provider, addr_hex(device_key))
        yield broker, login


def ca_der(broker: Mosquitto, path: Path) -> Path:
    """The broker's CA written to ``path`` in DER, as a device keeps it."""
    return broker.write_ca_der(path)


def add_test_client(admin: DynsecAdmin, username: str, acls: list[Acl]) -> Credentials:
    """A client a test makes for itself (an attacker, a probe), with a fresh password and
    a role of its own holding exactly ``acls``; no role at all when ``acls`` is empty. The
    product ships no such role: ``nanotoll.broker.rights`` knows only its parties'."""
    rolename = f"test-{username}"
    if acls:
        admin.put_role(Role(rolename, acls))
    login = Credentials(username, new_password())
    admin.put_client(Client(username, login.password, (rolename,) if acls else (),
                            "made by a test"))
    return login
