"""The provider's signed catalog, built from the config and published retained."""

from __future__ import annotations

from ..protocol.messages import Catalog, Product, sign_catalog
from ..protocol.signing import address_of
from .config import CatalogConfig


def build_catalog(config: CatalogConfig, secret: bytes, separator: bytes, now: int) -> Catalog:
    """Sign the configured products. Without a configured ``valid_from`` the catalog is
    valid from the start of the current hour, so processes started in the same hour
    publish the same bytes."""
    valid_from = config.valid_from if config.valid_from is not None else now - now % 3600
    provider = bytes.fromhex(address_of(secret)[2:])
    products = tuple(Product(p.name, p.price, p.description) for p in config.products)
    return sign_catalog(secret, separator, provider, config.seq, valid_from,
                        valid_from + config.validity, products)
