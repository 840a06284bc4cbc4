"""Finding a provider from its ERC-8004 agent reference, and refusing one whose registry
entry, registration file and catalog do not agree.

The checks, in order: the node is on the reference's chain; the agent exists; its URI
is fetched (http/https) and parsed; the file claims this very agent; the file's provider
is the agent's wallet; the file's chain and escrow are the ones the caller funds; the
catalog retained on the file's broker is signed by that wallet for that escrow. Only a
provider that passes all of them is returned, so a caller that writes to a device after
``discover`` never writes a provider the registry does not vouch for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from eth_utils.address import to_checksum_address
from web3 import Web3

from ..protocol.eip712 import domain_separator
from ..protocol.errors import ProtocolError
from ..protocol.messages import Catalog, decode_catalog
from ..protocol.signing import SignatureError
from ..protocol.topics import catalog_topic
from .errors import IdentityError
from .fetch import fetch_document
from .reference import AgentReference
from .registration import Registration, parse_registration
from .registry import IdentityRegistryClient
from .retained import BrokerEndpoint, read_retained

CatalogReader = Callable[[BrokerEndpoint, str], bytes | None]


@dataclass(frozen=True, slots=True)
class DiscoveredProvider:
    reference: AgentReference
    agent_uri: str
    registration: Registration
    wallet: str  # checksummed: the provider address a device is provisioned with
    broker: BrokerEndpoint
    catalog: Catalog


def discover(w3: Web3, reference: AgentReference, escrow: str,
             read_catalog: CatalogReader = read_retained,
             broker_ca: str | None = None) -> DiscoveredProvider:
    """The provider ``reference`` names, checked against ``escrow`` (the escrow the
    caller opens channels on); :class:`IdentityError` naming the first disagreement."""
    chain_id = int(w3.eth.chain_id)
    if chain_id != reference.chain_id:
        raise IdentityError(f"{reference} is on chain {reference.chain_id}, the node answers "
                            f"for chain {chain_id}")
    registry = IdentityRegistryClient(w3, reference.registry)
    registry.check_deployed()
    uri = registry.agent_uri(reference.agent_id)  # IdentityError when unregistered
    wallet = registry.agent_wallet(reference.agent_id)
    if wallet is None:
        raise IdentityError(f"agent {reference} has no agentWallet (cleared by a transfer?): "
                            "nothing says which key signs its catalog")
    registration = parse_registration(fetch_document(uri))
    if reference.agent_id not in registration.registered_as(chain_id, reference.registry):
        raise IdentityError(f"the registration file at {uri} does not list agent "
                            f"{reference} in its registrations")
    if registration.provider != wallet:
        raise IdentityError(f"the registration file at {uri} names provider "
                            f"{registration.provider}, the registry's agentWallet is {wallet}")
    if registration.chain_id != chain_id:
        raise IdentityError(f"the registration file at {uri} is for chain "
                            f"{registration.chain_id}, not {chain_id}")
    escrow = to_checksum_address(escrow)
    if registration.escrow != escrow:
        raise IdentityError(f"the registration file at {uri} names escrow "
                            f"{registration.escrow}, not {escrow}: its vouchers would not be "
                            "redeemable on the channel opened here")
    topic = catalog_topic(wallet[2:].lower())
    if registration.catalog_topic != topic:
        raise IdentityError(f"the registration file at {uri} points at catalog topic "
                            f"{registration.catalog_topic}, not the wallet's {topic}")
    host, port, tls = registration.broker()
    broker = BrokerEndpoint(host, port, tls, broker_ca)
    catalog = _verified_catalog(read_catalog(broker, topic), wallet, chain_id, escrow,
                                f"{registration.broker_url} {topic}")
    return DiscoveredProvider(reference, uri, registration, wallet, broker, catalog)


def _verified_catalog(raw: bytes | None, wallet: str, chain_id: int, escrow: str,
                      where: str) -> Catalog:
    if raw is None:
        raise IdentityError(f"no catalog is retained at {where}: the provider's gateway is "
                            "not running there")
    try:
        catalog = decode_catalog(raw)
        catalog.verify(domain_separator(chain_id, escrow))
    except (ProtocolError, SignatureError, ValueError) as exc:
        raise IdentityError(f"the catalog at {where} does not verify for escrow {escrow} "
                            f"on chain {chain_id}: {exc}") from None
    signer = to_checksum_address(catalog.provider)
    if signer != wallet:
        raise IdentityError(f"the catalog at {where} is signed by {signer}, not by the "
                            f"agent's wallet {wallet}")
    return catalog


def discover_at(rpc_url: str, reference_text: str, escrow: str,
                broker_ca: str | None = None) -> DiscoveredProvider:
    """:func:`discover` for a command line: the reference as typed, the node's URL."""
    from .reference import parse_agent_reference

    reference = parse_agent_reference(reference_text)
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    try:
        w3.eth.chain_id  # noqa: B018 (fail here, naming the node, if it is not there)
    except Exception as exc:
        raise IdentityError(f"no Ethereum node answers at {rpc_url}: {exc}") from None
    return discover(w3, reference, escrow, broker_ca=broker_ca)
