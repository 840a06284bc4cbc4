"""Serving, its own room: the product plugin interface (``base``, ``params``), the loader
that finds plugins (``loader``) and the guard each runs behind (``guard``), the three
offline built-ins, the receipts signed over what they serve, and the serve stage that
puts the two together (``answer``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ...protocol.signing import Signer
from ..config import ProductConfig
from .answer import Answerer
from .base import ProductContext, ProductPlugin, Provider
from .guard import GuardedProduct
from .loader import (
    BUILTINS,
    LoadedProduct,
    ProductLoadError,
    ProductSpec,
    close_products,
    load_products,
)
from .receipts import ReceiptSigner
from .route import verify_grant

UnknownProviderKind = ProductLoadError  # the name the start-up code catches


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What the gateway lends its products: the provider's key (products sign with it
    through :attr:`ProductContext.sign`, never holding it) and its domain separator."""

    secret: bytes
    separator: bytes


def spec_of(product: ProductConfig) -> ProductSpec:
    return ProductSpec(product.name, product.kind, product.price, product.description,
                       product.timeout, product.options)


def load_configured(products: Iterable[ProductConfig], context: ProviderContext
                    ) -> dict[str, LoadedProduct]:
    """Load and start the configured products (ProductLoadError names the one that
    failed; none is left running then)."""
    return load_products((spec_of(p) for p in products), context.separator,
                         Signer(context.secret).sign)


def build_providers(products: Iterable[ProductConfig], context: ProviderContext
                    ) -> dict[str, Provider]:
    """One provider per product, by name (what the rules are given)."""
    return {name: loaded.provider
            for name, loaded in load_configured(products, context).items()}


__all__ = [
    "BUILTINS",
    "Answerer",
    "GuardedProduct",
    "LoadedProduct",
    "ProductContext",
    "ProductLoadError",
    "ProductPlugin",
    "Provider",
    "ProviderContext",
    "ReceiptSigner",
    "UnknownProviderKind",
    "build_providers",
    "close_products",
    "load_configured",
    "verify_grant",
]
