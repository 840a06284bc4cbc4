"""What the fleet found in the settlement worker's inputs: after a redemption, a busy
channel's unredeemed age starts at its oldest voucher above the redeemed amount (both
ledgers), and the background worker leaves a channel alone while a redemption of it is
open."""

from __future__ import annotations

import time

from support.gateway_pg import LedgerStore, ledger_store, postgres_server  # noqa: F401


def _accept(ledger, channel: int, cumulative: int, increment: int) -> int:  # type: ignore[no-untyped-def]
    result = ledger.accept(channel, cumulative, bytes(76), bytes(32), b"response", increment)
    return int(result.record.accepted_at_ms)


def test_redemption_resets_the_age_to_the_oldest_voucher_left(
        ledger_store: LedgerStore) -> None:  # noqa: F811
    ledger = ledger_store.open()
    first = _accept(ledger, 7, 100, 100)
    time.sleep(0.02)
    second = _accept(ledger, 7, 300, 200)
    time.sleep(0.02)
    _accept(ledger, 7, 450, 150)
    record = ledger.lookup(7)
    assert record is not None and record.first_unredeemed_ms == first
    assert second > first

    ledger.record_redeemed(7, 100)  # the first voucher is paid: the second is now oldest
    record = ledger.lookup(7)
    assert record is not None
    assert record.redeemed == 100 and record.unredeemed == 350
    assert record.first_unredeemed_ms == second

    ledger.record_redeemed(7, 450)
    record = ledger.lookup(7)
    assert record is not None and record.unredeemed == 0
    assert [r.channel_id for r in ledger.unredeemed()] == []


def test_the_worker_leaves_a_channel_with_an_open_redemption_alone(
        ledger_store: LedgerStore) -> None:  # noqa: F811
    from nanotoll.chain.settle import Settler
    from nanotoll.gateway.config import SettlementConfig
    from nanotoll.ledger import SettlementItem

    ledger = ledger_store.open()
    _accept(ledger, 1, 100, 100)
    _accept(ledger, 2, 100, 100)
    settler = Settler(ledger, None, SettlementConfig(threshold=50, interval=3600),  # type: ignore[arg-type]
                      clock=time.time)
    assert sorted(r.channel_id for r in settler.due()) == [1, 2]
    ledger.create_settlement(0, "0x" + "ab" * 32, b"raw", [SettlementItem(1, 100, bytes(76))])
    _accept(ledger, 1, 250, 150)  # more on channel 1 while its redemption is open
    assert [r.channel_id for r in settler.due()] == [2]
    assert sorted(r.channel_id for r in settler.due(everything=True)) == [1, 2]


def test_the_expiry_scan_reads_a_far_expiring_channel_once(
        ledger_store: LedgerStore) -> None:  # noqa: F811
    from nanotoll.chain.channel import ChannelState
    from nanotoll.chain.settle import Settler
    from nanotoll.gateway.config import SettlementConfig

    now = 1_800_000_000
    expiries = {1: now + 30 * 86400, 2: now + 3600}  # channel 2 is inside the window

    class Chain:
        reads: list[int] = []

        def now(self) -> int:
            return now

        def channel(self, channel_id: int) -> ChannelState:
            self.reads.append(channel_id)
            return ChannelState(channel_id, "0x" + "11" * 20, "0x" + "22" * 20,
                                "0x" + "33" * 20, 10**6, 0, expiries[channel_id])

    ledger = ledger_store.open()
    _accept(ledger, 1, 100, 100)
    _accept(ledger, 2, 100, 100)
    chain = Chain()
    settler = Settler(ledger, chain, SettlementConfig(threshold=10**6, interval=3600,  # type: ignore[arg-type]
                                                      expiry_window=7200))
    submitted: list[list[int]] = []
    settler.submit = lambda records, summary: submitted.append(  # type: ignore[method-assign]
        sorted(r.channel_id for r in records)) or []
    settler.advance = lambda summary=None: []  # type: ignore[method-assign]
    from nanotoll.chain.settle import SettlementSummary

    settler._run_once(SettlementSummary())
    assert sorted(chain.reads) == [1, 2] and submitted == [[2]]
    settler._next_expiry_scan = 0.0  # the next scan, a minute later
    settler._run_once(SettlementSummary())
    assert sorted(chain.reads) == [1, 2, 2], "channel 1 expires far off: not read again"
    assert submitted == [[2], [2]]
