"""The gateway process: ledger, channel cache, event follower, rules, providers,
pipeline, ingress, settler.

:class:`GatewayService` wires the parts from a config and explicit dependencies (a
:class:`~nanotoll.chain.cache.ChannelReader`, a :class:`~nanotoll.chain.settle.RedeemChain`,
a :class:`~nanotoll.chain.eventlog.LogSource` for the escrow's events, a ledger), so tests
and benchmarks run the same assembly the CLI runs. Nothing is global: two services in
one process (the two-gateway tests) share nothing but what they are given.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from ..chain.cache import ChannelCache, ChannelReader
from ..chain.eventlog import EventFollower, LogSource
from ..chain.settle import RedeemChain, Settler, gateway_holder
from ..ledger import Ledger
from ..logevent import event
from ..protocol.eip712 import domain_separator
from ..protocol.signing import address_of
from ..protocol.topics import registration_topic
from .catalog import overlap_of
from .config import GatewayConfig
from .dashboard.pages import dashboard_pages
from .dashboard.source import DashboardSource
from .identity import IdentityDocuments
from .ingress import Ingress
from .metrics import Metrics, MetricsServer
from .offer import Offer
from .pipeline import Pipeline
from .rules import Rules
from .serve import ProviderContext

CHANNEL_MAX_AGE = 30.0  # seconds a cached channel is served before it is read again
CHANNEL_MAX_AGE_FOLLOWED = 600.0  # ... when the event follower keeps it fresh


def channel_max_age(config: GatewayConfig, following: bool) -> float:
    """How long a cached channel is served before the cache reads it again.

    With the event follower on, the re-read is only a safety net: every change to a
    channel is an event it applies, and each re-read is a web3 call made in the gateway
    process (docs/benchmarks.md has what they cost). It stays under half the expiry
    margin: a channel can only be reclaimed after its expiry, and the rules refuse a
    channel within the margin of it, so a missed reclaim event can't be served.
    """
    if not following:
        return CHANNEL_MAX_AGE
    return max(CHANNEL_MAX_AGE, min(CHANNEL_MAX_AGE_FOLLOWED, config.expiry_margin / 2))


class GatewayService:
    def __init__(self, config: GatewayConfig, secret: bytes, ledger: Ledger,
                 reader: ChannelReader, chain: RedeemChain | None = None, *,
                 settle_in_background: bool = True, clock: Callable[[], float] = time.time,
                 logger: logging.Logger | None = None, events: LogSource | None = None) -> None:
        self.config = config
        self.ledger = ledger
        self._log = logger or logging.getLogger("nanotoll.gateway")
        self.provider_address = address_of(secret)
        self.provider_hex = self.provider_address[2:].lower()
        self.separator = domain_separator(config.chain.chain_id, config.chain.escrow)
        self._secret = secret
        self._clock = clock
        started = int(clock())
        self._catalog_anchor = started - started % 3600
        self._offer_lock = threading.Lock()  # a reload and the renewal thread take turns
        self.offer = Offer(config.catalog, ProviderContext(secret, self.separator),
                           self._catalog_anchor, started)
        self.catalog = self.offer.catalog_at(started)
        following = events is not None and config.events.enabled
        self.channels = ChannelCache(reader, max_age=channel_max_age(config, following))
        # Without a log source (unit tests, benches) the cache's bounded age alone applies.
        self.follower = (EventFollower(events, self.channels, config.events, self._log)
                         if events is not None and following else None)
        self.rules = Rules(self.provider_hex, self.separator, self.catalog, self.offer.providers,
                           self.channels, config.expiry_margin)
        self.metrics = Metrics()
        # From the channels with something unredeemed only: totals() reads every voucher
        # ever accepted, which on a busy ledger would hold the GIL for a whole scrape.
        self.metrics.gauges["nanotoll_unredeemed_units"] = \
            lambda: sum(record.unredeemed for record in ledger.unredeemed())
        self.pipeline = Pipeline(self.rules, ledger, secret, self.metrics, clock, self._log)
        self.settler = (Settler(ledger, chain, config.settlement, config.chain.confirmations,
                                config.chain.receipt_timeout, clock,
                                holder=gateway_holder(config.mqtt.client_id))
                        if chain is not None else None)
        if self.settler is not None:
            self.metrics.gauges["nanotoll_settlement_lag_seconds"] = self._settlement_lag
        if self.follower is not None:
            self._follower_gauges(self.follower)
        self.identity = IdentityDocuments(config, self.provider_address, lambda: self.catalog)
        self.ingress = Ingress(config.mqtt.host, config.mqtt.port, self.provider_hex,
                               self.pipeline, self.catalog.encode(),
                               client_id=config.mqtt.client_id, inflight=config.mqtt.inflight,
                               keepalive=config.mqtt.keepalive,
                               ca_file=str(config.mqtt.ca_file) if config.mqtt.ca_file else None,
                               username=config.mqtt.username, password=config.mqtt.password(),
                               retained=((registration_topic(self.provider_hex),
                                          self.identity.registration()),))
        self.dashboard = DashboardSource(
            self.metrics, ledger, self.channels, lambda: self.catalog, self.offer.describe,
            {"provider": self.provider_address, "client_id": self.ingress.client_id},
            self._broker_health, self._chain_health(chain))
        self._settle_in_background = settle_in_background and self.settler is not None
        self._stop = threading.Event()
        self._settle_thread: threading.Thread | None = None
        self._catalog_thread: threading.Thread | None = None
        self._metrics_server: MetricsServer | None = None

    def refresh_catalog(self) -> bool:
        """Publish the next catalog when its window has begun (before the current one
        expires); True when it did."""
        with self._offer_lock:
            fresh = self.offer.catalog_at(int(self._clock()))
            if fresh.seq <= self.catalog.seq:
                return False
            self.rules.set_catalog(fresh)
            self.catalog = fresh
            self.ingress.publish_catalog(fresh.encode())
        event(self._log, "catalog_published", seq=fresh.seq, valid_from=fresh.valid_from,
              valid_until=fresh.valid_until)
        return True

    def reload(self, config: GatewayConfig) -> None:
        """Sell the products and prices of ``config``'s [catalog] from now on: a catalog
        with a higher seq, signed and published retained; the running one is honoured
        until its valid_until. A config whose products fail to load changes nothing
        (ProductLoadError)."""
        with self._offer_lock:
            now = int(self._clock())
            offer = Offer(config.catalog, ProviderContext(self._secret, self.separator),
                          self._catalog_anchor, now, floor=self.catalog.seq)
            retired, self.offer = self.offer, offer
            self.config = dataclasses.replace(self.config, catalog=config.catalog)
            self.catalog = offer.catalog_at(now)
            self.rules.set_offer(self.catalog, offer.providers)
            self.ingress.publish_catalog(self.catalog.encode())
        # A request checked against a retired product may still be served by it: close it
        # once the longest time-out a serve may take has passed.
        grace = max((p.provider.timeout for p in retired.products.values()), default=0.0)
        closer = threading.Timer(grace + 1.0, retired.close)
        closer.daemon = True
        closer.start()
        event(self._log, "catalog_reloaded", seq=self.catalog.seq,
              products={p.name: p.unit_price for p in self.catalog.products})

    def _catalog_loop(self) -> None:
        every = max(1.0, min(60.0, overlap_of(self.config.catalog.validity) / 10))
        while not self._stop.wait(every):
            try:
                self.refresh_catalog()
            except Exception as exc:  # a broker hiccup; the next round publishes it
                event(self._log, "catalog_refresh_failed", logging.WARNING, error=str(exc))

    def _broker_health(self) -> str:
        if not self.ingress.connected:
            raise ConnectionError(f"not connected to {self.config.mqtt.host}:"
                                  f"{self.config.mqtt.port}")
        return f"{self.config.mqtt.host}:{self.config.mqtt.port}"

    def _chain_health(self, chain: RedeemChain | None) -> Callable[[], str] | None:
        """The node's head when it answers (a chain without block_number: the event
        follower's last poll)."""
        block_number = getattr(chain, "block_number", None)
        if callable(block_number):
            return lambda: f"block {block_number()}"
        if self.follower is None:
            return None
        follower = self.follower

        def followed() -> str:
            stats = follower.stats()
            if stats.head is None:
                raise ConnectionError("the event follower has not reached the node yet")
            return f"block {stats.head} (event follower)"
        return followed

    def _settlement_lag(self) -> float:
        records = self.ledger.unredeemed()
        if not records:
            return 0.0
        oldest = min(r.first_unredeemed_ms for r in records)
        return max(0.0, time.time() - oldest / 1000)

    def _follower_gauges(self, follower: EventFollower) -> None:
        def cursor() -> float:
            block = follower.stats().cursor
            if block is None:
                raise LookupError("not following yet")  # the gauge is left out
            return block

        def lag() -> float:
            stats = follower.stats()
            if stats.cursor is None or stats.head is None:
                raise LookupError("not following yet")
            return max(0, stats.head - stats.cursor)

        gauges = self.metrics.gauges
        gauges["nanotoll_chain_events_block"] = cursor
        gauges["nanotoll_chain_events_lag_blocks"] = lag
        gauges["nanotoll_chain_events_applied"] = lambda: follower.stats().applied
        gauges["nanotoll_chain_events_reorgs"] = lambda: follower.stats().reorgs
        gauges["nanotoll_chain_events_failures"] = lambda: follower.stats().failures

    def start(self) -> None:
        if self.config.metrics_port is not None:
            access = self.config.metrics
            self._metrics_server = MetricsServer(self.metrics, self.config.metrics_port,
                                                 access.host, access.login(),
                                                 self.identity.routes(),
                                                 dashboard_pages(self.dashboard.document))
        if self.follower is not None:  # before requests: its cursor is the start block
            self.follower.start()
        if self._settle_in_background:
            # Before the broker: after a crash, settlement resumes as soon as the chain
            # and the ledger are there, not after the requests queued in our session.
            self._settle_thread = threading.Thread(target=self._settle_loop, name="settler",
                                                   daemon=True)
            self._settle_thread.start()
        try:
            self.ingress.start()
        except BaseException:
            self._stop.set()
            if self._settle_thread is not None:
                self._settle_thread.join(timeout=30)
            if self.follower is not None:
                self.follower.stop()
            raise
        self._catalog_thread = threading.Thread(target=self._catalog_loop, name="catalog",
                                                daemon=True)
        self._catalog_thread.start()
        event(self._log, "gateway_started", provider=self.provider_address,
              catalog_seq=self.catalog.seq, broker=f"{self.config.mqtt.host}:"
              f"{self.config.mqtt.port}", client_id=self.ingress.client_id)

    def _settle_loop(self) -> None:
        assert self.settler is not None
        # The first round at once: after a crash, what this gateway had signed is
        # broadcast or seen through now, not a check interval later.
        while not self._stop.is_set():
            try:
                self.settler.run_once()
            except Exception as exc:  # the node may be down; try again next round
                event(self._log, "settlement_round_failed", logging.WARNING, error=str(exc))
            self._stop.wait(self.config.settlement.check_every)

    def stop(self) -> None:
        self._stop.set()
        if self._catalog_thread is not None:
            self._catalog_thread.join(timeout=10)
        self.ingress.stop()
        if self.follower is not None:
            self.follower.stop()
        if self._settle_thread is not None:
            self._settle_thread.join(timeout=30)
        if self._metrics_server is not None:
            self._metrics_server.close()
        self.offer.close()
        event(self._log, "gateway_stopped", **self.ledger.totals())

    def __enter__(self) -> GatewayService:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
