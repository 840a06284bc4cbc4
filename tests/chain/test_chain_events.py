"""The escrow event follower against a real anvil and the real contract: top-ups,
extensions, redeems and reclaims reach the channel cache without waiting for its age
bound; reorgs (evm_revert, anvil_reorg, a node that comes back with another chain) are
survived; a node outage is retried with one log line; and one reclaim end to end through
the gateway over MQTT."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from nanotoll.chain import EscrowClient
from nanotoll.chain.cache import ChannelCache
from nanotoll.chain.channel import ChannelState
from nanotoll.chain.eventlog import (
    BlockRef,
    ChannelEvent,
    EscrowEventDecoder,
    EventFollower,
    EventKind,
    LogFormatError,
    apply_event,
)
from nanotoll.chain.node import EscrowChain
from nanotoll.gateway.config import ConfigError, EventsConfig
from nanotoll.gateway.service import CHANNEL_MAX_AGE, GatewayService, channel_max_age
from nanotoll.ledger.sqlite import SQLiteLedger
from nanotoll.protocol.eip712 import domain_separator
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_response
from nanotoll.protocol.signing import address_of
from nanotoll.protocol.voucher import sign
from nanotoll.servers.anvil import Anvil
from nanotoll.servers.mosquitto import Mosquitto
from nanotoll.servers.process import free_port
from support.gateway_support import DEVICE_KEY, Device, MqttPeer, funded_escrow, make_config

DAY = 86_400
FAST = EventsConfig(poll_interval=0.05, max_backoff=0.4)


@dataclass
class Chain:
    anvil: Anvil
    client: EscrowClient
    payer: LocalAccount
    provider: LocalAccount

    def now(self) -> int:
        return int(self.anvil.w3.eth.get_block("latest")["timestamp"])

    def open(self, deposit: int = 1_000_000, expiry_in: int = 30 * DAY) -> int:
        channel_id, _ = self.client.open_channel(
            self.payer, address_of(DEVICE_KEY), self.provider.address, deposit,
            self.now() + expiry_in)
        return channel_id

    def escrow(self) -> EscrowChain:
        return EscrowChain(self.anvil.rpc_url, self.client.address, 31337,
                           bytes(self.provider.key))

    def rpc(self, method: str, *params: Any) -> Any:
        reply = self.anvil.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in reply, reply
        return reply.get("result")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with funded_escrow(tmp_path_factory.mktemp("anvil")) as (anvil, client, payer):
        yield Chain(anvil, client, payer, anvil.new_account())


class Lines(logging.Handler):
    """The structured events a logger wrote, by name."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            self.events.append({"level": record.levelname, **fields})

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


def capture(name: str) -> tuple[logging.Logger, Lines]:
    logger = logging.getLogger(f"test.events.{name}.{time.monotonic_ns()}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    lines = Lines()
    logger.addHandler(lines)
    return logger, lines


class CountingReader:
    def __init__(self, inner: EscrowChain) -> None:
        self.inner = inner
        self.reads = 0

    def channel(self, channel_id: int) -> ChannelState | None:
        self.reads += 1
        return self.inner.channel(channel_id)


class RecordingSource:
    """An EscrowChain whose eth_getLogs ranges are recorded."""

    def __init__(self, inner: EscrowChain) -> None:
        self.inner = inner
        self.ranges: list[tuple[int, int]] = []

    def head(self) -> BlockRef:
        return self.inner.head()

    def canonical_hash(self, number: int) -> str | None:
        return self.inner.canonical_hash(number)

    def channel_events(self, first: int, last: int) -> list[ChannelEvent]:
        self.ranges.append((first, last))
        return self.inner.channel_events(first, last)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> float:
    """Seconds until ``condition`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not reached in time"
        time.sleep(0.02)
    return time.monotonic() - started


def drain(follower: EventFollower, limit: int = 50) -> None:
    """Poll until the follower has caught up with the chain (synchronously)."""
    for _ in range(limit):
        if not follower.step():
            return
    raise AssertionError("the follower did not catch up")


def cached(cache: ChannelCache, channel_id: int) -> ChannelState:
    state = cache.channel(channel_id)  # max_age is an hour here: never a read
    assert state is not None
    return state


# ----------------------------------------------------------------- follower --


def test_top_up_extension_and_redeem_reach_the_cache_without_a_read(chain: Chain) -> None:
    channel_id = chain.open(deposit=1_000)
    reader = CountingReader(chain.escrow())
    cache = ChannelCache(reader, max_age=3600)
    first = cached(cache, channel_id)
    assert first.deposit == 1_000 and reader.reads == 1
    logger, lines = capture("fresh")
    follower = EventFollower(chain.escrow(), cache, FAST, logger)
    follower.start()
    try:
        assert lines.named("chain_events_following")
        # Channels cached before the cursor was taken are read once more at the start.
        assert reader.reads == 2
        chain.client.top_up(chain.payer, channel_id, 500)
        assert wait_for(lambda: cached(cache, channel_id).deposit == 1_500) < 3
        chain.client.extend_expiry(chain.payer, channel_id, first.expiry + DAY)
        assert wait_for(lambda: cached(cache, channel_id).expiry == first.expiry + DAY) < 3
        separator = domain_separator(31337, chain.client.address)
        voucher = sign(DEVICE_KEY, separator, channel_id, 700).pack()
        chain.client.redeem(chain.payer, first.route, voucher)  # anyone may relay it
        assert wait_for(lambda: cached(cache, channel_id).paid == 700) < 3
        # Applied from the events, without reading the contract again.
        assert reader.reads == 2
        assert follower.stats().applied == 3 and follower.stats().failures == 0
    finally:
        follower.stop(timeout=5)
    assert not follower.running


def test_a_reclaim_closes_the_cached_channel(chain: Chain) -> None:
    channel_id = chain.open(expiry_in=2 * 3600)
    cache = ChannelCache(chain.escrow(), max_age=3600)
    assert not cached(cache, channel_id).closed
    follower = EventFollower(chain.escrow(), cache, FAST, capture("reclaim")[0])
    drain(follower)
    chain.anvil.increase_time(2 * 3600 + 1)
    chain.client.reclaim(chain.payer, channel_id)
    drain(follower)
    assert cached(cache, channel_id).closed


def test_an_opened_channel_replaces_a_remembered_miss(chain: Chain) -> None:
    next_id = chain.client.last_channel_id() + 1
    cache = ChannelCache(chain.escrow(), max_age=3600, miss_age=3600)
    assert cache.channel(next_id) is None  # remembered for an hour
    follower = EventFollower(chain.escrow(), cache, FAST, capture("open")[0])
    drain(follower)
    assert chain.open(deposit=4_321) == next_id
    drain(follower)
    state = cache.channel(next_id)
    assert state is not None and state.deposit == 4_321


def test_ranges_are_bounded_and_confirmations_hold_logs_back(chain: Chain) -> None:
    channel_id = chain.open(deposit=1_000)
    cache = ChannelCache(chain.escrow(), max_age=3600)
    cached(cache, channel_id)
    source = RecordingSource(chain.escrow())
    config = EventsConfig(poll_interval=0.05, confirmations=2, max_range=2)
    follower = EventFollower(source, cache, config, capture("ranges")[0])
    drain(follower)
    start = follower.stats().cursor
    assert start == chain.anvil.w3.eth.block_number - 2
    chain.client.top_up(chain.payer, channel_id, 100)  # approve and topUp: two blocks
    drain(follower)
    assert cached(cache, channel_id).deposit == 1_000  # not two blocks deep yet
    for _ in range(5):
        chain.rpc("evm_mine")
    assert follower.step() is True  # seven blocks to read, two a call
    drain(follower)
    assert cached(cache, channel_id).deposit == 1_100
    assert follower.stats().cursor == chain.anvil.w3.eth.block_number - 2
    assert all(last - first < 2 for first, last in source.ranges)
    covered = [block for first, last in source.ranges for block in range(first, last + 1)]
    assert covered == list(range(start + 1, start + 1 + len(covered)))  # no gap, no overlap


def test_a_reorg_by_snapshot_and_revert_is_re_read(chain: Chain) -> None:
    channel_id = chain.open(deposit=1_000)
    cache = ChannelCache(chain.escrow(), max_age=3600)
    cached(cache, channel_id)
    logger, lines = capture("revert")
    follower = EventFollower(chain.escrow(), cache, FAST, logger)
    drain(follower)
    snapshot = chain.rpc("evm_snapshot")
    chain.client.top_up(chain.payer, channel_id, 500)
    drain(follower)
    assert cached(cache, channel_id).deposit == 1_500
    chain.rpc("evm_revert", snapshot)  # that top-up never happened...
    chain.client.top_up(chain.payer, channel_id, 200)  # ...this one did, at the same height
    drain(follower)
    # Applying deltas as a maximum would have kept 1,500: the abandoned range was re-read.
    assert cached(cache, channel_id).deposit == 1_200
    assert follower.stats().reorgs == 1
    (line,) = lines.named("chain_reorg")
    assert line["refreshed"] == 1 and line["level"] == "WARNING"


def test_a_reorg_by_anvil_reorg_is_re_read(chain: Chain) -> None:
    channel_id = chain.open(deposit=1_000)
    cache = ChannelCache(chain.escrow(), max_age=3600)
    cached(cache, channel_id)
    follower = EventFollower(chain.escrow(), cache, FAST, capture("reorg")[0])
    drain(follower)
    chain.client.top_up(chain.payer, channel_id, 300)
    drain(follower)
    assert cached(cache, channel_id).deposit == 1_300
    height = chain.anvil.w3.eth.block_number
    chain.rpc("anvil_reorg", 1, [])  # the topUp's block is replaced by an empty one
    assert chain.anvil.w3.eth.block_number == height
    drain(follower)
    assert cached(cache, channel_id).deposit == 1_000
    assert follower.stats().reorgs == 1


def test_node_outage_is_retried_and_logged_once(tmp_path: Path) -> None:
    port = free_port()
    anvil = Anvil(port=port, workdir=tmp_path / "anvil")
    source = EscrowChain(f"http://127.0.0.1:{port}", "0x" + "11" * 20, 31337, timeout=1)
    cache = ChannelCache(source, max_age=3600)
    logger, lines = capture("outage")
    follower = EventFollower(source, cache, FAST, logger)
    follower.start()  # nothing listens on the port yet
    try:
        wait_for(lambda: follower.stats().failures >= 4, 5)
        assert follower.running
        (failed,) = lines.named("chain_events_failed")
        assert failed["level"] == "WARNING" and "NodeUnavailable" in failed["error"]
        with anvil:
            wait_for(lambda: len(lines.named("chain_events_resumed")) == 1)
            for _ in range(3):
                anvil.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            wait_for(lambda: follower.stats().cursor == 3)
            anvil.stop()  # the node goes away mid-follow...
            wait_for(lambda: len(lines.named("chain_events_failed")) == 2)
            failures = follower.stats().failures
            time.sleep(1.0)
            # ...retried with backoff (0.1, 0.2, then every 0.4 s), still one line.
            assert 1 <= follower.stats().failures - failures <= 5
            assert len(lines.named("chain_events_failed")) == 2
            anvil.start()  # ...and comes back with a new chain, shorter than the old one
            anvil.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            wait_for(lambda: len(lines.named("chain_events_resumed")) == 2)
            wait_for(lambda: follower.stats().cursor == 1)
            # Not one block it read is on the new chain (genesis differs by its time).
            assert follower.stats().resyncs == 1 and follower.running
            (resync,) = lines.named("chain_events_resync")
            assert resync["level"] == "WARNING"
    finally:
        started = time.monotonic()
        follower.stop(timeout=5)
        assert time.monotonic() - started < 2 and not follower.running


# ----------------------------------------------------------- end to end --


def test_reclaim_refuses_the_next_purchase_fast(tmp_path: Path, chain: Chain,
                                                mosquitto: Mosquitto) -> None:
    channel_id = chain.open(expiry_in=3 * 3600)
    device = Device(channel_id, provider_key=bytes(chain.provider.key),
                    escrow=chain.client.address)
    config = make_config(tmp_path, mqtt_port=mosquitto.port, rpc_url=chain.anvil.rpc_url,
                         escrow=chain.client.address, events={"poll_interval": 0.1})
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    escrow = chain.escrow()
    try:
        with GatewayService(config, bytes(chain.provider.key), ledger, escrow, escrow,
                            settle_in_background=False, events=escrow) as service:
            assert service.follower is not None and service.follower.running
            peer = MqttPeer(mosquitto.port, (device.response_topic,))

            def buy() -> ErrorCode:
                peer.publish(device.topic, device.request())
                return decode_response(peer.next()[1]).code

            assert buy() == ErrorCode.OK
            # The chain's clock passes the expiry (the gateway's does not: without the
            # event the cached channel would go on selling) and the payer reclaims.
            chain.anvil.increase_time(3 * 3600 + 1)
            chain.client.reclaim(chain.payer, channel_id)
            seen = wait_for(lambda: cached(service.channels, channel_id).closed, 5)
            assert seen < 3  # the cache's max_age is 30 s
            assert buy() == ErrorCode.CHANNEL_EXPIRING
            peer.close()
            text = service.metrics.render()
        assert not service.follower.running
        assert "nanotoll_chain_events_block " in text
        assert "nanotoll_chain_events_failures 0" in text
        assert ledger.lookup(channel_id).cumulative == 1_500  # type: ignore[union-attr]
    finally:
        ledger.close()


def test_events_can_be_switched_off(tmp_path: Path, chain: Chain) -> None:
    config = make_config(tmp_path, rpc_url=chain.anvil.rpc_url, escrow=chain.client.address,
                         events={"enabled": False})
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    try:
        escrow = chain.escrow()
        service = GatewayService(config, bytes(chain.provider.key), ledger, escrow, escrow,
                                 events=escrow)
        assert service.follower is None
        assert service.channels.max_age == CHANNEL_MAX_AGE  # the re-reads alone keep it fresh
    finally:
        ledger.close()


def test_followed_channels_are_re_read_rarely_but_within_half_the_expiry_margin(
        tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert config.expiry_margin == 3600
    assert channel_max_age(config, following=True) == 600.0
    assert channel_max_age(replace(config, expiry_margin=600), following=True) == 300.0
    assert channel_max_age(replace(config, expiry_margin=0), following=True) == CHANNEL_MAX_AGE
    assert channel_max_age(config, following=False) == CHANNEL_MAX_AGE


# ------------------------------------------------------------ units, config --


def test_changes_only_raise_values_and_reclaim_closes() -> None:
    state = ChannelState(1, "0x" + "22" * 20, "0x" + "33" * 20, "0x" + "44" * 20,
                         deposit=1_000, paid=100, expiry=5_000)

    def change(kind: EventKind, **values: int) -> ChannelEvent:
        return ChannelEvent(kind, 1, 10, "0x" + "00" * 32, 0, **values)

    assert apply_event(state, change(EventKind.TOPPED_UP, deposit=900)).deposit == 1_000
    assert apply_event(state, change(EventKind.TOPPED_UP, deposit=1_200)).deposit == 1_200
    assert apply_event(state, change(EventKind.EXTENDED, expiry=6_000)).expiry == 6_000
    assert apply_event(state, change(EventKind.REDEEMED, paid=50)).paid == 100
    assert apply_event(state, change(EventKind.RECLAIMED)).closed
    assert apply_event(state, change(EventKind.OPENED)) == state


def test_decoder_ignores_other_events_and_refuses_bad_data() -> None:
    decoder = EscrowEventDecoder()
    assert len(decoder.topics) == 5
    where = {"blockNumber": 7, "blockHash": "0x" + "ab" * 32, "logIndex": 0}
    assert decoder.decode({"topics": ["0x" + "00" * 32], "data": "0x", **where}) == []
    topped_up = "0x" + keccak(text="ChannelToppedUp(uint32,uint64,uint64)").hex()
    assert topped_up in decoder.topics
    data = "0x" + "00" * 31 + "05" + "00" * 31 + "0f"  # amount 5, deposit 15
    (decoded,) = decoder.decode({"topics": [topped_up, "0x" + "00" * 31 + "09"],
                                 "data": data, **where})
    assert decoded.kind is EventKind.TOPPED_UP and decoded.deposit == 15
    assert decoded.channel_id == 9 and decoded.block_number == 7
    with pytest.raises(LogFormatError):
        decoder.decode({"topics": [topped_up, "0x" + "00" * 31 + "09"], "data": "0x01",
                        **where})


@pytest.mark.parametrize(("table", "message"), [
    ({"poll_interval": 0.01}, "[events] poll_interval: must be a number ≥ 0.05"),
    ({"confirmations": -1}, "[events] confirmations: must be in 0..1000"),
    ({"max_range": 0}, "[events] max_range: must be in 1..100000"),
    ({"enabled": "yes"}, "[events] enabled: must be true or false"),
    ({"poll_interval": 5, "max_backoff": 1}, "[events] max_backoff: must be ≥ poll_interval"),
    ({"interval": 1}, "[events] interval: unknown key"),
])
def test_events_config_errors_name_the_key(tmp_path: Path, table: dict[str, Any],
                                           message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, events=table)
    assert message in str(info.value) and "test.toml" in str(info.value)


def test_events_config_defaults(tmp_path: Path) -> None:
    assert make_config(tmp_path).events == EventsConfig(
        enabled=True, poll_interval=1.0, confirmations=0, max_range=1000, max_backoff=30.0)
