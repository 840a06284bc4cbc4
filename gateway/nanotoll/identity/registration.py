"""The provider's ERC-8004 registration file: built from the gateway's offer, served as
JSON, and read back (strictly) by the devices' tools before they trust a provider.

The ERC fixes the frame (``type``, ``name``, ``description``, ``image``, ``services`` of
``{name, endpoint, version}``, ``registrations`` of ``{agentId, agentRegistry}``,
``supportedTrust``); what a device needs to buy lives in two places the ERC leaves open:
the ``MQTT`` service (broker URL, catalog topic, protocol version) and a ``nanotoll``
object (provider, escrow, chain id, products). docs/operator.md shows a whole file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..address import parse_address
from ..protocol import PROTOCOL_VERSION
from ..protocol.messages import PRODUCT_NAME
from .errors import IdentityError
from .reference import parse_registry_name, registry_name

REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
MQTT_SERVICE = "MQTT"
WALLET_SERVICE = "agentWallet"
# Only reputation: the ERC's "crypto-economic" and "tee-attestation" name validations
# through its validation registry, which this project does not implement.
SUPPORTED_TRUST = ("reputation",)
WELL_KNOWN_PATH = "/.well-known/agent-registration.json"
PLAIN_PATH = "/agent-registration.json"
MAX_REGISTRATION_BYTES = 64 * 1024
_BROKER_SCHEMES = {"mqtt": 1883, "mqtts": 8883}
_MAX_UNIT_PRICE = 2**64 - 1
_MAX_ID = 2**256 - 1  # chain ids and agent ids are uint256
MAX_PRODUCTS, MAX_DESCRIPTION = 32, 64  # the products are a catalog's, with its limits


@dataclass(frozen=True, slots=True)
class ProductEntry:
    name: str
    unit_price: int
    description: str


@dataclass(frozen=True, slots=True)
class RegistrationEntry:
    agent_id: int
    agent_registry: str  # eip155:CHAIN:ADDRESS


@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    description: str
    broker_url: str  # mqtt://host:port or mqtts://host:port
    catalog_topic: str
    protocol_version: int
    provider: str  # checksummed: the key that signs the catalog
    escrow: str  # checksummed
    chain_id: int
    products: tuple[ProductEntry, ...]
    registrations: tuple[RegistrationEntry, ...] = ()
    image: str = ""
    web: str = ""  # where this file is served; empty: not listed
    reputation_registry: str = ""  # where payers rate it; empty: not said

    def document(self) -> dict[str, Any]:
        services: list[dict[str, Any]] = [
            {"name": MQTT_SERVICE, "endpoint": self.broker_url,
             "version": str(self.protocol_version), "catalogTopic": self.catalog_topic},
            {"name": WALLET_SERVICE, "endpoint": f"eip155:{self.chain_id}:{self.provider}"},
        ]
        if self.web:
            services.append({"name": "web", "endpoint": self.web})
        extension: dict[str, Any] = {
            "protocolVersion": self.protocol_version,
            "provider": self.provider,
            "escrow": self.escrow,
            "chainId": self.chain_id,
            "products": [{"name": p.name, "unitPrice": p.unit_price,
                          "description": p.description} for p in self.products],
        }
        if self.reputation_registry:
            extension["reputationRegistry"] = self.reputation_registry
        return {
            "type": REGISTRATION_TYPE,
            "name": self.name,
            "description": self.description,
            "image": self.image,
            "services": services,
            "x402Support": False,
            "active": True,
            "registrations": [{"agentId": r.agent_id, "agentRegistry": r.agent_registry}
                              for r in self.registrations],
            "supportedTrust": list(SUPPORTED_TRUST),
            "nanotoll": extension,
        }

    def encode(self) -> bytes:
        return json.dumps(self.document(), indent=1, sort_keys=True).encode() + b"\n"

    def registered_as(self, chain_id: int, registry: str) -> tuple[int, ...]:
        """The agent ids this file claims in ``registry`` on ``chain_id``."""
        name = registry_name(chain_id, registry)
        return tuple(r.agent_id for r in self.registrations if r.agent_registry == name)

    def broker(self) -> tuple[str, int, bool]:
        """(host, port, TLS) of the MQTT endpoint."""
        return broker_endpoint(self.broker_url)


def broker_endpoint(url: str) -> tuple[str, int, bool]:
    """(host, port, TLS) of an ``mqtt://`` or ``mqtts://`` URL."""
    try:
        parts = urlsplit(url)
    except ValueError:  # a bracket that opens no IPv6 address
        raise IdentityError(f"broker URL {url!r}: not a URL") from None
    if parts.scheme not in _BROKER_SCHEMES or not parts.hostname:
        raise IdentityError(f"broker URL {url!r}: expected mqtt://HOST:PORT or "
                            "mqtts://HOST:PORT")
    try:
        port = parts.port or _BROKER_SCHEMES[parts.scheme]
    except ValueError:
        raise IdentityError(f"broker URL {url!r}: bad port") from None
    return parts.hostname, port, parts.scheme == "mqtts"


def _field(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise IdentityError(f"registration file: {where}{key} must be "
                            f"{'text' if kind is str else kind.__name__}, got {value!r}")
    return value


def _integer(table: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    value: int = _field(table, key, int, where)
    if not low <= value <= high:
        raise IdentityError(f"registration file: {where}{key} {value} is not in {low}..{high}")
    return value


def _optional_text(table: dict[str, Any], key: str, where: str) -> str:
    return "" if table.get(key) is None else str(_field(table, key, str, where))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are unique: with a key twice, two readers of one file
    could each take another value."""
    table = dict(pairs)
    if len(table) != len(pairs):
        twice = sorted({key for key, _ in pairs if [k for k, _ in pairs].count(key) > 1})
        raise IdentityError(f"registration file: the key {twice[0]!r} twice in one object")
    return table


def _address(table: dict[str, Any], key: str, where: str) -> str:
    value = _field(table, key, str, where)
    try:
        return parse_address(value)  # mixed case must be the EIP-55 checksum
    except ValueError as exc:
        raise IdentityError(f"registration file: {where}{key}: {exc}") from None


def parse_registration(data: bytes) -> Registration:
    """The file read strictly: anything a device relies on missing or of the wrong type is
    an :class:`IdentityError` naming the field."""
    if len(data) > MAX_REGISTRATION_BYTES:
        raise IdentityError(f"registration file: {len(data)} bytes, more than "
                            f"{MAX_REGISTRATION_BYTES}")
    try:
        document = json.loads(data, object_pairs_hook=_unique_keys)
    except IdentityError:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise IdentityError(f"registration file: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise IdentityError("registration file: not a JSON object")
    if document.get("type") != REGISTRATION_TYPE:
        raise IdentityError(f"registration file: type {document.get('type')!r}, expected "
                            f"{REGISTRATION_TYPE}")
    services = _field(document, "services", list, "")
    mqtt = [s for s in services if isinstance(s, dict) and s.get("name") == MQTT_SERVICE]
    if len(mqtt) != 1:
        raise IdentityError(f"registration file: services must hold one {MQTT_SERVICE} "
                            f"service, found {len(mqtt)}")
    broker_url = _field(mqtt[0], "endpoint", str, "services.MQTT.")
    broker_endpoint(broker_url)
    extension = _field(document, "nanotoll", dict, "")
    products = []
    listed = _field(extension, "products", list, "nanotoll.")
    if len(listed) > MAX_PRODUCTS:
        raise IdentityError(f"registration file: {len(listed)} products, at most {MAX_PRODUCTS}")
    for item in listed:
        if not isinstance(item, dict):
            raise IdentityError("registration file: nanotoll.products holds a non-object")
        name = _field(item, "name", str, "nanotoll.products[].")
        if not PRODUCT_NAME.fullmatch(name):
            raise IdentityError(f"registration file: product name {name!r}")
        description = _field(item, "description", str, f"products.{name}.")
        if len(description) > MAX_DESCRIPTION:
            raise IdentityError(f"registration file: products.{name}.description has more "
                                f"than {MAX_DESCRIPTION} characters")
        products.append(ProductEntry(
            name, _integer(item, "unitPrice", f"products.{name}.", 1, _MAX_UNIT_PRICE),
            description))
    registrations = []
    for item in _field(document, "registrations", list, ""):
        if not isinstance(item, dict):
            raise IdentityError("registration file: registrations holds a non-object")
        agent_registry = _field(item, "agentRegistry", str, "registrations[].")
        chain_id, registry = parse_registry_name(agent_registry)
        registrations.append(RegistrationEntry(_integer(item, "agentId", "registrations[].",
                                                        1, _MAX_ID),
                                               registry_name(chain_id, registry)))
    version = _integer(extension, "protocolVersion", "nanotoll.", PROTOCOL_VERSION,
                       PROTOCOL_VERSION)
    if str(mqtt[0].get("version")) != str(version):
        raise IdentityError(f"registration file: the MQTT service's version "
                            f"{mqtt[0].get('version')!r} is not nanotoll.protocolVersion "
                            f"{version}")
    return Registration(
        name=_field(document, "name", str, ""),
        description=_field(document, "description", str, ""),
        broker_url=broker_url,
        catalog_topic=_field(mqtt[0], "catalogTopic", str, "services.MQTT."),
        protocol_version=version,
        provider=_address(extension, "provider", "nanotoll."),
        escrow=_address(extension, "escrow", "nanotoll."),
        chain_id=_integer(extension, "chainId", "nanotoll.", 1, _MAX_ID),
        products=tuple(products),
        registrations=tuple(registrations),
        image=_optional_text(document, "image", ""),
        web=next((_optional_text(s, "endpoint", "services.web.") for s in services
                  if isinstance(s, dict) and s.get("name") == "web"), ""),
        reputation_registry=(_address(extension, "reputationRegistry", "nanotoll.")
                             if "reputationRegistry" in extension else ""),
    )
