"""The gateway against a real escrow on anvil and a real mosquitto: purchases, the
chain-backed rules, and every settlement state transition (restart, reorg, skip)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from nanotoll.chain import EscrowClient
from nanotoll.chain.cache import ChannelCache
from nanotoll.chain.channel import ChannelState
from nanotoll.chain.errors import ChannelUnavailable
from nanotoll.chain.node import EscrowChain
from nanotoll.chain.settle import SettlementSummary, Settler
from nanotoll.gateway.config import SettlementConfig
from nanotoll.gateway.service import GatewayService
from nanotoll.ledger import SettlementItem, SettlementState
from nanotoll.ledger.sqlite import SQLiteLedger
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_response
from nanotoll.protocol.signing import address_of
from nanotoll.servers.anvil import Anvil
from nanotoll.servers.mosquitto import Mosquitto
from support.gateway_support import (
    DEVICE_KEY,
    OTHER_KEY,
    Device,
    MqttPeer,
    funded_escrow,
    make_config,
)

DAY = 86_400


@dataclass
class Chain:
    anvil: Anvil
    client: EscrowClient
    payer: LocalAccount
    provider: LocalAccount

    @property
    def provider_key(self) -> bytes:
        return bytes(self.provider.key)

    def now(self) -> int:
        return int(self.anvil.w3.eth.get_block("latest")["timestamp"])

    def open(self, deposit: int = 1_000_000, expiry_in: int = 30 * DAY,
             signer: bytes = DEVICE_KEY, payee: str | None = None) -> int:
        channel_id, _ = self.client.open_channel(
            self.payer, address_of(signer), payee or self.provider.address, deposit,
            self.now() + expiry_in)
        return channel_id

    def device(self, channel_id: int, key: bytes = DEVICE_KEY) -> Device:
        return Device(channel_id, key=key, provider_key=self.provider_key,
                      escrow=self.client.address)

    def escrow_chain(self) -> EscrowChain:
        return EscrowChain(self.anvil.rpc_url, self.client.address, 31337, self.provider_key)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with funded_escrow(tmp_path_factory.mktemp("anvil")) as (anvil, client, payer):
        yield Chain(anvil, client, payer, anvil.new_account())


def rig(tmp_path: Path, chain: Chain, **kwargs: object) -> tuple[SQLiteLedger, EscrowChain]:
    return SQLiteLedger(tmp_path / f"ledger-{time.monotonic_ns()}.db"), chain.escrow_chain()


def test_twenty_purchases_over_mqtt_then_settled_on_chain(tmp_path: Path, chain: Chain,
                                                           mosquitto: Mosquitto) -> None:
    channel_id = chain.open()
    device = chain.device(channel_id)
    config = make_config(tmp_path, mqtt_port=mosquitto.port, rpc_url=chain.anvil.rpc_url,
                         escrow=chain.client.address)
    ledger, escrow = rig(tmp_path, chain)
    balance_before = chain.client.balance_of(chain.provider.address)
    try:
        with GatewayService(config, chain.provider_key, ledger, escrow, escrow,
                            settle_in_background=False) as service:
            peer = MqttPeer(mosquitto.port, (device.response_topic,))
            for _ in range(20):
                peer.publish(device.topic, device.request())
                _, payload, _ = peer.next()
                response = decode_response(payload)
                assert response.code == ErrorCode.OK, response.message
            peer.close()
            assert service.settler is not None
            summary = service.settler.settle_now(timeout=60, poll=0.05)
        assert summary.amount == 30_000 and summary.vouchers == 1 and summary.pending == 0
        assert chain.client.channel(channel_id).paid == 30_000
        assert chain.client.balance_of(chain.provider.address) - balance_before == 30_000
        (settlement,) = ledger.settlements()
        assert settlement.state is SettlementState.CONFIRMED
        assert [i.outcome for i in settlement.items] == ["paid"]
        assert ledger.totals()["unredeemed"] == 0
    finally:
        ledger.close()


def test_chain_backed_rules(tmp_path: Path, chain: Chain, mosquitto: Mosquitto) -> None:
    from nanotoll.gateway.pipeline import Pipeline  # noqa: F401  (same path the service runs)

    small = chain.open(deposit=2_000)
    expiring = chain.open(expiry_in=1_800)
    foreign = chain.open(payee=chain.payer.address)
    config = make_config(tmp_path, mqtt_port=mosquitto.port, rpc_url=chain.anvil.rpc_url,
                         escrow=chain.client.address)
    ledger, escrow = rig(tmp_path, chain)
    try:
        service = GatewayService(config, chain.provider_key, ledger, escrow, escrow)
        handle = service.pipeline.handle

        def code(device: Device, payload: bytes) -> ErrorCode:
            return decode_response(handle(device.topic, payload).response).code

        assert code(chain.device(4_000_000), chain.device(4_000_000).request()) \
            == ErrorCode.UNKNOWN_CHANNEL
        assert code(chain.device(expiring), chain.device(expiring).request()) \
            == ErrorCode.CHANNEL_EXPIRING
        assert code(chain.device(foreign), chain.device(foreign).request()) \
            == ErrorCode.WRONG_PAYEE
        device = chain.device(small)
        assert code(device, device.request(cumulative=1_500)) == ErrorCode.OK
        assert code(device, device.request(cumulative=3_000)) == ErrorCode.OVERDRAFT
        # A top-up lands: the cached deposit is refreshed on the failing rule.
        chain.client.top_up(chain.payer, small, 5_000)
        assert code(device, device.request(cumulative=3_000)) == ErrorCode.OK
        wrong_signer = chain.device(small, key=OTHER_KEY)
        assert code(device, wrong_signer.request(cumulative=4_500)) == ErrorCode.BAD_SIGNATURE
        # The payer extends the expiring channel: the rule refreshes and accepts.
        chain.client.extend_expiry(chain.payer, expiring, chain.now() + 10 * DAY)
        assert code(chain.device(expiring), chain.device(expiring).request()) == ErrorCode.OK
    finally:
        ledger.close()


def test_settlement_survives_a_crash_between_signing_and_broadcast(tmp_path: Path,
                                                                   chain: Chain) -> None:
    ledger, escrow = rig(tmp_path, chain)
    channel_id = chain.open()
    device = chain.device(channel_id)
    config = make_config(tmp_path, rpc_url=chain.anvil.rpc_url, escrow=chain.client.address)
    try:
        service = GatewayService(config, chain.provider_key, ledger, escrow, escrow)
        for _ in range(3):
            assert service.pipeline.handle(device.topic, device.request()).code == ErrorCode.OK
        settler = Settler(ledger, escrow, SettlementConfig())
        # Sign and store, then "crash" before the broadcast.
        record = ledger.lookup(channel_id)
        assert record is not None
        signed = escrow.sign_redeem(escrow.channel(channel_id).route, record.voucher,  # type: ignore[union-attr]
                                    escrow.pending_nonce())
        stored = ledger.create_settlement(escrow.pending_nonce(), signed.tx_hash, signed.raw,
                                          [SettlementItem(channel_id, 4_500, record.voucher)])
        assert stored.state is SettlementState.SIGNED
        # A new settler (after the restart) finds it, broadcasts it, and sees it through.
        restarted = Settler(ledger, escrow, SettlementConfig())
        states = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            restarted.advance()
            current = ledger.settlements()[0].state
            if not states or states[-1] is not current:
                states.append(current)
            if current is SettlementState.CONFIRMED:
                break
            time.sleep(0.05)
        assert states[-1] is SettlementState.CONFIRMED
        assert chain.client.channel(channel_id).paid == 4_500
        # Nothing is left for settle_now, and it does not redeem twice.
        assert settler.settle_now(timeout=10, poll=0.05).transactions == []
    finally:
        ledger.close()


def test_reorged_receipt_goes_back_to_sent_and_is_mined_again(tmp_path: Path,
                                                              chain: Chain) -> None:
    ledger, escrow = rig(tmp_path, chain)
    channel_id = chain.open()
    device = chain.device(channel_id)
    config = make_config(tmp_path, rpc_url=chain.anvil.rpc_url, escrow=chain.client.address)
    w3 = chain.anvil.w3
    try:
        service = GatewayService(config, chain.provider_key, ledger, escrow, escrow)
        assert service.pipeline.handle(device.topic, device.request()).code == ErrorCode.OK
        settler = Settler(ledger, escrow, SettlementConfig(), confirmations=3)
        snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        (created,) = settler.submit(settler.due(everything=True), SettlementSummary())
        assert created.state is SettlementState.SENT
        (mined,) = settler.advance()
        assert mined.state is SettlementState.MINED  # 1 of 3 confirmations
        # The block holding it is reorged away.
        w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
        assert escrow.receipt(created.tx_hash) is None
        (resent,) = settler.advance()
        assert resent.state is SettlementState.SENT
        (mined_again,) = settler.advance()
        assert mined_again.state is SettlementState.MINED
        for _ in range(2):
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        assert settler.advance() == []
        (done,) = ledger.settlements()
        assert done.state is SettlementState.CONFIRMED and done.items[0].outcome == "paid"
        assert chain.client.channel(channel_id).paid == 1_500
    finally:
        ledger.close()


def test_skipped_item_is_recorded_and_not_counted_as_paid(tmp_path: Path, chain: Chain) -> None:
    ledger, escrow = rig(tmp_path, chain)
    first, second = chain.open(), chain.open()
    config = make_config(tmp_path, rpc_url=chain.anvil.rpc_url, escrow=chain.client.address)
    try:
        service = GatewayService(config, chain.provider_key, ledger, escrow, escrow)
        for channel_id in (first, second):
            device = chain.device(channel_id)
            assert service.pipeline.handle(device.topic, device.request()).code == ErrorCode.OK
        settler = Settler(ledger, escrow, SettlementConfig())
        # Signed and stored, not yet broadcast...
        items = [SettlementItem(r.channel_id, r.cumulative, r.voucher)
                 for r in ledger.unredeemed()]
        route = escrow.channel(first).route  # type: ignore[union-attr]
        signed = escrow.sign_redeem(route, b"".join(i.voucher for i in items),
                                    escrow.pending_nonce())
        ledger.create_settlement(escrow.pending_nonce(), signed.tx_hash, signed.raw, items)
        # ...when someone relays the second channel's voucher: that item is now stale.
        record = ledger.lookup(second)
        assert record is not None
        chain.client.redeem(chain.payer, route, record.voucher)
        summary = SettlementSummary()
        deadline = time.monotonic() + 30
        while settler.advance(summary) and time.monotonic() < deadline:
            time.sleep(0.05)
        (settlement,) = ledger.settlements()
        assert settlement.state is SettlementState.CONFIRMED
        assert {i.channel_id: i.outcome for i in settlement.items} == {first: "paid",
                                                                       second: "skipped"}
        assert summary.vouchers == 1 and summary.skipped == 1
        assert ledger.lookup(second).redeemed == 1_500  # type: ignore[union-attr]
        assert ledger.totals()["unredeemed"] == 0
    finally:
        ledger.close()


def test_channel_cache_reads_the_contract(chain: Chain) -> None:
    channel_id = chain.open(deposit=777)
    cache = ChannelCache(chain.escrow_chain())
    state = cache.channel(channel_id)
    assert state is not None and state.deposit == 777 and state.paid == 0
    assert state.signer == address_of(DEVICE_KEY) and state.payee == chain.provider.address
    assert cache.channel(9_999_999) is None


class SwitchableNode:
    """A channel reader that reads through ``node``: the real one, or one that hangs."""

    def __init__(self, node: EscrowChain) -> None:
        self.node = node

    def channel(self, channel_id: int) -> ChannelState | None:
        return self.node.channel(channel_id)


@pytest.fixture
def hanging_node(chain: Chain) -> Iterator[EscrowChain]:
    """An RPC endpoint that accepts connections and never answers (a hung node)."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        port = server.getsockname()[1]
        yield EscrowChain(f"http://127.0.0.1:{port}", chain.client.address, 31337,
                          chain.provider_key, timeout=0.5)


def test_a_hung_node_costs_one_timeout_then_reads_fail_fast(chain: Chain,
                                                            hanging_node: EscrowChain) -> None:
    known = chain.open()
    reader = SwitchableNode(chain.escrow_chain())
    cache = ChannelCache(reader, max_age=0.2)
    assert cache.channel(known) is not None
    reader.node = hanging_node
    started = time.monotonic()
    with pytest.raises(ChannelUnavailable):
        cache.channel(9_999_001)  # not cached: waits out the RPC timeout once
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    with pytest.raises(ChannelUnavailable, match="next read in"):
        cache.channel(9_999_002)  # within the back-off: at once
    assert time.monotonic() - started < 0.3  # not the 0.4 s of a read that waits
    time.sleep(0.5)  # past twice max_age: a known channel is served from the cache
    state = cache.channel(known)
    assert state is not None and state.channel_id == known
    time.sleep(1.1)  # the back-off (1 s, then 2 s) is over: reads go to the node again
    reader.node = chain.escrow_chain()
    assert cache.channel(9_999_003) is None
    assert cache.channel(known) is not None


def test_with_the_node_away_unknown_channels_get_busy_and_known_ones_still_buy(
        tmp_path: Path, chain: Chain, hanging_node: EscrowChain) -> None:
    ledger, escrow = rig(tmp_path, chain)
    known, unknown = chain.open(), chain.open()
    reader = SwitchableNode(escrow)
    config = make_config(tmp_path, rpc_url=chain.anvil.rpc_url, escrow=chain.client.address)
    try:
        service = GatewayService(config, chain.provider_key, ledger, reader, escrow)
        buyer, stranger = chain.device(known), chain.device(unknown)
        assert service.pipeline.handle(buyer.topic, buyer.request()).code == ErrorCode.OK
        reader.node = hanging_node
        payload = stranger.request()
        refused = service.pipeline.handle(stranger.topic, payload)
        assert refused.code == ErrorCode.BUSY and refused.increment == 0
        assert service.pipeline.handle(buyer.topic, buyer.request()).code == ErrorCode.OK
        reader.node = escrow
        time.sleep(1.1)  # the back-off after the failed read
        # The device sends the same bytes again (BUSY: retry later), and they buy.
        assert service.pipeline.handle(stranger.topic, payload).code == ErrorCode.OK
    finally:
        ledger.close()


def test_stuck_transaction_is_replaced_with_the_same_nonce(tmp_path: Path, chain: Chain) -> None:
    ledger, escrow = rig(tmp_path, chain)
    channel_id = chain.open()
    device = chain.device(channel_id)
    config = make_config(tmp_path, rpc_url=chain.anvil.rpc_url, escrow=chain.client.address)
    w3 = chain.anvil.w3
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        service = GatewayService(config, chain.provider_key, ledger, escrow, escrow)
        assert service.pipeline.handle(device.topic, device.request()).code == ErrorCode.OK
        settler = Settler(ledger, escrow, SettlementConfig(), receipt_timeout=0.0)
        (sent,) = settler.submit(settler.due(everything=True), SettlementSummary())
        assert sent.state is SettlementState.SENT
        time.sleep(0.01)
        (replaced,) = settler.advance()  # no receipt past the timeout: bump and re-send
        assert replaced.state is SettlementState.SENT and replaced.nonce == sent.nonce
        assert replaced.tx_hash != sent.tx_hash and replaced.previous_hashes == (sent.tx_hash,)
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        assert settler.advance() == []
        (done,) = ledger.settlements()
        assert done.state is SettlementState.CONFIRMED and done.items[0].outcome == "paid"
        assert chain.client.channel(channel_id).paid == 1_500
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
        ledger.close()


def test_node_errors_are_classified(chain: Chain) -> None:
    from nanotoll.chain.errors import NodeUnavailable, NonceTooLow, TxKnown

    escrow = chain.escrow_chain()
    w3 = chain.anvil.w3
    sender = chain.anvil.new_account()

    def raw(nonce: int) -> bytes:
        base = int(w3.eth.get_block("latest")["baseFeePerGas"])
        return bytes(sender.sign_transaction({
            "to": sender.address, "value": 0, "gas": 21_000, "nonce": nonce, "chainId": 31337,
            "maxPriorityFeePerGas": 10**9, "maxFeePerGas": 2 * base + 10**9}).raw_transaction)

    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        first = raw(0)
        escrow.send(first)
        with pytest.raises(TxKnown):
            escrow.send(first)
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        with pytest.raises(NonceTooLow):
            escrow.send(raw(0))
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    broken = EscrowChain("http://127.0.0.1:9", chain.client.address, 31337, chain.provider_key,
                         timeout=1)
    with pytest.raises(NodeUnavailable):
        broken.block_number()


def test_background_settlement_by_threshold_and_metrics(tmp_path: Path, chain: Chain,
                                                        mosquitto: Mosquitto) -> None:
    import urllib.request

    from nanotoll.servers.process import free_port

    busy, quiet = chain.open(), chain.open()
    port = free_port()
    config = make_config(tmp_path, mqtt_port=mosquitto.port, rpc_url=chain.anvil.rpc_url,
                         escrow=chain.client.address, metrics={"port": port},
                         settlement={"threshold": 4_000, "interval": 3_600,
                                     "check_every": 0.1})
    ledger, escrow = rig(tmp_path, chain)
    try:
        with GatewayService(config, chain.provider_key, ledger, escrow, escrow) as service:
            for channel_id, count in ((busy, 3), (quiet, 1)):
                device = chain.device(channel_id)
                for _ in range(count):
                    assert service.pipeline.handle(device.topic, device.request()).code \
                        == ErrorCode.OK
            deadline = time.monotonic() + 30
            while ledger.totals()["unredeemed"] > 1_500 and time.monotonic() < deadline:
                time.sleep(0.1)  # until the worker has seen its redeem confirmed
            # Over the threshold: redeemed by the worker; under it and young: left alone.
            assert chain.client.channel(busy).paid == 4_500
            assert chain.client.channel(quiet).paid == 0
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
        assert 'nanotoll_requests_total{code="OK"} 4' in text
        assert "nanotoll_revenue_units_total 6000" in text
        assert "nanotoll_unredeemed_units 1500" in text
        assert "nanotoll_verify_latency_ms_count 4" in text
    finally:
        ledger.close()


def test_settlement_lease_one_signer_across_settlers(tmp_path: Path, chain: Chain) -> None:
    """A running gateway's settler and ``settle now`` (another Settler on the same ledger,
    as another process has) never sign with the key at the same time."""
    import threading

    from nanotoll.ledger import LeaseBusy

    ledger, escrow = rig(tmp_path, chain)
    channels = [chain.open() for _ in range(3)]
    config = make_config(tmp_path, rpc_url=chain.anvil.rpc_url, escrow=chain.client.address)
    try:
        service = GatewayService(config, chain.provider_key, ledger, escrow, escrow,
                                 settle_in_background=False)
        devices = [chain.device(channel_id) for channel_id in channels]
        for device in devices:
            for _ in range(2):
                assert service.pipeline.handle(device.topic, device.request()).code \
                    == ErrorCode.OK
        gateway = service.settler
        assert gateway is not None
        other = Settler(ledger, chain.escrow_chain(), SettlementConfig(threshold=1))
        release = threading.Event()
        holding = threading.Event()

        def hold() -> None:
            with gateway.leased():
                holding.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(10)
        # While the gateway's round runs: the other's round is skipped, settle now waits.
        assert other.run_once().transactions == []
        assert ledger.settlements() == []
        with pytest.raises(LeaseBusy):
            other.settle_now(timeout=0.3, poll=0.05)
        threading.Timer(0.5, release.set).start()
        summary = other.settle_now(timeout=60, poll=0.05)
        holder.join()
        assert summary.amount == 3 * 3_000 and summary.pending == 0
        # Both at once: one signs, the other finds nothing left; no nonce is used twice.
        for device in devices:
            assert service.pipeline.handle(device.topic, device.request()).code == ErrorCode.OK
        results: list[SettlementSummary] = []
        racers = [threading.Thread(target=lambda s=s: results.append(
            s.settle_now(timeout=60, poll=0.05))) for s in (gateway, other)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        assert sum(r.amount for r in results) == 3 * 1_500
        states = {s.state for s in ledger.settlements()}
        assert states == {SettlementState.CONFIRMED}
        nonces = [s.nonce for s in ledger.settlements()]
        assert len(nonces) == len(set(nonces))
        for channel_id in channels:
            assert chain.client.channel(channel_id).paid == 4_500
    finally:
        ledger.close()
