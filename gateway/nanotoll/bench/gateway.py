"""``nanotoll bench gateway``: the gateway against a broker-only echo, same broker, same load.

One run, all on loopback: mosquitto, anvil with the escrow and one channel per simulated
device, then two responders in turn behind the same shared subscription at QoS 1:

(a) an echo process that answers each request with a fixed payload (the broker's floor);
(b) ``nanotoll gateway run`` with a durable SQLite ledger.

One load generator (this process) drives both with pre-signed vouchers over many
channels: first closed-loop at full speed (each device keeps one request in flight, as a
real device does) for throughput and p50/p99; then open-loop at half that rate for the
latency a provider sees when not saturated.

Besides rates and latencies it reports the CPU microseconds per answered request of each
process in the closed loop (``gateway_cpu_us``, ``echo_cpu_us``, ``broker_cpu_us``,
``load_cpu_us``): on a shared machine the rates swing with whatever else runs, the CPU
cost per request much less, and it says what bounds the ratio of the two rates. The
gateway is one Python thread, so its CPU per purchase bounds its rate at
1 s / ``gateway_cpu_us``; the echo's cost is nearly all paho's.

Then the same at a steady 200 requests/s, open loop (``gateway_cpu_us_200``,
``echo_cpu_us_200``), where each request wakes its responder by itself; and with no
requests for a few seconds (``gateway_idle_cpu_ms_per_s``, ``echo_idle_cpu_ms_per_s``).
The echo's ratio of the two CPU figures is the floor of the gateway's: what a message
costs paho and the system alone when it is not read together with others.

Scale-out: ``--gateways N`` (1-16, default 1) runs N ``nanotoll gateway run`` processes
on the one shared subscription, each with its own stable client_id
(``bench-gateway-<i>``), all on one SQLite ledger file: WAL, each process's group commit
takes the file's write lock in turn (``BEGIN IMMEDIATE``, waiting in SQLite's busy
handler) and the compare-and-set runs inside it, so no increment is accepted twice
(tests/gateway/test_gateway_process.py runs two processes on one file). The echo side
then runs N echo processes too: the baseline is what the broker and this load generator
do with N responders. ``gateways`` in the JSON is N; ``gateway_cpu_us`` and
``echo_cpu_us`` are summed over the N processes (CPU per answered request, so what
scale-out costs shows as a larger figure). Before the measurement a 1 s closed loop
warms every process's channel cache.

To measure scale-out, run N = 1, 2, 4, ... on a machine with at least N + 2 cores and
compare ``purchases_per_s`` and ``gateway_cpu_us`` with N = 1: it scales while the rate
grows about N-fold and the CPU per purchase stays near N = 1's. The load generator is
one Python process: once ``load_cpu_us`` x ``purchases_per_s`` nears 1,000,000 µs/s both
sides measure the load generator, and a ratio near 1 then only says the gateways keep up
with it. docs/benchmarks.md holds the figures measured so far.
"""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEVICES = 32
FULL_SECONDS = 4.0
HALF_SECONDS = 3.0
# The load a fleet of 1,000 devices buying every 5 s offers: what an operator sees.
STEADY_RATE = 200.0
STEADY_SECONDS = 4.0
IDLE_SECONDS = 3.0  # no requests at all: what waiting costs (timers, polls, background)
WARM_SECONDS = 1.0
PRICE = 1500
MAX_GATEWAYS = 16
# Pre-signed requests per device: warm-up, closed and open loop at up to ~9,000/s (about
# where this one load generator tops out) need ~1,800; running out stops the bench.
PER_DEVICE = 2000


def check_gateways(count: int) -> int:
    """``count`` if it is a number of gateway (and echo) processes the bench can run."""
    if isinstance(count, bool) or not isinstance(count, int) \
            or not 1 <= count <= MAX_GATEWAYS:
        raise ValueError(f"--gateways must be in 1..{MAX_GATEWAYS}, got {count!r}")
    return count


@dataclass
class _Device:
    topic: str
    response_topic: str
    requests: list[bytes]
    next_index: int = 0
    in_flight: float | None = None  # send time of the outstanding request


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _no_delay(client: Any, userdata: Any, sock: Any) -> None:
    import socket

    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _is_error(payload: bytes) -> bool:
    from ..protocol import cbor

    try:
        fields = cbor.loads(payload)
    except cbor.CBORError:
        return False  # the echo's fixed answer
    return isinstance(fields, list) and len(fields) == 4 and fields[2] != 0


class _Load:
    """One paho client that publishes requests and times responses."""

    def __init__(self, port: int, devices: list[_Device]) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.devices = devices
        self.by_topic = {d.response_topic: d for d in devices}
        self.latencies: list[float] = []
        self.closed_loop = False
        self.errors = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-load-{secrets.token_hex(4)}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(d.response_topic, 1) for d in devices])
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.client.on_socket_open = _no_delay
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("load generator could not subscribe")

    def send(self, device: _Device) -> bool:
        if device.next_index >= len(device.requests):
            return False
        payload = device.requests[device.next_index]
        device.next_index += 1
        device.in_flight = time.perf_counter()
        self.client.publish(device.topic, payload, qos=1)
        return True

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        now = time.perf_counter()
        device = self.by_topic.get(message.topic)
        if device is None or device.in_flight is None:
            return
        with self._lock:
            self.latencies.append((now - device.in_flight) * 1000)
            if _is_error(bytes(message.payload)):
                self.errors += 1
        device.in_flight = None
        if self.closed_loop:
            self.send(device)

    def closed(self, seconds: float) -> tuple[float, list[float]]:
        self.latencies = []
        self.closed_loop = True
        started = time.perf_counter()
        for device in self.devices:
            self.send(device)
        time.sleep(seconds)
        self.closed_loop = False
        elapsed = time.perf_counter() - started
        count = len(self.latencies)
        self._drain()
        return count / elapsed, list(self.latencies[:count])

    def open(self, rate: float, seconds: float) -> list[float]:
        self.latencies = []
        interval = 1.0 / max(rate, 1.0)
        started = time.perf_counter()
        index = 0
        sent = 0
        while time.perf_counter() - started < seconds:
            due = started + sent * interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            for _ in range(len(self.devices)):  # the next device without a request out
                device = self.devices[index % len(self.devices)]
                index += 1
                if device.in_flight is None:
                    self.send(device)
                    break
            sent += 1
        self._drain()
        return list(self.latencies)

    def _drain(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while any(d.in_flight is not None for d in self.devices) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        for device in self.devices:
            device.in_flight = None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_echo(port: int, provider_hex: str) -> None:
    """The broker-only responder: answer each request with a fixed payload (a process)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    from ..protocol.topics import response_topic, shared_subscription

    answer = bytes(200)

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        device = message.topic.rsplit("/", 1)[-1]
        client.publish(response_topic(provider_hex, device), answer, qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-echo-{os.getpid()}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe(shared_subscription(provider_hex), qos=1)
    client.on_subscribe = lambda *_: print("echo ready", flush=True)
    client.on_message = on_message
    client.on_socket_open = _no_delay
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_forever()


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads); this process for None."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_of(pids: list[int | None]) -> float:
    return sum(_cpu_seconds(pid) for pid in pids)


def _measure(load: _Load, responders: list[int], broker: int | None) -> dict[str, float]:
    """Closed loop, then open loop at half that rate. CPU time per answered request of the
    responders (summed over their processes), the broker and the load generator is taken
    over the closed loop: it says where the cores went, whatever else the machine was
    doing meanwhile."""
    pids: dict[str, list[int | None]] = {"responder": list(responders), "broker": [broker],
                                         "load": [None]}
    before = {name: _cpu_of(group) for name, group in pids.items()}
    rate, full = load.closed(FULL_SECONDS)
    after = {name: _cpu_of(group) for name, group in pids.items()}
    half = load.open(rate / 2, HALF_SECONDS)
    steady_before = {name: _cpu_of(group) for name, group in pids.items()}
    steady = load.open(STEADY_RATE, STEADY_SECONDS)
    steady_after = {name: _cpu_of(group) for name, group in pids.items()}
    time.sleep(IDLE_SECONDS)
    idle_after = {name: _cpu_of(group) for name, group in pids.items()}
    if any(d.next_index >= len(d.requests) for d in load.devices):
        raise RuntimeError("the load generator ran out of pre-signed requests, so the rate "
                           "would be understated: raise PER_DEVICE")
    figures = {"rate": rate, "p50": statistics.median(full) if full else float("nan"),
               "p99": _percentile(full, 0.99), "p99_half": _percentile(half, 0.99),
               "errors": load.errors}
    for name in pids:
        spent = after[name] - before[name]
        figures[f"cpu_us_{name}"] = spent / len(full) * 1e6 if full else float("nan")
        spent = steady_after[name] - steady_before[name]
        figures[f"cpu_us_{name}_steady"] = spent / len(steady) * 1e6 if steady \
            else float("nan")
        figures[f"idle_ms_{name}"] = (idle_after[name] - steady_after[name]) \
            / IDLE_SECONDS * 1000
    return figures


def _pids(processes: list[Any]) -> list[int]:
    pids = [p.process.pid for p in processes if p.process is not None]
    if len(pids) != len(processes):
        raise RuntimeError("a responder process did not start")
    return pids


def channel_read_cpu_ms(rpc_url: str, escrow: str, chain_id: int, ids: list[int],
                        rounds: int = 3) -> float:
    """This thread's CPU milliseconds for one ``EscrowChain.channel`` read, the gateway's
    chain read (a first request, a cache refresh, the settler's expiry scan): the lowest
    of ``rounds`` rounds over ``ids``, each timed whole."""
    from ..chain.node import EscrowChain

    chain = EscrowChain(rpc_url, escrow, chain_id)
    chain.channel(ids[0])  # the connection and the node's chain id, once
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        for channel_id in ids:
            chain.channel(channel_id)
        best = min(best, (time.thread_time() - started) * 1000 / len(ids))
    return round(best, 3)


def run_gateway_bench(gateways: int = 1) -> dict[str, Any]:
    """One JSON-ready dict: purchases_per_s, echo_per_s, ratio, p50_ms, p99_ms,
    echo_p99_ms, p99_ms_half_load, echo_p99_ms_half_load, with ``gateways`` gateway
    processes against as many echo processes. ValueError for a count outside
    1..MAX_GATEWAYS, before anything starts."""
    check_gateways(gateways)
    from ..chain import ChannelSpec, EscrowClient
    from ..protocol.eip712 import domain_separator
    from ..protocol.messages import Request
    from ..protocol.signing import address_of
    from ..protocol.topics import request_topic, response_topic
    from ..protocol.voucher import sign
    from ..servers.anvil import Anvil
    from ..servers.gateway import GatewayProcess, gateway_toml
    from ..servers.mosquitto import Mosquitto
    from ..servers.process import ManagedProcess

    class Echo(ManagedProcess):
        name = "echo"

        def __init__(self, port: int, provider_hex: str, workdir: Path) -> None:
            super().__init__(workdir)
            self.port, self.provider_hex = port, provider_hex

        def start(self) -> None:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH"))
                if p)
            self.spawn([sys.executable, "-m", "nanotoll.bench.gateway", "echo", str(self.port),
                        self.provider_hex], env=env)
            deadline = time.monotonic() + 20
            while "echo ready" not in (self.log_path.read_text() if self.log_path.exists()
                                       else ""):
                if time.monotonic() > deadline:
                    raise RuntimeError("the echo responder did not start")
                time.sleep(0.05)

    per_device = PER_DEVICE
    with tempfile.TemporaryDirectory(prefix="nanotoll-bench-") as tmp:
        root = Path(tmp)
        with Anvil(workdir=root / "anvil") as anvil, \
                Mosquitto(workdir=root / "broker", secure=False) as broker:
            client = EscrowClient.deploy(anvil.w3, anvil.new_account())
            payer, provider = anvil.new_account(), anvil.new_account()
            keys = [secrets.token_bytes(32) for _ in range(DEVICES)]
            deposit = per_device * PRICE * 2
            client.mint(payer, payer.address, deposit * DEVICES)
            expiry = int(anvil.w3.eth.get_block("latest")["timestamp"]) + 30 * 86_400
            ids, _ = client.open_many(payer, [ChannelSpec(address_of(k), provider.address,
                                                          deposit, expiry) for k in keys])
            read_ms = channel_read_cpu_ms(anvil.rpc_url, client.address, 31337, ids)
            provider_key = bytes(provider.key)
            provider_hex = provider.address[2:].lower()
            separator = domain_separator(31337, client.address)
            now = int(time.time())
            params = {"lat": 52_520_008, "lon": 13_404_954, "alt": 120, "t": now}
            devices = []
            for key, channel_id in zip(keys, ids, strict=True):
                device_hex = address_of(key)[2:].lower()
                requests = [Request(i + 1, "weather", params, PRICE, 1,
                                    sign(key, separator, channel_id, (i + 1) * PRICE)).encode()
                            for i in range(per_device)]
                devices.append(_Device(request_topic(provider_hex, device_hex),
                                       response_topic(provider_hex, device_hex), requests))

            load = _Load(broker.port, devices)
            try:
                broker_pid = broker.process.pid if broker.process else None
                with contextlib.ExitStack() as stack:
                    echoes = [stack.enter_context(Echo(broker.port, provider_hex,
                                                       root / f"echo-{i}"))
                              for i in range(gateways)]
                    echo = _measure(load, _pids(echoes), broker_pid)
                for device in devices:
                    device.next_index = 0
                with contextlib.ExitStack() as stack:
                    processes = []
                    for i in range(gateways):  # one SQLite file, a stable client_id each
                        config_path = root / f"gateway-{i}.toml"
                        config_path.write_text(gateway_toml(
                            mqtt_port=broker.port, rpc_url=anvil.rpc_url,
                            escrow=client.address, chain_id=31337,
                            ledger_path=root / "ledger.db", client_id=f"bench-gateway-{i}",
                            catalog_seq=1, extra={"log": {"level": "WARNING"},
                                                  "settlement": {"check_every": 3600}}))
                        processes.append(stack.enter_context(
                            GatewayProcess(config_path, provider_key, root / f"gateway-{i}")))
                    # Warm each process's channel cache: the shared subscription spreads a
                    # closed loop's requests over the processes in no fixed pattern, so in
                    # a second each of them sees every channel.
                    load.closed(WARM_SECONDS)
                    load.errors = 0
                    gateway = _measure(load, _pids(processes), broker_pid)
            finally:
                load.close()
    return {
        "purchases_per_s": round(gateway["rate"], 1),
        "echo_per_s": round(echo["rate"], 1),
        "ratio": round(gateway["rate"] / echo["rate"], 3) if echo["rate"] else 0.0,
        "p50_ms": round(gateway["p50"], 3),
        "p99_ms": round(gateway["p99"], 3),
        "echo_p99_ms": round(echo["p99"], 3),
        "p99_ms_half_load": round(gateway["p99_half"], 3),
        "echo_p99_ms_half_load": round(echo["p99_half"], 3),
        "gateway_errors": int(gateway["errors"]),
        "channel_read_cpu_ms": read_ms,
        "devices": DEVICES,
        "gateways": gateways,
        # CPU microseconds per answered request in the closed loop, by process (the
        # gateway's and the echo's summed over their ``gateways`` processes).
        "gateway_cpu_us": round(gateway["cpu_us_responder"], 1),
        "echo_cpu_us": round(echo["cpu_us_responder"], 1),
        # The same at a steady STEADY_RATE (open loop), where batches are small: what
        # per-message and background work cost beside the purchase itself.
        "gateway_cpu_us_200": round(gateway["cpu_us_responder_steady"], 1),
        "gateway_cpu_ratio_200_to_saturation": round(
            gateway["cpu_us_responder_steady"] / gateway["cpu_us_responder"], 2)
        if gateway["cpu_us_responder"] else None,
        # The echo at the same steady rate: paho and the system calls alone, whose cost a
        # message also grows when each message wakes its process by itself. The
        # gateway's ratio can get no lower than the echo's, short of batching.
        "echo_cpu_us_200": round(echo["cpu_us_responder_steady"], 1),
        "echo_cpu_ratio_200_to_saturation": round(
            echo["cpu_us_responder_steady"] / echo["cpu_us_responder"], 2)
        if echo["cpu_us_responder"] else None,
        # CPU milliseconds a second with no request coming in (the gateway's polls of
        # the broker socket and the chain, its timers): what idling costs.
        "gateway_idle_cpu_ms_per_s": round(gateway["idle_ms_responder"], 2),
        "echo_idle_cpu_ms_per_s": round(echo["idle_ms_responder"], 2),
        "broker_cpu_us": round(gateway["cpu_us_broker"], 1),
        "echo_broker_cpu_us": round(echo["cpu_us_broker"], 1),
        "load_cpu_us": round(gateway["cpu_us_load"], 1),
        "echo_load_cpu_us": round(echo["cpu_us_load"], 1),
        "cores": os.cpu_count() or 0,
    }


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "echo":
        run_echo(int(sys.argv[2]), sys.argv[3])
    else:
        import json

        print(json.dumps(run_gateway_bench(int(sys.argv[1]) if len(sys.argv) > 1 else 1),
                         sort_keys=True))
