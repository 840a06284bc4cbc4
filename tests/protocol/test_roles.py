"""Roles: a signature made for one EIP-712 type (voucher, receipt, catalog, error
response, the owner's policy) holds in that role only. One key makes all five here, the
worst case: a device that is also a provider, or a provider key that once signed a
voucher. The shared fields are given the same values (channel = seq, amount = valid_from),
so only the type hash tells them apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_utils import keccak
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import Catalog, Receipt, Request, Response
from nanotoll.protocol.policy import SignedPolicy
from nanotoll.protocol.signing import SignatureError
from nanotoll.protocol.voucher import Voucher
from support.gateway_support import Device
from support.pipeline_rig import Rig
from support.roles import (
    ADDRESS,
    AMOUNT,
    CHANNEL,
    DATA,
    ERROR_CODE,
    POLICY,
    PRODUCTS,
    PROVIDER,
    REQUEST_HASH,
    SEPARATOR,
    UNTIL,
    signatures,
)


def holds_as_voucher(signature: bytes) -> bool:
    return Voucher(CHANNEL, AMOUNT, signature).signer(SEPARATOR) == ADDRESS


def holds_as_receipt(signature: bytes) -> bool:
    receipt = Receipt(CHANNEL, AMOUNT, REQUEST_HASH, keccak(DATA), signature)
    return receipt.signer(SEPARATOR) == ADDRESS


def holds_as_catalog(signature: bytes) -> bool:
    try:
        Catalog(PROVIDER, CHANNEL, AMOUNT, UNTIL, PRODUCTS, signature).verify(SEPARATOR)
    except SignatureError:
        return False
    return True


def holds_as_error(signature: bytes) -> bool:
    error = Response(1, ERROR_CODE, message="underpaid", channel_id=CHANNEL,
                     request_hash=REQUEST_HASH, signature=signature)
    try:
        error.verify_error(SEPARATOR, PROVIDER)
    except SignatureError:
        return False
    return True


def holds_as_policy(signature: bytes) -> bool:
    """What the owner's tool checks of a policy read back: the owner is its signer."""
    try:
        return SignedPolicy(POLICY, signature).signer(SEPARATOR) == PROVIDER
    except SignatureError:
        return False


ROLES: dict[str, Callable[[bytes], bool]] = {
    "voucher": holds_as_voucher,
    "receipt": holds_as_receipt,
    "catalog": holds_as_catalog,
    "error": holds_as_error,
    "policy": holds_as_policy,
}


@pytest.mark.parametrize("made", ROLES)
def test_a_signature_holds_in_its_own_role(made: str) -> None:
    assert ROLES[made](signatures()[made])


@pytest.mark.parametrize(("made", "presented"), list(itertools.permutations(ROLES, 2)))
def test_a_signature_is_refused_in_every_other_role(made: str, presented: str) -> None:
    assert not ROLES[presented](signatures()[made])


@pytest.mark.parametrize("made", ["receipt", "catalog", "error", "policy"])
def test_the_gateway_refuses_any_other_signature_as_a_voucher(
        tmp_path: Path, made: str) -> None:
    """Through the request pipeline: BAD_SIGNATURE, nothing stored or charged."""
    rig = Rig(tmp_path)
    try:
        device = Device(CHANNEL)
        params = {"lat": 52_520_008, "lon": 13_404_954}
        forged = Request(1, "weather", params, 1500, 3,
                         Voucher(CHANNEL, AMOUNT, signatures()[made])).encode()
        outcome, response = rig.send(device, forged)
        assert response.code == ErrorCode.BAD_SIGNATURE and outcome.increment == 0
        assert rig.ledger.lookup(CHANNEL) is None
        genuine = Request(2, "weather", params, 1500, 3,
                          Voucher(CHANNEL, AMOUNT, signatures()["voucher"])).encode()
        outcome, response = rig.send(device, genuine)
        assert response.code == ErrorCode.OK and outcome.increment == AMOUNT
    finally:
        rig.ledger.close()
