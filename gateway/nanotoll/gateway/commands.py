"""What the CLI calls: run the gateway, settle now, report status."""

from __future__ import annotations

import gc
import json
import logging
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

from ..chain.errors import ChainError, NodeUnavailable
from ..chain.node import EscrowChain
from ..chain.settle import SettlementSummary, Settler
from ..ledger import open_ledger
from ..logevent import event
from .config import ConfigError, GatewayConfig
from .logs import setup_logging

CHAIN_RETRY_FIRST = 1.0  # seconds before the first retry of a node that is down at start
CHAIN_RETRY_MAX = 30.0  # ... doubling up to this
RELOAD_POLL = 0.2  # seconds between looks at a SIGHUP's reload request


def _chain(config: GatewayConfig, secret: bytes) -> EscrowChain:
    chain = EscrowChain(config.chain.rpc_url, config.chain.escrow, config.chain.chain_id, secret)
    try:
        chain.check_chain_id()
    except ChainError as exc:
        raise ConfigError(f"{config.source}: [chain] rpc_url: {exc}") from None
    return chain


def _chain_when_up(config: GatewayConfig, secret: bytes, stop: threading.Event
                   ) -> EscrowChain | None:
    """The chain once its node answers: a node that is down is waited for with back-off
    (it is a transient error, as a lost broker is), a wrong chain id is a ConfigError at
    once. None when ``stop`` is set while waiting."""
    log = logging.getLogger("nanotoll.gateway")
    chain = EscrowChain(config.chain.rpc_url, config.chain.escrow, config.chain.chain_id, secret)
    delay = CHAIN_RETRY_FIRST
    while True:
        try:
            chain.check_chain_id()
            return chain
        except NodeUnavailable as exc:
            event(log, "chain_unavailable", logging.WARNING, rpc_url=config.chain.rpc_url,
                  error=str(exc), retry_in=delay)
        except ChainError as exc:
            raise ConfigError(f"{config.source}: [chain] rpc_url: {exc}") from None
        if stop.wait(delay):
            return None
        delay = min(delay * 2, CHAIN_RETRY_MAX)


def run_gateway(config: GatewayConfig, environ: Mapping[str, str] | None = None,
                stop: threading.Event | None = None) -> None:
    """Serve until SIGINT or SIGTERM (or ``stop`` is set), then shut down cleanly."""
    from .reload import reload_config
    from .serve import UnknownProviderKind
    from .service import GatewayService

    setup_logging(config.log_level)
    # The ingress thread must get the GIL back quickly while another thread (the event
    # follower, the settler) runs Python: the default 5 ms switch interval would add up to
    # 5 ms to a response.
    sys.setswitchinterval(0.0005)
    secret = config.provider_key(environ)
    stop = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    reload = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: reload.set())
    try:
        chain = _chain_when_up(config, secret, stop)
    except BaseException:
        _restore(previous)
        raise
    if chain is None:  # stopped while the node was down
        _restore(previous)
        return
    ledger = open_ledger(config.ledger_url)
    try:
        try:
            service = GatewayService(config, secret, ledger, chain, chain, events=chain)
        except UnknownProviderKind as exc:
            raise ConfigError(f"{config.source}: [[catalog.products]] kind: {exc}") from None
        if threading.current_thread() is threading.main_thread():
            # What is loaded by now (web3, the ABIs, the config, the catalog) lives as
            # long as the process: out of the collector's sight, a full collection
            # looks at the requests' objects only. Those of the libraries took it
            # 113-156 ms, and every purchase in flight waited that long (a 1,000-device
            # fleet's p99). Only in a process of its own: tests run gateways in threads.
            gc.freeze()
        service.start()
        # One line on stdout whatever the log level: supervisors wait for it.
        print(json.dumps({"event": "gateway_ready", "provider": service.provider_address,
                          "client_id": service.ingress.client_id}), flush=True)
        try:
            while not stop.wait(RELOAD_POLL):
                if reload.is_set():
                    reload.clear()
                    reload_config(service, config.source)
        finally:
            service.stop()
    finally:
        ledger.close()
        _restore(previous)


def _restore(previous: Mapping[signal.Signals, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def settle_now(config: GatewayConfig, environ: Mapping[str, str] | None = None,
               timeout: float = 120.0) -> SettlementSummary:
    """Redeem every accepted, unredeemed voucher and wait for confirmation."""
    secret = config.provider_key(environ)
    chain = _chain(config, secret)
    ledger = open_ledger(config.ledger_url)
    try:
        settler = Settler(ledger, chain, config.settlement, config.chain.confirmations,
                          config.chain.receipt_timeout)
        return settler.settle_now(timeout=timeout, poll=config.chain.poll_interval)
    finally:
        ledger.close()


def status(config: GatewayConfig, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Ledger totals and open settlements; no chain or broker needed. A ledger that does
    not exist is a LedgerError (a wrong path must not read as an idle gateway)."""
    ledger = open_ledger(config.ledger_url, create=False)
    try:
        totals = ledger.totals()
        open_settlements = [
            {"id": s.settlement_id, "state": s.state.value, "nonce": s.nonce,
             "tx": s.tx_hash, "items": len(s.items)}
            for s in ledger.settlements(open_only=True)
        ]
        result: dict[str, Any] = {"ledger": config.ledger_url, **totals,
                                  "open_settlements": open_settlements}
        try:
            result["provider"] = config.provider_address(environ)
        except ConfigError:
            result["provider"] = None
        return result
    finally:
        ledger.close()
