"""The provider's signed catalog, built from the config and published retained.

A catalog is valid for ``validity`` seconds. The gateway renews it before it runs out:
time is cut into windows of ``validity - overlap`` seconds from an anchor, and window
``k`` has ``seq = config seq + k``, ``valid_from`` at the window's start and
``valid_until = valid_from + validity``. So the next catalog is published ``overlap``
seconds before the current one expires, and requests priced by the previous one are
still honoured until it does. The anchor is the configured ``valid_from``; without one it
is the hour the gateway started in. With ``valid_from`` configured, every gateway
process and every restart computes the same catalog for the same time (devices never
see a seq go backwards); without it, a restart starts again at the configured seq.
"""

from __future__ import annotations

import dataclasses

from ..protocol.messages import Catalog, Product, sign_catalog
from ..protocol.signing import Signer
from .config import CatalogConfig, ProductConfig


def overlap_of(validity: int) -> int:
    """How long before expiry the next catalog is published: a tenth, at most a day."""
    return min(validity // 10, 86_400)


def window(config: CatalogConfig, anchor: int, now: int) -> tuple[int, int]:
    """(seq, valid_from) of the catalog in force at ``now``."""
    step = config.validity - overlap_of(config.validity)
    index = max(0, (now - anchor) // step)
    return config.seq + index, anchor + index * step


def build_catalog(config: CatalogConfig, secret: bytes, separator: bytes, now: int,
                  anchor: int | None = None) -> Catalog:
    """Sign the configured products for the window that holds ``now``. Without a
    configured ``valid_from`` the anchor is the start of the current hour (or the given
    ``anchor``), so processes started in the same hour publish the same bytes."""
    if config.valid_from is not None:
        anchor = config.valid_from
    elif anchor is None:
        anchor = now - now % 3600
    seq, valid_from = window(config, anchor, now)
    config = dataclasses.replace(config, seq=seq)
    signer = Signer(secret)
    products = tuple(_offer(p) for p in config.products)
    return sign_catalog(signer, separator, signer.address, config.seq, valid_from,
                        valid_from + config.validity, products)


def _offer(product: ProductConfig) -> Product:
    if product.price is None:  # the service fills in the plugin's price before signing
        raise ValueError(f"product {product.name} has no price yet")
    return Product(product.name, product.price, product.description or "")
