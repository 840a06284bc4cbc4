"""mosquitto's dynamic-security plugin: its JSON file, written before the broker first
starts, and its control topic, which changes clients and roles while it runs.

The file holds password hashes only (PBKDF2-SHA512, as the plugin checks them); the
plugin rewrites it on every change made through the control topic, so once the broker
has started, only :class:`DynsecAdmin` changes it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ..nodelay import no_delay
from .rights import ADMIN_ROLE, CONTROL_TOPIC, DEFAULT_ACCESS, Acl, admin_acls

# The plugin's own default. The passwords it guards are random 144-bit secrets made by
# the tools, not words a person chose, so stretching them further buys nothing and
# would cost every connection of a fleet.
HASH_ITERATIONS = 101
SALT_BYTES = 12


class DynsecError(RuntimeError):
    """The plugin refused a command, or could not be reached; the message says which."""


def new_password() -> str:
    """A random password for a broker client (144 bits, URL-safe text)."""
    return base64.urlsafe_b64encode(os.urandom(18)).decode()


def hashed_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, HASH_ITERATIONS)
    return {"password": base64.b64encode(digest).decode(),
            "salt": base64.b64encode(salt).decode(), "iterations": HASH_ITERATIONS}


@dataclass(frozen=True)
class Role:
    name: str
    acls: list[Acl]


@dataclass(frozen=True)
class Client:
    username: str
    password: str
    roles: tuple[str, ...]
    text: str = ""


@dataclass
class Document:
    """The plugin's configuration file: the admin client, and whatever clients and roles
    the site starts with."""

    admin_password: str
    clients: list[Client] = field(default_factory=list)
    roles: list[Role] = field(default_factory=list)

    def to_json(self) -> str:
        clients = [Client("admin", self.admin_password, (ADMIN_ROLE,), "broker administrator"),
                   *self.clients]
        roles = [Role(ADMIN_ROLE, admin_acls()), *self.roles]
        return json.dumps({
            "clients": [{"username": c.username, "textName": c.text,
                         "roles": [{"rolename": r} for r in c.roles],
                         **hashed_password(c.password)} for c in clients],
            "roles": [{"rolename": r.name, "acls": r.acls} for r in roles],
            "groups": [],
            "defaultACLAccess": DEFAULT_ACCESS,
        }, indent=1)


class DynsecAdmin:
    """Commands to the plugin of a running broker over its control topic, as its admin."""

    def __init__(self, host: str, port: int, password: str, *, ca_file: str | None,
                 username: str = "admin", timeout: float = 10.0) -> None:
        self.where = f"{host}:{port}"
        self._timeout = timeout
        self._answers: dict[str, dict[str, Any]] = {}
        self._answered = threading.Condition()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"nanotoll-admin-{uuid.uuid4().hex[:8]}",
                                   protocol=MQTTProtocolVersion.MQTTv311)
        self._client.username_pw_set(username, password)
        if ca_file is not None:
            self._client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_socket_open = no_delay
        self._host, self._port = host, port

    def __enter__(self) -> DynsecAdmin:
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise DynsecError(f"broker admin: cannot reach {self.where}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(self._timeout) or self._refused:
            self.close()
            raise DynsecError(f"broker admin at {self.where}: "
                              f"{self._refused or 'no answer to CONNECT'}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._refused = f"connection refused ({reason}): check the admin password"
        else:
            client.subscribe(f"{CONTROL_TOPIC}/response", qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: Any) -> None:
        try:
            answers = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._answered:
            for answer in answers:
                self._answers[str(answer.get("correlationData", ""))] = answer
            self._answered.notify_all()

    def run(self, command: str, **arguments: Any) -> dict[str, Any]:
        """One command; its answer, or a DynsecError with the plugin's reason."""
        tag = uuid.uuid4().hex
        body = {"commands": [{"command": command, "correlationData": tag, **arguments}]}
        self._client.publish(CONTROL_TOPIC, json.dumps(body), qos=1)
        with self._answered:
            if not self._answered.wait_for(lambda: tag in self._answers, self._timeout):
                raise DynsecError(f"broker admin at {self.where}: no answer to {command} "
                                  f"within {self._timeout} s")
            answer = self._answers.pop(tag)
        if answer.get("error"):
            raise DynsecError(f"broker admin at {self.where}: {command} "
                              f"{_subject(arguments)}: {answer['error']}")
        return dict(answer.get("data") or {})

    # The operations the tools need, each a few commands.

    def put_role(self, role: Role) -> None:
        """Create the role, or give it exactly these ACLs if it exists."""
        have = self.role_acls(role.name)
        if not have and not self._role_exists(role.name):
            self.run("createRole", rolename=role.name, acls=role.acls)
            return
        wanted = {(a["acltype"], a["topic"]) for a in role.acls}
        for entry in have:
            if (entry["acltype"], entry["topic"]) not in wanted:
                self.run("removeRoleACL", rolename=role.name, acltype=entry["acltype"],
                         topic=entry["topic"])
        self.add_acls(role.name, role.acls)

    def _role_exists(self, rolename: str) -> bool:
        try:
            self.run("getRole", rolename=rolename)
        except DynsecError as exc:
            if "not found" in str(exc):
                return False
            raise
        return True

    def put_client(self, client: Client) -> None:
        """Create the client, or reset its password and roles if it exists."""
        roles = [{"rolename": r} for r in client.roles]
        try:
            self.run("createClient", username=client.username, password=client.password,
                     textname=client.text, roles=roles)
        except DynsecError as exc:
            if "already exists" not in str(exc):
                raise
            self.run("setClientPassword", username=client.username, password=client.password)
            held = self.client_roles(client.username)
            for rolename in held:
                if rolename not in client.roles:
                    self.run("removeClientRole", username=client.username, rolename=rolename)
            for rolename in client.roles:
                if rolename not in held:
                    self.run("addClientRole", username=client.username, rolename=rolename)
            self.run("enableClient", username=client.username)

    def client_roles(self, username: str) -> list[str]:
        data = self.run("getClient", username=username)
        return [str(r["rolename"]) for r in data.get("client", {}).get("roles", [])]

    def role_acls(self, rolename: str) -> list[Acl]:
        try:
            data = self.run("getRole", rolename=rolename)
        except DynsecError as exc:
            if "not found" in str(exc):
                return []
            raise
        return list(data.get("role", {}).get("acls", []))

    def add_acls(self, rolename: str, acls: Iterable[Acl]) -> None:
        """Add ACLs to a role, making it if needed; ones it already has are kept."""
        if not self._role_exists(rolename):
            self.run("createRole", rolename=rolename)
        have = {(a["acltype"], a["topic"]) for a in self.role_acls(rolename)}
        for entry in acls:
            if (entry["acltype"], entry["topic"]) not in have:
                self.run("addRoleACL", rolename=rolename, **entry)

    def remove_client(self, username: str, role: str | None = None) -> bool:
        """Delete a client (which disconnects it) and its own role; False if it had none."""
        try:
            self.run("deleteClient", username=username)
        except DynsecError as exc:
            if "not found" not in str(exc):
                raise
            return False
        if role is not None:
            with _ignoring("not found"):
                self.run("deleteRole", rolename=role)
        return True


class _ignoring:
    """Suppress a DynsecError whose reason contains ``text``."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return isinstance(exc, DynsecError) and self._text in str(exc)


def _subject(arguments: Mapping[str, Any]) -> str:
    return str(arguments.get("username") or arguments.get("rolename") or "")
