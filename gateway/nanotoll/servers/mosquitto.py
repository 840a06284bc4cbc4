"""mosquitto 2 on a free loopback port, for tests, the demo, the benches and the fleet.

By default it runs as ``nanotoll broker run`` does (a TLS listener, credentials, the
dynamic-security plugin's ACLs: ``nanotoll.broker``), in a broker folder made for it;
``plain_port=True`` adds a plain listener on loopback (the same logins and ACLs) for
clients without TLS. ``secure=False`` is the anonymous plain broker, for a bench or a
test that names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .process import LOOPBACK, ManagedProcess, ServiceError, free_port, port_in_use, wait_for_port
from .tools import mosquitto_binary

if TYPE_CHECKING:
    from ..broker.dynsec import DynsecAdmin
    from ..broker.site import BrokerSite


class Mosquitto(ManagedProcess):
    """mosquitto 2 on loopback, with persistence so restarts keep sessions: TLS with
    credentials and ACLs, or (``secure=False``) anonymous and plain."""

    name = "mosquitto"

    def __init__(self, port: int | None = None, workdir: Path | None = None, *,
                 secure: bool = True, plain_port: bool = False,
                 providers: Sequence[str] = ()) -> None:
        super().__init__(workdir)
        self.host = LOOPBACK
        self.port = port or free_port()
        self.binary = mosquitto_binary()
        self.secure = secure
        self.plain_port: int | None = free_port() if secure and plain_port else None
        self._providers = tuple(providers)
        self.site: BrokerSite | None = None

    @property
    def ca_file(self) -> Path | None:
        """The CA a client verifies this broker with; None for the anonymous broker."""
        return self.site.ca_file if self.site is not None else None

    def write_ca_der(self, path: Path) -> Path:
        """The broker's CA written to ``path`` in DER, as a device keeps it (MicroPython's
        mbedTLS refuses PEM as cadata)."""
        import ssl

        if self.site is None:
            raise ServiceError("the anonymous broker has no CA: start it with secure=True")
        path.write_bytes(ssl.PEM_cert_to_DER_cert(self.site.ca_file.read_text()))
        return path

    def gateway_login(self, provider: str) -> dict[str, str]:
        """The ``[mqtt]`` keys a provider's gateway logs in with here (its CA, client and
        password file); none on the anonymous broker."""
        from ..broker.site import gateway_username

        if self.site is None:
            return {}
        return {"ca_file": str(self.site.ca_file), "username": gateway_username(provider),
                "password_file": str(self.site.gateway_password_file(provider))}

    def admin(self) -> DynsecAdmin:
        """The dynamic-security admin of the secure broker (a ``with`` block)."""
        from ..broker.dynsec import DynsecAdmin

        if self.site is None:
            raise ServiceError("the anonymous broker has no admin: start it with secure=True")
        return DynsecAdmin(self.host, self.port, self.site.admin_password(),
                           ca_file=str(self.site.ca_file))

    def start(self) -> None:
        if port_in_use(self.port):
            raise ServiceError(f"port {self.port} is taken: stop what listens there or pick "
                               "another port")
        if self.secure:
            self._start_secure()
            return
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} {LOOPBACK}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            # Without it, Nagle's algorithm holds small QoS 1 packets ~40 ms on loopback.
            "set_tcp_nodelay true\n"
            "max_inflight_messages 200\n"
            "max_queued_messages 100000\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\n"
        )
        self.spawn([self.binary, "-c", str(config)])
        wait_for_port(self.port, self.process, 10, "mosquitto", self.log_path)

    def _start_secure(self) -> None:
        from ..broker.site import BrokerSite, Listener

        if self.site is None:
            self.site = BrokerSite(self.workdir / "site")
            if not self.site.initialised():
                self.site.init(Listener(self.host, self.port, self.plain_port),
                               providers=self._providers)
        self.spawn([self.binary, "-c", str(self.site.config_file)])
        wait_for_port(self.port, self.process, 10, "mosquitto", self.log_path)

    def restart(self) -> None:
        """Stop and start on the same port and store: what a broker crash looks like."""
        self.stop()
        self.start()
