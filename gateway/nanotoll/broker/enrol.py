"""Enrolling a device with the broker at provisioning: its client, its role and the
owner's right to publish its policy, made through the running broker's admin; the CA
the device verifies the broker with."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from .clients import Credentials, add_device, grant_owner, revoke_device
from .dynsec import DynsecAdmin, DynsecError
from .site import BrokerSite, SiteError


class EnrolError(RuntimeError):
    """The broker could not enrol or revoke a device; the message names the broker."""


@dataclass(frozen=True)
class BrokerEnrolment:
    """The operator's broker folder (``nanotoll broker init``) and where the broker is."""

    site: BrokerSite
    host: str
    port: int

    @classmethod
    def from_folder(cls, folder: Path, host: str, port: int) -> BrokerEnrolment:
        site = BrokerSite(folder)
        if not site.initialised():
            raise EnrolError(f"{folder} holds no broker: give the folder `nanotoll broker "
                             "init` made")
        return cls(site, host, port)

    def ca_der(self) -> bytes:
        """The CA certificate in DER, the form MicroPython's mbedTLS takes as ``cadata``
        (it refuses PEM there)."""
        try:
            return ssl.PEM_cert_to_DER_cert(self.site.ca_file.read_text())
        except (OSError, ValueError) as exc:
            raise EnrolError(f"cannot read the broker's CA {self.site.ca_file}: {exc}") from exc

    def _admin(self) -> DynsecAdmin:
        try:
            password = self.site.admin_password()
        except SiteError as exc:
            raise EnrolError(str(exc)) from exc
        return DynsecAdmin(self.host, self.port, password, ca_file=str(self.site.ca_file))

    def enrol(self, provider: str, device: str, owner: str) -> Credentials:
        """A fresh client for the device (username = its address); the owner may publish
        its policy."""
        try:
            with self._admin() as admin:
                credentials = add_device(admin, provider, device)
                grant_owner(admin, owner, provider, device)
        except DynsecError as exc:
            raise EnrolError(f"cannot enrol device {device} with the broker: {exc}") from exc
        return credentials

    def revoke(self, device: str) -> bool:
        """Delete the device's client: the broker cuts it off and refuses it from now on."""
        try:
            with self._admin() as admin:
                return revoke_device(admin, device)
        except DynsecError as exc:
            raise EnrolError(f"cannot revoke device {device} on the broker: {exc}") from exc
