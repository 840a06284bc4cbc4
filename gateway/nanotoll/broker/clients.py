"""The broker clients of the project's parties, made and revoked on a running broker:
a device (username = its address), a provider's gateway, an owner's tool."""

from __future__ import annotations

from dataclasses import dataclass

from .dynsec import Client, DynsecAdmin, DynsecError, Role, new_password
from .rights import (
    device_acls,
    device_role_name,
    gateway_acls,
    gateway_role_name,
    owner_acls,
    owner_role_name,
)
from .site import gateway_username


@dataclass(frozen=True)
class Credentials:
    """What a client presents in CONNECT."""

    username: str
    password: str


def add_device(admin: DynsecAdmin, provider: str, device: str) -> Credentials:
    """A client for the device with a fresh password; an existing one is reset to it."""
    role = Role(device_role_name(device), device_acls(provider, device))
    admin.put_role(role)
    credentials = Credentials(device, new_password())
    admin.put_client(Client(device, credentials.password, (role.name,),
                            f"device of provider {provider}"))
    return credentials


def revoke_device(admin: DynsecAdmin, device: str) -> bool:
    """Delete the device's client and role: the broker disconnects it and refuses it from
    now on. False when the broker had no client for it."""
    return admin.remove_client(device, device_role_name(device))


def add_gateway(admin: DynsecAdmin, provider: str) -> Credentials:
    role = Role(gateway_role_name(provider), gateway_acls(provider))
    admin.put_role(role)
    credentials = Credentials(gateway_username(provider), new_password())
    admin.put_client(Client(credentials.username, credentials.password, (role.name,),
                            f"gateway of provider {provider}"))
    return credentials


def grant_owner(admin: DynsecAdmin, owner: str, provider: str, device: str) -> None:
    """Let the owner's tool publish the device's policy (the owner's role gains it)."""
    admin.add_acls(owner_role_name(owner), owner_acls(provider, [device]))


def add_owner(admin: DynsecAdmin, owner: str) -> Credentials:
    """A client for the owner's tool (username = the owner's address), its role kept."""
    rolename = owner_role_name(owner)
    admin.add_acls(rolename, [])
    credentials = Credentials(owner, new_password())
    admin.put_client(Client(owner, credentials.password, (rolename,), "device owner"))
    return credentials


def ensure_owner(admin: DynsecAdmin, owner: str, rotate: bool = False
                 ) -> tuple[Credentials | None, bool]:
    """The owner's tool's client, made with a fresh password if it is missing or
    ``rotate`` asks for one, and whether it existed before. No credentials when it
    exists and keeps its password (which only its holder knows: the broker keeps a
    hash)."""
    existed = has_client(admin, owner)
    if existed and not rotate:
        return None, True
    return add_owner(admin, owner), existed


def has_client(admin: DynsecAdmin, username: str) -> bool:
    try:
        admin.run("getClient", username=username)
    except DynsecError as exc:
        if "not found" in str(exc):
            return False
        raise
    return True
