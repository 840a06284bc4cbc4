"""The fleet's provider as an ERC-8004 agent (``fleet run --provider agent``).

Gateway 1 gets a web listener and an ``[identity]`` table naming registries deployed on
the fleet's chain; the provider registers there, and the fleet then finds it the way an
owner would, from its agent reference alone: registry entry, registration file and
retained catalog must agree, and the escrow must be the one the fleet funds. Channels
are opened to the wallet found and devices told of the broker found, so a provider the
registry does not vouch for stops the run before any channel or device.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from ..identity.errors import IdentityError
from ..identity.registry import Registries
from .options import FleetError

AGENT_NAME = "nanotoll fleet provider"


def identity_tables(registries: Registries, web_port: int) -> dict[str, dict[str, Any]]:
    """Gateway 1's config tables: the listener that serves the registration file, and
    the registries it registers in."""
    return {"metrics": {"host": "127.0.0.1", "port": web_port},
            "identity": {"identity_registry": registries.identity,
                         "reputation_registry": registries.reputation,
                         "name": AGENT_NAME}}


@dataclass(frozen=True, slots=True)
class FleetAgent:
    """What discovery vouched for: the devices are provisioned from it."""

    reference: str  # eip155:CHAIN:REGISTRY/AGENT_ID
    provider: str  # the agent's wallet, checksummed: the channels' provider
    broker_host: str
    broker_port: int
    broker_tls: bool
    catalog_seq: int

    def as_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "provider": self.provider,
                "broker": f"{'mqtts' if self.broker_tls else 'mqtt'}://{self.broker_host}:"
                          f"{self.broker_port}",
                "catalog_seq": self.catalog_seq}


def register_and_discover(w3: Web3, provider: LocalAccount, config_path: Path, escrow: str,
                          login: tuple[str, str] | None = None,
                          ca_file: str | None = None) -> FleetAgent:
    """Register ``provider`` (owner and wallet) as gateway ``config_path`` describes it,
    then discover it against ``escrow``; :class:`FleetError` naming the disagreement.
    ``login`` and ``ca_file`` are what the catalog is read with (a device's client on a
    broker with rights)."""
    from ..gateway.config import load_config
    from ..identity.discovery import discover
    from ..identity.provider_file import agent_uri
    from ..identity.reference import AgentReference
    from ..identity.register import register_agent
    from ..identity.registry import IdentityRegistryClient
    from ..identity.retained import BrokerEndpoint, read_retained

    config = load_config(config_path)
    registry = config.identity.identity_registry
    if registry is None:
        raise FleetError(f"{config_path}: no [identity] identity_registry to register in")

    def read_catalog(endpoint: BrokerEndpoint, topic: str) -> bytes | None:
        if login is not None:
            endpoint = replace(endpoint, username=login[0], password=login[1])
        if ca_file is not None:
            endpoint = replace(endpoint, ca_file=ca_file)
        return read_retained(endpoint, topic)

    try:
        outcome = register_agent(IdentityRegistryClient(w3, registry), provider,
                                 agent_uri(config), bytes(provider.key), provider.address,
                                 int(w3.eth.get_block("latest")["timestamp"]))
    except IdentityError as exc:
        raise FleetError(f"registering the provider: {exc}") from None
    reference = AgentReference(config.chain.chain_id, registry, outcome.agent_id)
    try:
        found = discover(w3, reference, escrow, read_catalog)
    except IdentityError as exc:
        raise FleetError(f"provider {reference} refused: {exc}") from None
    return FleetAgent(str(reference), found.wallet, found.broker.host, found.broker.port,
                      found.broker.tls, found.catalog.seq)
