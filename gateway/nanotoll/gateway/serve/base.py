"""The provider plugin interface: validate a request's params, serve its data.

A provider is one product's data source. ``validate`` runs before any money moves and
raises ``ProtocolError(BAD_PARAMS)``; ``serve`` runs after the voucher passed every rule
and before it is stored, and returns the response's ``data`` bytes (CBOR by convention).
Any other exception from ``serve`` is answered ``PROVIDER_ERROR`` and charges nothing.
Providers are deterministic in (params, now, buyer) and hold no mutable state, so any
gateway process of a provider serves the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Protocol

from ...protocol.errors import ErrorCode, ProtocolError

Params = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a provider may use besides the request: the provider's key and domain."""

    secret: bytes  # the provider's private key (route grants are signed with it)
    separator: bytes  # EIP-712 domain separator of (chain id, escrow)


class Provider(Protocol):
    name: str

    def validate(self, params: Params, now: int) -> None:
        """Raise ProtocolError(BAD_PARAMS) unless ``params`` fit this product."""

    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        """The data for validated ``params``; ``buyer`` is the device's 20-byte address."""


def bad_params(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_PARAMS, message)


def check_keys(params: Params, required: AbstractSet[str],
               optional: AbstractSet[str] = frozenset()) -> None:
    missing = required - params.keys()
    if missing:
        raise bad_params(f"missing params: {', '.join(sorted(missing))}")
    unknown = params.keys() - required - optional
    if unknown:
        raise bad_params(f"unknown params: {', '.join(sorted(unknown))}")


def int_param(params: Params, key: str, low: int, high: int, default: int | None = None) -> int:
    value = params.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_params(f"{key} must be an integer")
    if not low <= value <= high:
        raise bad_params(f"{key} must be in {low}..{high}, got {value}")
    return value


def text_param(params: Params, key: str, pattern: re.Pattern[str], hint: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise bad_params(f"{key} must be {hint}")
    return value


MAX_LAT = 90_000_000  # micro-degrees
MAX_LON = 180_000_000
