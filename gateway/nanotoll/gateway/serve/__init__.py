"""Serving, its own room: the data providers (the plugin interface in ``base``, the three
offline built-ins), the receipts signed over what they serve, and the serve stage that
puts the two together (``answer``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..config import ProductConfig
from .answer import Answerer
from .base import Provider, ProviderContext
from .navigation import NavigationProvider
from .receipts import ReceiptSigner
from .route import RouteProvider, verify_grant
from .weather import WeatherProvider

BUILTINS: dict[str, Callable[[str, ProviderContext], Provider]] = {
    "weather": lambda name, _ctx: WeatherProvider(name),
    "nav": lambda name, _ctx: NavigationProvider(name),
    "navigation": lambda name, _ctx: NavigationProvider(name),
    "route": lambda name, ctx: RouteProvider(ctx, name),
    "route_access": lambda name, ctx: RouteProvider(ctx, name),
}


class UnknownProviderKind(ValueError):
    pass


def build_providers(products: Iterable[ProductConfig], context: ProviderContext
                    ) -> dict[str, Provider]:
    """One provider per catalog product, by its ``kind``."""
    providers: dict[str, Provider] = {}
    for product in products:
        factory = BUILTINS.get(product.kind)
        if factory is None:
            raise UnknownProviderKind(
                f"product {product.name}: unknown kind {product.kind!r} "
                f"(built-ins: {', '.join(sorted(BUILTINS))})")
        providers[product.name] = factory(product.name, context)
    return providers


__all__ = [
    "BUILTINS",
    "Answerer",
    "Provider",
    "ProviderContext",
    "ReceiptSigner",
    "UnknownProviderKind",
    "build_providers",
    "verify_grant",
]
