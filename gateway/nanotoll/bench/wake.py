"""The gateway's pipeline in this process, by batch size and by pause between batches.

``python -m nanotoll.bench.wake`` runs ``Pipeline.run`` (rules, serve, receipt, the
durable SQLite write: everything the gateway does for a purchase but MQTT) over
pre-signed requests on many channels, and reports this thread's CPU microseconds per
purchase three ways: batches of ``BATCH`` (what saturation gives the gateway), batches of
one back to back (the fixed cost of a batch: above all the commit), and batches of one
with ``PAUSE`` seconds of sleep before each (one purchase per wake-up, as at 200/s).
Then the same for a fixed piece of plain Python, so that what a pause costs the pipeline
can be told apart from what it costs any code on the host (caches and the virtual CPU
going cold while the thread sleeps).

No broker, no chain: the channels are held in memory; the ledger is a SQLite file in a
temporary folder, ``synchronous=FULL`` as the gateway runs it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHANNELS = 32
BATCH = 32
SINGLES = 200  # batches of one in each of the two single runs
PAUSE = 0.005  # seconds: one purchase every 5 ms is 200/s
PRICE = 1500
CHAIN_ID = 31337
ESCROW = "0x" + "22" * 20


def _cpu_per_call(work: Callable[[], int], rounds: int, pause: float) -> float:
    """This thread's CPU microseconds per unit of ``work`` (which returns its units)."""
    spent = 0.0
    units = 0
    for _ in range(rounds):
        if pause:
            time.sleep(pause)
        started = time.thread_time()
        units += work()
        spent += time.thread_time() - started
    return spent / max(1, units) * 1e6


def _plain_python() -> int:
    """A fixed piece of interpreter work: hashing, sorting, a dict built."""
    for _ in range(3):
        hashlib.sha256(bytes(200)).digest()
        sorted(range(200), key=lambda value: -value)
        _ = {str(key): key for key in range(100)}
    return 1


def run_wake_bench() -> dict[str, Any]:
    """CPU microseconds per purchase in batches of BATCH, of one back to back and of one
    after a PAUSE, and the same pause's effect on plain Python."""
    from ..chain.cache import ChannelCache, MemoryChannels
    from ..chain.channel import ChannelState
    from ..gateway.catalog import build_catalog
    from ..gateway.config import parse_config
    from ..gateway.pipeline import Job, Outcome, Pipeline
    from ..gateway.rules import Rules
    from ..gateway.serve import ProviderContext, build_providers
    from ..ledger.sqlite import SQLiteLedger
    from ..protocol.eip712 import domain_separator
    from ..protocol.messages import Request
    from ..protocol.signing import address_of
    from ..protocol.topics import request_topic
    from ..protocol.voucher import sign
    from ..servers.gateway import gateway_toml

    provider_key, device_key = secrets.token_bytes(32), secrets.token_bytes(32)
    provider_hex = address_of(provider_key)[2:].lower()
    topic = request_topic(provider_hex, address_of(device_key)[2:].lower())
    separator = domain_separator(CHAIN_ID, ESCROW)
    now = int(time.time())
    per_channel = 2 + (BATCH * 4 + 2 * SINGLES) // CHANNELS
    with tempfile.TemporaryDirectory(prefix="nanotoll-wake-") as tmp:
        root = Path(tmp)
        config = parse_config(tomllib.loads(gateway_toml(
            mqtt_port=1883, rpc_url="http://127.0.0.1:1", escrow=ESCROW, chain_id=CHAIN_ID,
            ledger_path=root / "ledger.db")), root)
        states = [ChannelState(channel_id, address_of(device_key), address_of(provider_key),
                               "0x" + "11" * 20, 10**15, 0, now + 86_400, route=1)
                  for channel_id in range(1, CHANNELS + 1)]
        rules = Rules(provider_hex, separator,
                      build_catalog(config.catalog, provider_key, separator, now),
                      build_providers(config.catalog.products,
                                      ProviderContext(provider_key, separator)),
                      ChannelCache(MemoryChannels(*states), max_age=86_400.0), 3600)
        ledger = SQLiteLedger(root / "ledger.db")
        pipeline = Pipeline(rules, ledger, provider_key)
        params = {"lat": 52_520_008, "lon": 13_404_954, "alt": 120}
        queues = [[Request(i, "weather", params, PRICE, config.catalog.seq,
                           sign(device_key, separator, state.channel_id, i * PRICE)).encode()
                   for i in range(1, per_channel + 1)] for state in states]
        codes: dict[str, int] = {}
        turn = [0]

        def respond(job: Job, outcome: Outcome) -> None:
            codes[outcome.code.name] = codes.get(outcome.code.name, 0) + 1

        def batch_of(size: int) -> Callable[[], int]:
            def work() -> int:
                jobs = []
                for _ in range(size):
                    queue = queues[turn[0] % CHANNELS]
                    turn[0] += 1
                    jobs.append(Job(topic, queue.pop(0), respond=respond))
                pipeline.run(jobs)
                return size
            return work

        try:
            batch_of(CHANNELS)()  # every channel's first purchase: its ledger row made
            batched = _cpu_per_call(batch_of(BATCH), 3, 0.0)
            single = _cpu_per_call(batch_of(1), SINGLES, 0.0)
            paused = _cpu_per_call(batch_of(1), SINGLES, PAUSE)
        finally:
            ledger.close()
    if set(codes) != {"OK"}:
        raise RuntimeError(f"purchases failed in the wake bench: {codes}")
    plain = _cpu_per_call(_plain_python, SINGLES, 0.0)
    plain_paused = _cpu_per_call(_plain_python, SINGLES, PAUSE)
    return {
        "pipeline_cpu_us_batch": round(batched, 1),
        "pipeline_cpu_us_single": round(single, 1),
        "pipeline_cpu_us_single_after_pause": round(paused, 1),
        "plain_python_us": round(plain, 1),
        "plain_python_us_after_pause": round(plain_paused, 1),
        "batch": BATCH,
        "pause_ms": PAUSE * 1000,
    }


if __name__ == "__main__":
    print(json.dumps(run_wake_bench(), sort_keys=True))
