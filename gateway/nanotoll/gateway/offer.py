"""What the gateway sells right now: the loaded products and the catalog signed over them.

An :class:`Offer` is built whole from a ``[catalog]`` config and never changed: a reload
builds a new one beside the running one and swaps it in only once every product loaded
and started, so a bad config leaves the running offer untouched. The new offer's seq is
lifted above the running catalog's (``floor``), and its renewals keep counting up from
there, so devices never see a seq go backwards after a reload.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ..protocol.messages import Catalog
from .catalog import build_catalog
from .config import CatalogConfig
from .serve import LoadedProduct, Provider, ProviderContext, close_products, load_configured
from .serve.params import describe_schema


class Offer:
    def __init__(self, config: CatalogConfig, context: ProviderContext, anchor: int,
                 now: int, floor: int = 0) -> None:
        """Load and start the products of ``config`` (ProductLoadError otherwise); the
        catalog in force at ``now`` gets a seq above ``floor``."""
        self._context = context
        self._anchor = anchor
        self.products: Mapping[str, LoadedProduct] = load_configured(config.products, context)
        self.config = dataclasses.replace(config, products=tuple(
            dataclasses.replace(p, price=self.products[p.name].price,
                                description=self.products[p.name].description)
            for p in config.products))
        self._lift = 0
        seq = self.catalog_at(now).seq
        if seq <= floor:
            self._lift = floor + 1 - seq

    @property
    def providers(self) -> dict[str, Provider]:
        return {name: product.provider for name, product in self.products.items()}

    def catalog_at(self, now: int) -> Catalog:
        """The signed catalog of the renewal window that holds ``now``."""
        config = dataclasses.replace(self.config, seq=self.config.seq + self._lift)
        return build_catalog(config, self._context.secret, self._context.separator, now,
                             self._anchor)

    def describe(self) -> list[dict[str, object]]:
        """Each product's name, kind, price and params schema (the dashboard's API)."""
        kinds = {p.name: p.kind for p in self.config.products}
        return [{"name": name, "kind": kinds[name], "price": product.price,
                 "description": product.description,
                 "params": describe_schema(product.provider.plugin.params)}
                for name, product in self.products.items()]

    def close(self) -> None:
        close_products(self.products.values())
