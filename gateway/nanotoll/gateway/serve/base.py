"""The product plugin interface: what a data source implements to be sold by the gateway.

A plugin is a class constructed with a :class:`ProductContext` (its product's name, the
options from its ``[[catalog.products]]`` table, and the provider's domain and signing
function). It declares:

``name``         the product's default name (the config may sell it under another)
``price``        its default price in token units (the config's ``price`` overrides it)
``description``  one line for the catalog (at most 64 characters)
``params``       its params schema (:mod:`.params`), checked before any money moves
``serve(params, now, buyer) -> bytes``
                 the response's ``data`` (CBOR by convention) for checked params at
                 unix time ``now``; ``buyer`` is the device's 20-byte address, for
                 products bound to their holder (the route grant), ignored by others

and optionally ``check(params, now)`` for rules across keys (raise
``ProtocolError(BAD_PARAMS)``, e.g. through :func:`bad_params`), and ``start()`` and
``stop()`` for sources that hold a file or a connection: ``start`` runs when the gateway
loads its products (a failure refuses the start, or the reload), ``stop`` when it stops
or a reload replaces them.

``serve`` runs after the voucher passed every rule and before it is stored: whatever it
raises, a time-out or an answer too large for a response is ``PROVIDER_ERROR`` and charges
nothing. It should be deterministic in (params, now, buyer), so that every gateway process
of a provider serves the same bytes.

Plugins are found by the ``kind`` of their product: a built-in's name, the name of an
entry point in the group ``nanotoll.products``, or ``module:Class``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .params import INT64_MAX, INT64_MIN, Param, Params, Schema, bad_params

ENTRY_POINT_GROUP = "nanotoll.products"

MAX_LAT = 90_000_000  # micro-degrees
MAX_LON = 180_000_000


@dataclass(frozen=True, slots=True)
class ProductContext:
    """What a plugin is given: its product's name and options, and the provider's domain
    separator and signature (a plugin signs with the provider's key without holding it)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    separator: bytes = b""
    sign: Callable[[bytes], bytes] | None = None  # 32-byte digest -> 64-byte signature


class ProductPlugin(Protocol):
    name: str
    price: int
    description: str
    params: Schema

    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        """The data for checked ``params``."""


class Provider(Protocol):
    """A loaded product as the rules and the serve stage see it."""

    name: str

    def validate(self, params: Params, now: int) -> None:
        """Raise ProtocolError(BAD_PARAMS) unless ``params`` fit this product."""

    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        """The data for validated ``params``; ProtocolError(PROVIDER_ERROR) on failure."""


def lat_param(required: bool = True) -> Param:
    return Param("int", required, -MAX_LAT, MAX_LAT)


def lon_param(required: bool = True) -> Param:
    return Param("int", required, -MAX_LON, MAX_LON)


__all__ = [
    "ENTRY_POINT_GROUP",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_LAT",
    "MAX_LON",
    "Param",
    "Params",
    "ProductContext",
    "ProductPlugin",
    "Provider",
    "Schema",
    "bad_params",
    "lat_param",
    "lon_param",
]
