"""The registration file of one gateway, made from its config and its current catalog:
what the gateway serves and what ``nanotoll provider register`` points the registry at."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..protocol import PROTOCOL_VERSION
from ..protocol.messages import Catalog
from ..protocol.topics import catalog_topic
from .errors import IdentityError
from .reference import registry_name
from .registration import WELL_KNOWN_PATH, ProductEntry, Registration, RegistrationEntry

if TYPE_CHECKING:
    from ..gateway.config import GatewayConfig


def agent_uri(config: GatewayConfig) -> str:
    """Where the file is read: [identity] agent_uri, else the web listener's well-known
    path (which needs [metrics] port)."""
    if config.identity.agent_uri is not None:
        return config.identity.agent_uri
    if config.metrics_port is None:
        raise IdentityError(f"{config.source}: [identity] agent_uri is not set and there is "
                            "no web listener ([metrics] port) to serve the file at")
    host = config.metrics.host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{host}:{config.metrics_port}{WELL_KNOWN_PATH}"


def broker_url(config: GatewayConfig) -> str:
    if config.identity.broker_url is not None:
        return config.identity.broker_url
    scheme = "mqtts" if config.mqtt.ca_file is not None else "mqtt"
    return f"{scheme}://{config.mqtt.host}:{config.mqtt.port}"


def provider_registration(config: GatewayConfig, provider: str, catalog: Catalog,
                          agent_ids: Sequence[int] = ()) -> Registration:
    """The file for ``provider`` (checksummed) selling ``catalog``; ``agent_ids`` are its
    ids in [identity] identity_registry (none when no registry is configured)."""
    identity = config.identity
    registrations: tuple[RegistrationEntry, ...] = ()
    if identity.identity_registry is not None:
        name = registry_name(config.chain.chain_id, identity.identity_registry)
        registrations = tuple(RegistrationEntry(i, name) for i in agent_ids)
    try:
        web = agent_uri(config)
    except IdentityError:
        web = ""
    return Registration(
        name=identity.name, description=identity.description, image=identity.image,
        broker_url=broker_url(config),
        catalog_topic=catalog_topic(provider[2:].lower()),
        protocol_version=PROTOCOL_VERSION, provider=provider,
        escrow=config.chain.escrow, chain_id=config.chain.chain_id,
        products=tuple(ProductEntry(p.name, p.unit_price, p.description)
                       for p in catalog.products),
        registrations=registrations, web=web,
        reputation_registry=identity.reputation_registry or "")
