"""``nanotoll bench gas``: what redeeming vouchers costs on a real node (anvil).

Every figure is a transaction's ``gasUsed`` (21,000 base and calldata included):

- ``gas_open``: one ``open`` on an existing (payee, token) route, allowance already given;
  ``gas_open_new_route``: the first channel to a payee, which also registers the route;
- ``gas_open_many_per_channel``: ``openMany`` of 100 channels, divided by 100;
- ``gas_redeem_single``: a batch of one voucher;
- ``gas_batch_100``: one batch of 100 vouchers, one per channel, for 100 channels opened
  together (consecutive ids, as a fleet gets from ``openMany``);
- ``gas_per_channel_batch_100``: the marginal cost, (batch of 100 − single) / 99;
- ``gas_per_channel_batch_100_scattered``: the same for 100 channels with no two on one ledger
  slot (every other id), the layout's worst case;
- ``gas_top_up``: one ``topUp``; ``gas_top_up_many_per_channel`` and
  ``gas_extend_many_per_channel``: ``topUpMany`` and ``extendMany`` over the 100 channels
  opened together, divided by 100 (an owner funding or extending a fleet). They run after
  the redeems, so the figures above do not depend on them.

Before measuring, the payee receives one redemption, so its token balance is not zero: the
first transfer to an empty balance costs 17,100 more once in a payee's life, not per batch.
Every run sends the same bytes (see GENESIS_TIMESTAMP), so it gives the same figures.
"""

from __future__ import annotations

import hashlib
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ..chain.client import ChannelSpec, EscrowClient
from ..protocol import voucher as wire
from ..protocol.signing import address_of
from ..servers.anvil import Anvil

BATCH = 100
DEPOSIT = 50_000_000  # 50 tUSD in 6-decimal units
TTL = 30 * 86_400
# Calldata costs 4 gas a zero byte and 16 a non-zero one, so every byte a run sends is
# fixed: the accounts (and with the deployer the escrow's address, its EIP-712 domain and
# so every signature) come from fixed keys, and the chain starts at a fixed time whose
# expiry (+ TTL + the run's seconds) holds no zero byte.
GENESIS_TIMESTAMP = 1_800_000_128


def _key(index: int) -> bytes:
    return hashlib.sha256(b"nanotoll gas bench device %d" % index).digest()


def _funded(node: Anvil, role: bytes) -> LocalAccount:
    account: LocalAccount = Account.from_key(hashlib.sha256(b"nanotoll gas bench " + role)
                                             .digest())
    node.set_balance(account.address, 1000 * 10**18)
    return account


def _open_fleet(client: EscrowClient, payer: LocalAccount, payee: str, first_key: int,
                count: int, expiry: int) -> tuple[list[int], int]:
    specs = [ChannelSpec(address_of(_key(first_key + i)), payee, DEPOSIT, expiry)
             for i in range(count)]
    ids, receipt = client.open_many(payer, specs)
    return ids, int(receipt["gasUsed"])


def _vouchers(client: EscrowClient, items: list[tuple[int, int]], amount: int) -> bytes:
    """Packed vouchers for (channel id, key index) pairs, each for ``amount`` + a small step."""
    separator = client.domain_separator()
    return b"".join(
        wire.sign(_key(key), separator, channel_id, amount + n).pack()
        for n, (channel_id, key) in enumerate(items)
    )


def run_gas_bench() -> dict[str, Any]:
    """Deploy on a fresh anvil, open channels, redeem, and return the gas figures."""
    with Anvil(extra_args=("--timestamp", str(GENESIS_TIMESTAMP))) as node:
        w3 = node.w3
        deployer, payer, payee = (_funded(node, role) for role in (b"deployer", b"payer",
                                                                   b"payee"))
        client = EscrowClient.deploy(w3, deployer)
        client.mint(payer, payer.address, 10**15)
        client.approve(payer, 2**256 - 1)
        expiry = int(w3.eth.get_block("latest")["timestamp"]) + TTL

        _, first = client.open_channel(payer, address_of(_key(0)), payee.address, DEPOSIT,
                                       expiry, approve=False)
        warm_id, opened = client.open_channel(payer, address_of(_key(1)), payee.address,
                                              DEPOSIT, expiry, approve=False)
        single_id, _ = client.open_channel(payer, address_of(_key(2)), payee.address, DEPOSIT,
                                           expiry, approve=False)
        fleet, fleet_gas = _open_fleet(client, payer, payee.address, 100, BATCH, expiry)
        scattered, _ = _open_fleet(client, payer, payee.address, 1000, 2 * BATCH, expiry)
        route = client.route_of(payee.address)

        # The payee has been paid before (non-zero token balance), as in steady operation.
        client.redeem(payee, route, _vouchers(client, [(warm_id, 1)], 1_000))

        single = client.redeem(payee, route, _vouchers(client, [(single_id, 2)], 1_000))
        batch = client.redeem(
            payee, route, _vouchers(client, [(cid, 100 + i) for i, cid in enumerate(fleet)],
                                    1_000))
        spread = client.redeem(
            payee, route, _vouchers(client, [(cid, 1000 + i) for i, cid in
                                             enumerate(scattered) if i % 2 == 0], 1_000))
        for result, count in ((single, 1), (batch, BATCH), (spread, BATCH)):
            if len(result.redeemed) != count or result.skipped:
                raise RuntimeError(f"bench redeem paid {len(result.redeemed)} of {count} "
                                   f"vouchers; skipped: {result.skipped}")

        # _open_fleet approved exactly what it spent; allowance is given again, as it was
        # for the opens measured above.
        client.approve(payer, 2**256 - 1)
        top_up = client.top_up(payer, single_id, 1_000, approve=False)
        topped = client.top_up_many(payer, fleet, [1_000] * BATCH, approve=False)
        extended = client.extend_many(payer, fleet, expiry + TTL)

        return {
            "gas_top_up": int(top_up["gasUsed"]),
            "gas_top_up_many_per_channel": int(topped["gasUsed"]) // BATCH,
            "gas_extend_many_per_channel": int(extended["gasUsed"]) // BATCH,
            "gas_open": int(opened["gasUsed"]),
            "gas_open_new_route": int(first["gasUsed"]),
            "gas_open_many_per_channel": fleet_gas // BATCH,
            "gas_redeem_single": single.gas_used,
            "gas_batch_100": batch.gas_used,
            "gas_per_channel_batch_100": (batch.gas_used - single.gas_used) // (BATCH - 1),
            "gas_per_channel_batch_100_scattered":
                (spread.gas_used - single.gas_used) // (BATCH - 1),
            "max_redeem_batch": client.max_redeem_batch(),
        }


if __name__ == "__main__":
    import json

    print(json.dumps(run_gas_bench(), sort_keys=True))
