"""Purchase latency of the firmware on MicroPython's unix port, against the real parts on
loopback: mosquitto, the gateway process and the escrow on anvil.

One device (its key inline in its config, the provider's public key provisioned, comb
tables in its folder) buys ``weather`` ``purchases + 1`` times in one run of
boards/unix/main.py; the console prints each purchase's milliseconds (from the call to
``agent.buy`` to its verified receipt: sign, publish, the gateway's answer, verify).
The first purchase also waits for the retained catalog and is left out.

By default the broker is the one every user runs: TLS with the broker's CA, the device
and the gateway each logged in as their own client with their own rights
(``latency_ms_p50_unix``). ``secure=False`` measures the anonymous plain listener beside
it (``latency_ms_p50_unix_plain``).

Used by ``nanotoll bench agent`` for both.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..servers.tools import REPO_ROOT, micropython_binary

DEVICE_MAIN = REPO_ROOT / "boards" / "unix" / "main.py"
PRICE = 1500  # weather in the gateway's default catalog
DEVICE_KEY = hashlib.sha256(b"nanotoll latency bench device").digest()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def run_unix_latency(purchases: int = 40, timeout: float = 300.0, *,
                     secure: bool = True) -> dict[str, Any]:
    """``latency_ms_p50_unix`` and ``latency_ms_max_unix`` over ``purchases`` purchases;
    with ``secure=False`` the same keys end in ``_plain``."""
    from coincurve import PrivateKey

    from ..broker.clients import add_device
    from ..chain import EscrowClient
    from ..protocol.signing import address_of
    from ..servers.anvil import Anvil
    from ..servers.gateway import GatewayProcess, gateway_toml
    from ..servers.mosquitto import Mosquitto

    device_address = address_of(DEVICE_KEY)
    with tempfile.TemporaryDirectory(prefix="nanotoll-latency-") as tmp:
        root = Path(tmp)
        with Anvil(workdir=root / "anvil") as anvil:
            payer, provider = anvil.new_account(), anvil.new_account()
            provider_hex = provider.address[2:].lower()
            with Mosquitto(workdir=root / "broker", secure=secure,
                           providers=[provider_hex] if secure else ()) as broker:
                escrow = EscrowClient.deploy(anvil.w3, anvil.new_account())
                deposit = (purchases + 1) * PRICE
                escrow.mint(payer, payer.address, deposit)
                expiry = int(anvil.w3.eth.get_block("latest")["timestamp"]) + 86_400
                channel, _ = escrow.open_channel(payer, device_address, provider.address,
                                                 deposit, expiry)
                device_broker: dict[str, Any] = {"host": broker.host, "port": broker.port}
                if secure:
                    with broker.admin() as admin:
                        login = add_device(admin, provider_hex, device_address[2:].lower())
                    device_broker.update(ca=str(broker.write_ca_der(root / "ca.der")),
                                         username=login.username, password=login.password)
                config_path = root / "gateway.toml"
                config_path.write_text(gateway_toml(
                    mqtt_port=broker.port, rpc_url=anvil.rpc_url, escrow=escrow.address,
                    chain_id=anvil.chain_id, ledger_path=root / "ledger.db",
                    extra={"log": {"level": "WARNING"},
                           "mqtt": broker.gateway_login(provider_hex)}))
                public = PrivateKey(bytes(provider.key)).public_key.format(False)[1:]
                device = root / "device"
                device.mkdir()
                (device / "device.json").write_text(json.dumps({
                    "key": DEVICE_KEY.hex(), "chain_id": anvil.chain_id,
                    "escrow": escrow.address, "channel": channel,
                    "provider": provider.address, "provider_key": "0x" + public.hex(),
                    "comb_tables": "tables", "broker": device_broker,
                    "policy": {"deposit": deposit, "budget": deposit,
                               "max_unit_price": PRICE, "expiry": expiry},
                    "state_dir": "state"}))
                with GatewayProcess(config_path, bytes(provider.key), root / "gateway"):
                    started = time.monotonic()
                    done = subprocess.run(
                        [micropython_binary(), str(DEVICE_MAIN), "--config",
                         str(device / "device.json"), "--buy", "weather",
                         "--count", str(purchases + 1)],
                        capture_output=True, text=True, timeout=timeout, check=False,
                        stdin=subprocess.DEVNULL)
                    seconds = time.monotonic() - started
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    bought = [line for line in lines if "i" in line]
    failed = [line for line in bought if not line.get("ok")]
    if done.returncode != 0 or failed or len(bought) != purchases + 1:
        raise RuntimeError(f"the unix-port device did not complete {purchases + 1} purchases "
                           f"(exit {done.returncode}): {failed[:3]}\n{done.stderr[-2000:]}")
    times = [float(line["ms"]) for line in bought[1:]]
    suffix = "" if secure else "_plain"
    return {f"latency_ms_p50_unix{suffix}": _median(times),
            f"latency_ms_max_unix{suffix}": max(times),
            f"latency_purchases_unix{suffix}": purchases,
            f"latency_run_seconds_unix{suffix}": round(seconds, 1)}
