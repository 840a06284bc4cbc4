"""Route access: a time-boxed corridor grant, signed by the provider, checkable by anyone.

The grant is EIP-712 typed data in the nanotoll domain (so it names chain and escrow)::

    RouteGrant(string corridor,address holder,uint64 validFrom,uint64 validUntil)

and travels as CBOR ``[corridor, holder: bytes(20), valid_from, valid_until, sig: bytes(64)]``
with the 64-byte compact low-s signature. :func:`verify_grant` is all a checkpoint needs:
the grant bytes, the domain separator and the provider's address.
"""

from __future__ import annotations

import re

from ...protocol import cbor
from ...protocol.eip712 import typed_digest
from ...protocol.keccak import keccak256
from ...protocol.signing import recover_address
from .base import Param, Params, ProductContext, bad_params

ROUTE_GRANT_TYPE = "RouteGrant(string corridor,address holder,uint64 validFrom,uint64 validUntil)"
ROUTE_GRANT_TYPEHASH = keccak256(ROUTE_GRANT_TYPE.encode())
CORRIDOR = re.compile(r"[A-Z0-9][A-Z0-9-]{0,15}")
MAX_GRANT = 4 * 3600  # seconds one grant may span
MAX_LEAD = 86_400  # how far ahead a grant may start
MAX_U64 = (1 << 64) - 1


def grant_digest(separator: bytes, corridor: str, holder: bytes, valid_from: int,
                 valid_until: int) -> bytes:
    if len(holder) != 20:
        raise ValueError("holder is a 20-byte address")
    struct_hash = keccak256(
        ROUTE_GRANT_TYPEHASH + keccak256(corridor.encode()) + bytes(12) + holder
        + valid_from.to_bytes(32, "big") + valid_until.to_bytes(32, "big"))
    return typed_digest(separator, struct_hash)


class GrantError(ValueError):
    """A route grant that is malformed or not signed by the expected provider."""


def verify_grant(data: bytes, separator: bytes, provider: str, now: int | None = None
                 ) -> tuple[str, bytes, int, int]:
    """(corridor, holder, valid_from, valid_until) of a grant signed by ``provider``;
    with ``now``, also refuse a grant outside its time box."""
    try:
        corridor, holder, valid_from, valid_until, signature = cbor.loads(data)
        signer = recover_address(grant_digest(separator, corridor, holder, valid_from,
                                              valid_until), signature)
    except (ValueError, TypeError) as exc:
        raise GrantError(f"malformed grant: {exc}") from None
    if signer.lower() != provider.lower():
        raise GrantError(f"grant signed by {signer}, not {provider}")
    if now is not None and not valid_from <= now < valid_until:
        raise GrantError(f"grant valid {valid_from}..{valid_until}, now is {now}")
    return corridor, holder, valid_from, valid_until


class RouteProvider:
    """The built-in ``route`` product: grants signed with the provider's key."""

    name = "route"
    price = 25000
    description = "time-boxed corridor access grant"
    params = {"corridor": Param("text", pattern=CORRIDOR.pattern, hint=CORRIDOR.pattern),
              "from": Param("int", low=0, high=MAX_U64),
              "until": Param("int", low=0, high=MAX_U64)}

    def __init__(self, context: ProductContext) -> None:
        if context.sign is None:
            raise ValueError("route grants need the provider's signature")
        self.name = context.name
        self._separator = context.separator
        self._sign = context.sign

    def _window(self, params: Params, now: int) -> tuple[str, int, int]:
        corridor, valid_from, valid_until = params["corridor"], params["from"], params["until"]
        if not valid_from < valid_until:
            raise bad_params("from must be before until")
        if valid_until - valid_from > MAX_GRANT:
            raise bad_params(f"a grant spans at most {MAX_GRANT} s")
        if valid_until <= now:
            raise bad_params("until is in the past")
        if valid_from > now + MAX_LEAD:
            raise bad_params(f"from is more than {MAX_LEAD} s ahead")
        return corridor, valid_from, valid_until

    def check(self, params: Params, now: int) -> None:
        self._window(params, now)

    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        corridor, valid_from, valid_until = self._window(params, now)
        digest = grant_digest(self._separator, corridor, buyer, valid_from, valid_until)
        signature = self._sign(digest)
        return cbor.dumps([corridor, buyer, valid_from, valid_until, signature])
