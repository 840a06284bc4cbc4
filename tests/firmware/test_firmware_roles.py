"""Roles on the firmware (unix port): the voucher, receipt, catalog, error and owner's
policy signatures of one key, made by CPython with their shared fields equal, each hold
only in their own role."""

from __future__ import annotations

import itertools

import pytest
from coincurve import PrivateKey
from eth_utils import keccak
from nanotoll.protocol.messages import Catalog
from support.firmware_support import MPY_TESTS, run_micropython
from support.gateway_support import CHAIN_ID, ESCROW
from support.roles import (
    AMOUNT,
    CHANNEL,
    DATA,
    ERROR_CODE,
    KEY,
    POLICY,
    PRODUCTS,
    PROVIDER,
    REQUEST_HASH,
    UNTIL,
    signatures,
)


@pytest.mark.parametrize("with_key", [False, True], ids=["recovered", "provider key"])
def test_every_signature_holds_only_in_its_own_role_on_the_firmware(with_key: bool) -> None:
    """Receipts and catalogs checked by recovering the signer, and against the provider's
    public key as a device provisioned with it checks them."""
    products_hash = Catalog(PROVIDER, CHANNEL, AMOUNT, UNTIL, PRODUCTS, bytes(64)).products_hash()
    made = signatures()
    result = run_micropython(
        MPY_TESTS / "roles_mp.py", KEY.hex(), str(CHAIN_ID), ESCROW[2:], str(CHANNEL), str(AMOUNT),
        REQUEST_HASH.hex(), keccak(DATA).hex(), str(CHANNEL), str(AMOUNT), str(UNTIL),
        products_hash.hex(), made["voucher"].hex(), made["receipt"].hex(), made["catalog"].hex(),
        made["error"].hex(), made["policy"].hex(), str(int(ERROR_CODE)),
        ",".join(str(v) for v in POLICY.integers),
        *([PrivateKey(KEY).public_key.format(compressed=False)[1:].hex()] if with_key else []))
    assert result.returncode == 0, result.stderr
    verdicts = {tuple(line.split()[:2]): line.split()[2] for line in result.stdout.splitlines()}
    roles = ("voucher", "receipt", "catalog", "error", "policy")
    assert set(verdicts) == set(itertools.product(roles, roles))
    for (made_as, presented), verdict in verdicts.items():
        assert verdict == ("holds" if made_as == presented else "refused"), (made_as, presented)
