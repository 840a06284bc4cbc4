"""Opening, topping up, extending and reclaiming on a real anvil, and every refusal leaving
the chain as it was: the payer's nonce does not move and no channel changes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from eth_account.signers.local import LocalAccount
from nanotoll.chain import EscrowClient
from nanotoll.owner import funding
from nanotoll.owner.errors import OwnerError
from nanotoll.owner.report import channel_rows, known_channels
from nanotoll.protocol.signing import address_of
from nanotoll.servers.anvil import Anvil

DAY = 86_400


def device(index: int) -> str:
    return address_of(hashlib.sha256(b"nanotoll owner test device %d" % index).digest())


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture
def setup(anvil: Anvil) -> tuple[EscrowClient, LocalAccount, LocalAccount]:
    client = EscrowClient.deploy(anvil.w3, anvil.new_account())
    payer, payee = anvil.new_account(), anvil.new_account()
    client.mint(payer, payer.address, 10**12)
    return client, payer, payee


def _fleet(client: EscrowClient, payer: LocalAccount, payee: LocalAccount, count: int,
           deposit: int = 1_000) -> list[int]:
    expiry = funding.chain_time(client) + DAY
    ids, _ = funding.open_channels(client, payer, [device(i) for i in range(count)],
                                   payee.address, deposit, expiry, approve=True)
    return ids


def _nothing_sent(client: EscrowClient, payer: LocalAccount) -> int:
    return int(client.w3.eth.get_transaction_count(payer.address))


def test_open_top_up_extend_reclaim_a_fleet(anvil: Anvil, setup: tuple[EscrowClient, ...]
                                            ) -> None:
    client, payer, payee = setup
    ticks: list[tuple[int, int]] = []
    expiry = funding.chain_time(client) + DAY
    ids, opened = funding.open_channels(
        client, payer, [device(i) for i in range(5)], payee.address, 1_000, expiry,
        approve=True, progress=lambda done, total: ticks.append((done, total)))
    assert ids == [1, 2, 3, 4, 5] and len(opened) == 1 and ticks == [(5, 5)]
    assert [client.channel(i).signer for i in ids] == [device(i) for i in range(5)]

    sent = funding.top_up(client, payer, ids, 250, approve=True)
    assert len(sent) == 1 and sent[0].channels == tuple(ids)
    assert [client.channel(i).deposit for i in ids] == [1_250] * 5

    later = expiry + 30 * DAY
    funding.extend(client, payer, ids, later)
    assert {client.channel(i).expiry for i in ids} == {later}

    anvil.increase_time(31 * DAY + 10)
    before = client.balance_of(payer.address)
    reclaimed = funding.reclaim(client, payer, ids[:2])
    assert len(reclaimed) == 2
    assert client.balance_of(payer.address) - before == 2 * 1_250
    rows = channel_rows(client, known_channels(client, payer.address))
    assert [row.state for row in rows] == ["reclaimed"] * 2 + ["expired"] * 3
    assert rows[2].remaining == 1_250 and rows[2].accepted is None


def test_batches_follow_the_contracts_cap(setup: tuple[EscrowClient, ...]) -> None:
    client, payer, payee = setup
    assert client.max_funding_batch() == 1000
    ids = _fleet(client, payer, payee, 3)
    # A smaller cap than the contract's is not possible from outside; check the split itself.
    assert [list(batch) for batch in funding._batches(list(range(2501)), 1000)] == [
        list(range(0, 1000)), list(range(1000, 2000)), list(range(2000, 2501))]
    ticks: list[tuple[int, int]] = []
    funding.top_up(client, payer, ids, 1, approve=True,
                   progress=lambda done, total: ticks.append((done, total)))
    assert ticks == [(3, 3)]


def test_refusals_name_the_problem_and_send_nothing(anvil: Anvil,
                                                    setup: tuple[EscrowClient, ...]) -> None:
    client, payer, payee = setup
    ids = _fleet(client, payer, payee, 2)
    stranger = anvil.new_account()
    client.mint(stranger, stranger.address, 10**9)
    nonce = _nothing_sent(client, payer)
    deposits = [client.channel(i).deposit for i in ids]

    with pytest.raises(OwnerError, match=r"channel 99 does not exist"):
        funding.top_up(client, payer, [*ids, 99], 10, approve=True)
    with pytest.raises(OwnerError, match=rf"paid for by {payer.address}, not by "
                                         rf"{stranger.address}"):
        funding.top_up(client, stranger, ids, 10, approve=True)
    with pytest.raises(OwnerError, match=r"may pull 0 units.*add --approve"):
        funding.top_up(client, payer, ids, 10)
    with pytest.raises(OwnerError,
                       match=r"holds 999999998000 units.*2000000000000 are needed: fund the"):
        funding.top_up(client, payer, ids, 10**12, approve=True)
    with pytest.raises(OwnerError, match=r"does not fit"):
        funding.top_up(client, payer, ids, 2**64 - 1, approve=True)
    with pytest.raises(OwnerError, match=r"expires at .* s from now"):
        funding.reclaim(client, payer, ids)
    expiry = client.channel(ids[0]).expiry
    with pytest.raises(OwnerError, match=rf"already expires at {expiry}"):
        funding.extend(client, payer, ids, expiry)
    with pytest.raises(OwnerError, match=r"not after the chain's time"):
        funding.extend(client, payer, ids, funding.chain_time(client) - 1)

    assert _nothing_sent(client, payer) == nonce
    assert [client.channel(i).deposit for i in ids] == deposits


def test_a_payer_without_ether_for_gas_is_refused(anvil: Anvil,
                                                  setup: tuple[EscrowClient, ...]) -> None:
    client, payer, payee = setup
    ids = _fleet(client, payer, payee, 1)
    client.approve(payer, 10**6)
    anvil.set_balance(payer.address, 1)
    with pytest.raises(OwnerError, match=r"holds 1 wei.*send it ether first"):
        funding.top_up(client, payer, ids, 10)
    assert client.channel(ids[0]).deposit == 1_000


def test_a_reclaimed_channel_cannot_be_funded(anvil: Anvil,
                                              setup: tuple[EscrowClient, ...]) -> None:
    client, payer, payee = setup
    ids = _fleet(client, payer, payee, 2)
    anvil.increase_time(DAY + 10)
    funding.reclaim(client, payer, ids[:1])
    nonce = _nothing_sent(client, payer)
    with pytest.raises(OwnerError, match=rf"channel {ids[0]} was reclaimed"):
        funding.top_up(client, payer, ids, 10, approve=True)
    with pytest.raises(OwnerError, match=rf"channel {ids[0]} was reclaimed"):
        funding.extend(client, payer, ids, funding.chain_time(client) + DAY)
    assert _nothing_sent(client, payer) == nonce
