"""The escrow through the Python client on a real anvil: deploy, open, redeem, reclaim.

Vouchers are signed with the CPython protocol reference (nanotoll.protocol), so these tests
also check that the contract accepts exactly what the gateway forwards.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest
from eth_account.signers.local import LocalAccount
from nanotoll.chain import ChainError, ChannelSpec, EscrowClient, SkipReason, TxReverted
from nanotoll.protocol import voucher as wire
from nanotoll.protocol.eip712 import domain_separator, voucher_digest
from nanotoll.protocol.signing import address_of
from nanotoll.servers.anvil import Anvil

HOUR = 3600


def device_key(label: str) -> bytes:
    return hashlib.sha256(b"nanotoll test device " + label.encode()).digest()


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture
def parties(anvil: Anvil) -> dict[str, LocalAccount]:
    return {name: anvil.new_account() for name in ("deployer", "payer", "payee", "relayer")}


@pytest.fixture
def escrow(anvil: Anvil, parties: dict[str, LocalAccount]) -> EscrowClient:
    client = EscrowClient.deploy(anvil.w3, parties["deployer"])
    client.mint(parties["payer"], parties["payer"].address, 10**15)
    return client


def chain_now(anvil: Anvil) -> int:
    return int(anvil.w3.eth.get_block("latest")["timestamp"])


def test_domain_and_digest_match_the_python_reference(anvil: Anvil, escrow: EscrowClient) -> None:
    separator = domain_separator(anvil.chain_id, escrow.address)
    assert escrow.domain_separator() == separator
    for channel_id, cumulative in ((1, 1), (2**32 - 1, 2**64 - 1), (77, 123_456)):
        assert escrow.voucher_digest(channel_id, cumulative) == voucher_digest(
            separator, channel_id, cumulative)
    assert escrow.max_redeem_batch() == 1000


def test_deploy_open_redeem_reclaim(anvil: Anvil, escrow: EscrowClient,
                                    parties: dict[str, LocalAccount]) -> None:
    payer, payee = parties["payer"], parties["payee"]
    key = device_key("flow")
    expiry = chain_now(anvil) + HOUR
    channel_id, _ = escrow.open_channel(payer, address_of(key), payee.address, 1_000_000, expiry)
    info = escrow.channel(channel_id)
    assert (info.payer, info.signer, info.payee) == (payer.address, address_of(key),
                                                     payee.address)
    assert (info.deposit, info.paid, info.expiry, info.closed) == (1_000_000, 0, expiry, False)

    separator = escrow.domain_separator()
    first = wire.sign(key, separator, channel_id, 250_000).pack()
    second = wire.sign(key, separator, channel_id, 400_000).pack()
    # The gateway forwards the bytes as they came; an older voucher after a newer one is stale.
    result = escrow.redeem(payee, info.route, second + first)
    assert result.total == 400_000
    assert [(r.channel_id, r.cumulative, r.amount) for r in result.redeemed] == [
        (channel_id, 400_000, 400_000)]
    assert [(s.index, s.reason) for s in result.skipped] == [(1, SkipReason.STALE)]
    assert escrow.balance_of(payee.address) == 400_000
    assert escrow.channel(channel_id).paid == 400_000

    with pytest.raises(TxReverted, match="NotExpired"):
        escrow.reclaim(payer, channel_id)
    anvil.increase_time(HOUR + 1)
    late = wire.sign(key, separator, channel_id, 500_000).pack()
    assert escrow.redeem(payee, info.route, late).skipped[0].reason == SkipReason.EXPIRED

    before = escrow.balance_of(payer.address)
    refund, _ = escrow.reclaim(payer, channel_id)
    assert refund == 600_000
    assert escrow.balance_of(payer.address) == before + refund
    closed = escrow.channel(channel_id)
    assert closed.closed and closed.paid + refund == closed.deposit
    assert escrow.balance_of(escrow.address) == 0


def test_every_skip_reason_and_relayed_redeem(anvil: Anvil, escrow: EscrowClient,
                                              parties: dict[str, LocalAccount]) -> None:
    payer, payee, relayer = parties["payer"], parties["payee"], parties["relayer"]
    key, other = device_key("a"), device_key("b")
    expiry = chain_now(anvil) + HOUR
    ids, _ = escrow.open_many(payer, [
        ChannelSpec(address_of(key), payee.address, 1000, expiry),
        ChannelSpec(address_of(key), payee.address, 1000, expiry),
        ChannelSpec(address_of(key), relayer.address, 1000, expiry),  # another route
    ])
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]
    route = escrow.route_of(payee.address)
    separator = escrow.domain_separator()
    batch = b"".join([
        wire.sign(key, separator, ids[0], 600).pack(),          # pays 600
        wire.sign(other, separator, ids[1], 600).pack(),        # wrong signer
        wire.sign(key, separator, ids[1], 1001).pack(),         # above the deposit
        wire.sign(key, separator, ids[2], 10).pack(),           # other payee's channel
        wire.sign(key, separator, 999_999, 10).pack(),          # no such channel
        wire.sign(key, separator, ids[0], 600).pack(),          # replay
        wire.sign(key, separator, ids[1], 1000).pack(),         # pays 1000
    ])
    result = escrow.redeem(relayer, route, batch)  # a relayer pays gas; the payee is paid
    assert result.total == 1600
    assert escrow.balance_of(payee.address) == 1600
    assert [(s.index, s.reason) for s in result.skipped] == [
        (1, SkipReason.BAD_SIGNATURE), (2, SkipReason.OVER_DEPOSIT),
        (3, SkipReason.WRONG_ROUTE), (4, SkipReason.UNKNOWN_CHANNEL), (5, SkipReason.STALE)]
    assert [r.amount for r in result.redeemed] == [600, 1000]


def test_malformed_batches_revert(escrow: EscrowClient, anvil: Anvil,
                                  parties: dict[str, LocalAccount]) -> None:
    payer, payee = parties["payer"], parties["payee"]
    key = device_key("m")
    channel_id, _ = escrow.open_channel(payer, address_of(key), payee.address, 10,
                                        chain_now(anvil) + HOUR)
    route = escrow.route_of(payee.address)
    good = wire.sign(key, escrow.domain_separator(), channel_id, 5).pack()
    for bad, error in ((b"", "EmptyBatch"), (good[:-1], "MalformedBatch(75)"),
                       (good + b"\x00", "MalformedBatch(77)")):
        with pytest.raises(TxReverted, match=re.escape(error)):
            escrow.redeem(payee, route, bad)
    with pytest.raises(TxReverted, match="UnknownRoute"):
        escrow.redeem(payee, route + 1000, good)
    assert escrow.redeem(payee, route, good).total == 5


def test_channel_reads_at_their_edges(anvil: Anvil, escrow: EscrowClient,
                                      parties: dict[str, LocalAccount]) -> None:
    """The channel read builds its call from the ABI once: the same answers as the
    contract gives, ids outside uint32 refused before any call, and an address without
    the escrow named as such."""
    payer, payee = parties["payer"], parties["payee"]
    channel_id, _ = escrow.open_channel(payer, address_of(device_key("edge")), payee.address,
                                        77, chain_now(anvil) + HOUR)
    state = escrow.channel(channel_id)
    assert (state.exists, state.deposit, state.payee) == (True, 77, payee.address)
    # field for field what web3's own contract call decodes
    (payer_address, signer, payee_address, token, route, deposit, paid, expiry,
     closed) = escrow.escrow.functions.channel(channel_id).call()
    assert (state.payer, state.signer, state.payee, state.token, state.route, state.deposit,
            state.paid, state.expiry, state.closed) == (
        payer_address, signer, payee_address, token, route, deposit, paid, expiry, closed)
    never = escrow.channel(2**32 - 1)  # the largest id: all zeros, as the contract says
    assert not never.exists and never.deposit == 0
    for bad in (-1, 2**32):
        with pytest.raises(ValueError, match="uint32"):
            escrow.channel(bad)
    elsewhere = EscrowClient(anvil.w3, payer.address)  # an account, no contract
    with pytest.raises(ChainError, match="no channel"):
        elsewhere.channel(channel_id)
