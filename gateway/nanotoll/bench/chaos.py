"""``nanotoll bench chaos``: purchases from many channels while the gateway is SIGKILLed
at random moments; nothing acknowledged lost, nothing charged twice, settlement resumes.

All on loopback: mosquitto, anvil with the escrow and one channel per simulated device
(a block a second, so a redeem stays signed or sent for a while), and ``nanotoll gateway
run`` with a durable SQLite ledger, a stable client id and a settlement policy that keeps
redeeming during the run. The load generator is this process: pre-signed vouchers, one
request out per device, the same bytes sent again when no answer came (what a device
does). The kill points are drawn from a seeded generator over the count of acknowledged
purchases (a kill that is due holds new purchases back until it is done), so a faster or
slower machine sees the same kills land mid-stream; every other
kill also waits (at most :data:`ARMED_AT_MOST` s) for a redeem in flight.

After each kill the gateway is started again at once. Its settlement stall is the time
from that restart until every settlement that was open at the kill is closed (confirmed,
or replaced and its vouchers due again); the next kill waits for it. At the end the
gateway stops, ``settle now`` redeems the rest, and the figures are:

``purchases`` acknowledged, ``kills`` done, ``lost`` (acknowledged purchases the ledger
does not hold), ``double_charges`` (units accepted beyond a channel's highest voucher, in
purchases), ``settled_equals_paid`` (for every channel: acknowledged = ledger = on-chain
paid), ``max_settlement_stall_s`` (and ``stalls_measured``: restarts that found an open
settlement), ``max_restart_s`` (a restart to the gateway's ready line; the settle worker
starts before that line, so a stall may end first), ``settlements`` (redeem transactions
the gateway made), ``refusals`` (answers other than OK and BUSY), ``resends``, ``seconds``.
"""

from __future__ import annotations

import hashlib
import queue
import random
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..nodelay import no_delay

if TYPE_CHECKING:
    from ..servers.gateway import GatewayProcess

PRICE = 1500
CLIENT_ID = "chaos-gateway"
RESEND_AFTER = 2.0  # seconds without an answer before a device sends the same bytes again
BUSY_PAUSE = 0.2  # seconds a device waits after a BUSY answer
OPEN_STATES = ("signed", "sent", "mined")
ARMED_AT_MOST = 5.0  # seconds a kill waits for a redeem in flight before it strikes anyway


@dataclass
class _Device:
    channel_id: int
    topic: str
    response_topic: str
    requests: list[bytes]
    acknowledged: int = 0  # purchases answered OK, in order
    sent_at: float | None = None  # when the outstanding request was last sent
    resend_at: float = 0.0  # a BUSY answer: when to send it again


@dataclass
class _Stall:
    restarted: float  # monotonic time the restart began
    open_ids: set[int]  # settlements open at the kill


class _Restart(threading.Thread):
    """``gateway.start()`` beside the load: settlement may resume before the gateway's
    ready line, and the stall is watched meanwhile."""

    def __init__(self, gateway: GatewayProcess) -> None:
        super().__init__(name="chaos-restart", daemon=True)
        self.gateway = gateway
        self.began = time.monotonic()
        self.ready: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.gateway.start()
            self.ready = time.monotonic()
        except BaseException as exc:  # handed to the bench's thread
            self.error = exc


def check_chaos(purchases: int, kills: int, devices: int) -> None:
    """ValueError for figures the bench cannot run, before anything starts."""
    for name, value, low in (("purchases", purchases, 1), ("kills", kills, 0),
                             ("devices", devices, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
    if kills >= purchases:
        raise ValueError(f"kills ({kills}) must be fewer than purchases ({purchases})")


def _device_key(seed: int, index: int) -> bytes:
    return hashlib.sha256(f"nanotoll-chaos-{seed}-{index}".encode()).digest()


def _open_settlements(ledger_path: Path) -> set[int]:
    """Ids of the settlements still open, read as another process reads the file."""
    with sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=10) as conn:
        try:
            rows = conn.execute("SELECT settlement_id FROM settlements WHERE state IN "
                                "(?, ?, ?)", OPEN_STATES).fetchall()
        except sqlite3.OperationalError:  # the gateway has not written its schema yet
            return set()
    return {int(row[0]) for row in rows}


def _settlement_count(ledger_path: Path) -> int:
    with sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM settlements").fetchone()[0])


class _Load:
    """One paho client for every device; answers are handled in the caller's thread."""

    def __init__(self, port: int, devices: list[_Device]) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.answers: queue.Queue[tuple[str, bytes]] = queue.Queue()
        ready = queue.Queue[bool]()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="chaos-load",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(d.response_topic, 1) for d in devices])
        self.client.on_subscribe = lambda *_: ready.put(True)
        self.client.on_message = lambda c, u, m: self.answers.put((m.topic, bytes(m.payload)))
        self.client.on_socket_open = no_delay
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        try:
            ready.get(timeout=10)
        except queue.Empty:
            self.close()
            raise RuntimeError("the chaos load generator could not subscribe") from None

    def send(self, device: _Device, now: float) -> None:
        device.sent_at = now
        self.client.publish(device.topic, device.requests[device.acknowledged], qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_chaos_bench(purchases: int = 10_000, kills: int = 100, devices: int = 50,
                    seed: int = 13, timeout: float = 3600.0) -> dict[str, Any]:
    """One JSON-ready dict of the figures in the module's docstring."""
    check_chaos(purchases, kills, devices)
    from ..chain import ChannelSpec, EscrowClient
    from ..gateway.commands import settle_now
    from ..gateway.config import load_config
    from ..ledger.sqlite import SQLiteLedger
    from ..protocol.eip712 import domain_separator
    from ..protocol.messages import Request
    from ..protocol.signing import address_of
    from ..protocol.topics import request_topic, response_topic
    from ..protocol.voucher import sign
    from ..servers.anvil import Anvil
    from ..servers.gateway import GatewayProcess, gateway_toml
    from ..servers.mosquitto import Mosquitto

    rng = random.Random(seed)
    devices = min(devices, purchases)
    counts = [purchases // devices + (1 if i < purchases % devices else 0)
              for i in range(devices)]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nanotoll-chaos-") as tmp:
        root = Path(tmp)
        # Blocks once a second, not one per transaction: a redeem stays signed or sent
        # for a while, so kills land in those states too.
        with Anvil(workdir=root / "anvil", extra_args=("--block-time", "1")) as anvil, \
                Mosquitto(workdir=root / "broker", secure=False) as broker:
            client = EscrowClient.deploy(anvil.w3, anvil.new_account())
            payer, provider = anvil.new_account(), anvil.new_account()
            keys = [_device_key(seed, i) for i in range(devices)]
            client.mint(payer, payer.address, sum(counts) * PRICE)
            expiry = int(anvil.w3.eth.get_block("latest")["timestamp"]) + 30 * 86_400
            ids, _ = client.open_many(payer, [
                ChannelSpec(address_of(key), provider.address, count * PRICE, expiry)
                for key, count in zip(keys, counts, strict=True)])
            provider_key = bytes(provider.key)
            provider_hex = provider.address[2:].lower()
            separator = domain_separator(31337, client.address)
            params = {"lat": 52_520_008, "lon": 13_404_954, "alt": 120, "t": int(time.time())}
            fleet = []
            for key, channel_id, count in zip(keys, ids, counts, strict=True):
                device_hex = address_of(key)[2:].lower()
                requests = [Request(i + 1, "weather", params, PRICE, 1,
                                    sign(key, separator, channel_id, (i + 1) * PRICE)).encode()
                            for i in range(count)]
                fleet.append(_Device(channel_id, request_topic(provider_hex, device_hex),
                                     response_topic(provider_hex, device_hex), requests))
            ledger_path = root / "ledger.db"
            config_path = root / "gateway.toml"
            # A low threshold and a short interval: settlements are in flight all run long.
            config_path.write_text(gateway_toml(
                mqtt_port=broker.port, rpc_url=anvil.rpc_url, escrow=client.address,
                chain_id=31337, ledger_path=ledger_path, client_id=CLIENT_ID, catalog_seq=1,
                extra={"chain": {"poll_interval": 0.05},
                       "settlement": {"threshold": 20 * PRICE, "interval": 2,
                                      "check_every": 0.25},
                       "log": {"level": "WARNING"}}))
            kill_at = sorted(rng.sample(range(1, purchases), kills))
            # A start waits long on a loaded machine; the figures say how long it took.
            gateway = GatewayProcess(config_path, provider_key, root / "gateway", timeout=180)
            figures = _drive(fleet, broker.port, gateway, ledger_path, kill_at, rng, timeout)
            environ = {"NANOTOLL_PROVIDER_KEY": provider_key.hex()}
            left = settle_now(load_config(config_path), environ, timeout=300)
            ledger = SQLiteLedger(ledger_path)
            try:
                lost = double = 0
                settled = left.pending == 0
                for device in fleet:
                    record = ledger.lookup(device.channel_id)
                    accepted = record.cumulative if record is not None else 0
                    acknowledged = device.acknowledged * PRICE
                    lost += max(0, acknowledged - accepted) // PRICE
                    charged = sum(i for _, i in ledger.vouchers(device.channel_id))
                    double += max(0, charged - accepted) // PRICE
                    paid = client.channel(device.channel_id).paid
                    settled = settled and acknowledged == accepted == paid
            finally:
                ledger.close()
    figures.update({"lost": lost, "double_charges": double, "settled_equals_paid": settled,
                    "devices": devices, "seed": seed,
                    "seconds": round(time.monotonic() - started, 1)})
    return figures


def _drive(fleet: list[_Device], port: int, gateway: GatewayProcess, ledger_path: Path,
           kill_at: list[int], rng: random.Random, timeout: float) -> dict[str, Any]:
    """The purchases with the kills among them; the load and kill figures."""
    from ..protocol.errors import ErrorCode
    from ..protocol.messages import decode_response

    by_topic = {d.response_topic: d for d in fleet}
    total = sum(len(d.requests) for d in fleet)
    done = resends = refusals = kills = 0
    stalls: list[float] = []
    restarts: list[float] = []  # seconds from each restart to the gateway's ready line
    restart: _Restart | None = None
    armed: float | None = None  # when the next kill's purchase count was reached
    stall: _Stall | None = None
    load = _Load(port, fleet)
    deadline = time.monotonic() + timeout
    try:
        gateway.start()
        while done < total or stall is not None or restart is not None:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"chaos run: {done} of {total} purchases within "
                                   f"{timeout:.0f} s")
            # A kill that is due holds new purchases back (outstanding ones go on), so
            # each kill lands at its purchase count however long the one before took.
            kill_due = kills < len(kill_at) and done >= kill_at[kills]
            for device in fleet:
                if device.acknowledged >= len(device.requests) or now < device.resend_at:
                    continue
                if device.sent_at is None:
                    if kill_due:
                        continue
                    load.send(device, now)
                elif now - device.sent_at > RESEND_AFTER:
                    resends += 1
                    load.send(device, now)
            try:
                topic, payload = load.answers.get(timeout=0.05)
            except queue.Empty:
                topic = ""
            while topic:
                device = by_topic[topic]
                response = decode_response(payload)
                if response.request_id == device.acknowledged + 1 and device.sent_at is not None:
                    if response.code == ErrorCode.OK:
                        device.acknowledged += 1
                        device.sent_at = None
                        done += 1
                    elif response.code == ErrorCode.BUSY:
                        device.sent_at = None
                        device.resend_at = time.monotonic() + BUSY_PAUSE
                    else:
                        refusals += 1
                try:
                    topic, payload = load.answers.get_nowait()
                except queue.Empty:
                    topic = ""
            if restart is not None and not restart.is_alive():
                if restart.error is not None or restart.ready is None:
                    raise RuntimeError(f"the gateway did not restart: {restart.error}")
                restarts.append(restart.ready - restart.began)
                restart = None
            if stall is not None and not stall.open_ids & _open_settlements(ledger_path):
                stalls.append(time.monotonic() - stall.restarted)
                stall = None
            if stall is None and restart is None and kill_due:
                armed = now if armed is None else armed
                # Every other kill waits (a while at most) for a redeem in flight, so that
                # the stall after a restart is measured often, not only by chance.
                wait_for_open = kills % 2 == 1 and now - armed < ARMED_AT_MOST
                if not wait_for_open or _open_settlements(ledger_path):
                    # A moment a little later, so kills also land between reads and
                    # writes, not only right after an answer.
                    time.sleep(rng.random() * 0.05)
                    gateway.kill()
                    kills += 1
                    armed = None
                    open_ids = _open_settlements(ledger_path)
                    restart = _Restart(gateway)
                    restart.start()
                    stall = _Stall(restart.began, open_ids) if open_ids else None
        gateway.terminate()
    finally:
        gateway.stop()
        load.close()
    return {"purchases": done, "kills": kills, "resends": resends, "refusals": refusals,
            "max_settlement_stall_s": round(max(stalls, default=0.0), 3),
            "stalls_measured": len(stalls),
            "max_restart_s": round(max(restarts, default=0.0), 3),
            "settlements": _settlement_count(ledger_path)}


if __name__ == "__main__":
    import json
    import sys

    arguments = [int(a) for a in sys.argv[1:4]]
    print(json.dumps(run_chaos_bench(*arguments), sort_keys=True))
