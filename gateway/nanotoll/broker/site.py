"""A broker's folder: its CA and server certificate, the dynamic-security file, the
mosquitto config that ties them together, and the secrets the tools hand out.

Layout (``BrokerSite(root)``)::

    ca.pem            the CA every client verifies the broker with (public)
    server.pem/.key   the broker's certificate and key
    ca.key            the CA's key, when init made the CA (an operator's own stays theirs)
    dynsec.json       clients, roles and password hashes (the plugin rewrites it)
    mosquitto.conf    the TLS listener (and a plain loopback one only if asked)
    secrets/          admin.password, gateway-{provider}.password (mode 0600)
"""

from __future__ import annotations

import datetime
import json
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..servers.process import ServiceError
from ..servers.tools import find_tool
from . import pki
from .dynsec import Client, Document, Role, new_password
from .rights import gateway_acls, gateway_role_name

DYNSEC_PLUGIN_ENV = "NANOTOLL_MOSQUITTO_DYNSEC"
DEBIAN_DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


class SiteError(ValueError):
    """A broker folder that cannot be made or used; the message names the file."""


def dynsec_plugin() -> str:
    """The dynamic-security plugin mosquitto loads (Debian's package ships it)."""
    try:
        return find_tool("mosquitto_dynamic_security.so", DYNSEC_PLUGIN_ENV,
                         DEBIAN_DYNSEC_PLUGIN)
    except ServiceError as exc:
        raise SiteError(f"{exc}: Debian's mosquitto package ships the dynamic-security "
                        "plugin") from exc


def gateway_username(provider: str) -> str:
    return f"gateway-{provider}"


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@dataclass(frozen=True)
class Listener:
    """Where the broker listens: TLS always; a plain port on loopback only if asked."""

    host: str
    port: int
    plain_port: int | None = None


@dataclass(frozen=True)
class BrokerSite:
    root: Path

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert_file(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key_file(self) -> Path:
        return self.root / "server.key"

    @property
    def dynsec_file(self) -> Path:
        return self.root / "dynsec.json"

    @property
    def config_file(self) -> Path:
        return self.root / "mosquitto.conf"

    @property
    def listener_file(self) -> Path:
        return self.root / "listener.json"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def admin_password_file(self) -> Path:
        return self.secrets / "admin.password"

    def gateway_password_file(self, provider: str) -> Path:
        return self.secrets / f"gateway-{provider}.password"

    def admin_password(self) -> str:
        return _read_secret(self.admin_password_file)

    def gateway_password(self, provider: str) -> str:
        return _read_secret(self.gateway_password_file(provider))

    def listener(self) -> Listener:
        try:
            data = json.loads(self.listener_file.read_text())
            return Listener(str(data["host"]), int(data["port"]), data.get("plain_port"))
        except (OSError, ValueError, KeyError) as exc:
            raise SiteError(f"{self.listener_file}: {exc}: run `nanotoll broker init "
                            f"{self.root}` first") from exc

    def initialised(self) -> bool:
        return self.config_file.exists() and self.dynsec_file.exists()

    def init(self, listener: Listener, *, hosts: Sequence[str] = (),
             providers: Sequence[str] = (), ca: pki.Authority | None = None,
             server_days: int = pki.SERVER_DAYS) -> None:
        """Make everything the broker needs; refuse a folder that already has a broker."""
        if self.initialised():
            raise SiteError(f"{self.root} already holds a broker (mosquitto.conf, "
                            "dynsec.json): pick another folder or remove it")
        self.root.mkdir(parents=True, exist_ok=True)
        if ca is None:
            ca = pki.make_authority(f"nanotoll broker CA ({self.root.name})")
            _write_private(self.ca_key_file, pki.key_pem(ca.key))
        self.ca_file.write_bytes(ca.certificate_pem())
        self.issue_server(ca, [*hosts] or [listener.host], days=server_days)
        admin = new_password()
        _write_secret(self.admin_password_file, admin)
        document = Document(admin)
        for provider in providers:
            password = new_password()
            document.roles.append(Role(gateway_role_name(provider), gateway_acls(provider)))
            document.clients.append(Client(gateway_username(provider), password,
                                           (gateway_role_name(provider),),
                                           f"gateway of provider {provider}"))
            _write_secret(self.gateway_password_file(provider), password)
        _write_private(self.dynsec_file, document.to_json().encode())
        self.listener_file.write_text(json.dumps({
            "host": listener.host, "port": listener.port, "plain_port": listener.plain_port}))
        self.config_file.write_text(self.mosquitto_config(listener))

    def issue_server(self, ca: pki.Authority, hosts: Sequence[str],
                     days: int = pki.SERVER_DAYS,
                     not_before: datetime.datetime | None = None) -> None:
        """A new server certificate and key (mosquitto reads them when it starts)."""
        certificate, key = pki.issue_server(ca, hosts, days=days, not_before=not_before)
        self.server_cert_file.write_bytes(pki.certificate_pem(certificate))
        _write_private(self.server_key_file, pki.key_pem(key))

    def mosquitto_config(self, listener: Listener) -> str:
        lines = [
            # One security setting for every listener: the plugin guards them all.
            "per_listener_settings false",
            "allow_anonymous false",
            # Started as root, mosquitto would drop to the user 'mosquitto', who cannot
            # read this folder's keys: it runs as the folder's owner.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"plugin {dynsec_plugin()}",
            f"plugin_opt_config_file {self.dynsec_file}",
            f"listener {listener.port} {listener.host}",
            f"certfile {self.server_cert_file}",
            f"keyfile {self.server_key_file}",
            "tls_version tlsv1.2",
        ]
        if listener.plain_port is not None:
            lines.append(f"listener {listener.plain_port} 127.0.0.1")
        lines += [
            "persistence true",
            f"persistence_location {self.root}/",
            "autosave_interval 1",
            # Without it, Nagle's algorithm holds small QoS 1 packets ~40 ms on loopback.
            "set_tcp_nodelay true",
            "max_inflight_messages 200",
            "max_queued_messages 100000",
            "log_dest stdout",
            "log_type error", "log_type warning", "log_type notice",
        ]
        return "\n".join(lines) + "\n"


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SiteError(f"cannot read the secret {path}: {exc}") from exc
