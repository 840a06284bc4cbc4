"""``nanotoll demo``: one real purchase path, end to end, through every real part.

anvil → test stablecoin and escrow → a device key made by the firmware itself → a funded
channel → mosquitto with TLS, a client per party and topic rights (``nanotoll.broker``)
→ the gateway (its own process, TLS and its credentials) → the firmware under
MicroPython's unix port buying weather N times with its own credentials, over TLS checked
against the broker's CA → the gateway's settlement on-chain → a table. On a MicroPython
built without ``ssl`` the device reaches the broker through a TLS modem on loopback (the
emulated board's bridge) instead, as a board with a cellular modem that offloads TLS does.

Exit code 0 only when every purchase succeeded and what the chain settled equals what the
device paid, the gateway accepted and the provider received. Every process started here
is stopped on the way out, also on error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from coincurve import PrivateKey
from eth_account import Account

from .broker.clients import Credentials, add_device
from .broker.site import gateway_username
from .device.bridge import UartBridge
from .nodelay import no_delay
from .protocol.topics import catalog_topic
from .servers.mosquitto import Mosquitto
from .servers.process import (
    LOOPBACK,
    ManagedProcess,
    ServiceError,
    free_port,
    port_in_use,
    sigterm_as_interrupt,
    stop_process,
)
from .servers.tools import REPO_ROOT, anvil_binary, find_tool, forge_binary, micropython_binary

DEPOSIT = 5_000_000  # units: 5.00 of a 6-decimal stablecoin
WEATHER_PRICE = 1_500  # units: 0.0015 a nowcast
CHANNEL_LIFETIME = 7 * 86400
DEVICE_MAIN = REPO_ROOT / "boards" / "unix" / "main.py"


class DemoError(RuntimeError):
    """A demo step that failed; the message says which step and what to do."""


@dataclass
class DemoReport:
    purchases: int = 0
    succeeded: int = 0
    paid_by_device: int = 0
    accepted_by_gateway: int = 0
    settled_on_chain: int = 0
    provider_balance_change: int = 0
    redeem_transactions: list[str] = field(default_factory=list)
    redeem_gas: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        amounts = {self.paid_by_device, self.accepted_by_gateway, self.settled_on_chain,
                   self.provider_balance_change}
        return len(amounts) == 1 and self.succeeded == self.purchases > 0

    def table(self) -> str:
        def usd(units: int) -> str:
            return f"{units:>12,} units  ({units / 1e6:.6f} USD)"

        rows = [
            ("purchases (ok / asked)", f"{self.succeeded} / {self.purchases}"),
            ("amount paid by the device", usd(self.paid_by_device)),
            ("amount accepted by the gateway", usd(self.accepted_by_gateway)),
            ("amount settled on-chain", usd(self.settled_on_chain)),
            ("provider balance change", usd(self.provider_balance_change)),
            ("redeem transaction", ", ".join(self.redeem_transactions) or "none"),
            ("redeem gas", f"{self.redeem_gas:,}"),
            ("settled = paid", "yes" if self.balanced else "NO"),
        ]
        width = max(len(name) for name, _ in rows)
        line = "+" + "-" * (width + 2) + "+" + "-" * 80 + "+"
        body = [f"| {name:<{width}} | {value:<78} |" for name, value in rows]
        return "\n".join([line, *body, line])


def _say(out: TextIO, message: str) -> None:
    print(f"demo: {message}", file=out, flush=True)


class GatewayProcess(ManagedProcess):
    """``nanotoll gateway run --config FILE`` as a child process."""

    name = "gateway"

    def __init__(self, config_path: Path, provider_key: bytes, workdir: Path) -> None:
        super().__init__(workdir)
        self.config_path = config_path
        self._env = {**os.environ, "NANOTOLL_PROVIDER_KEY": provider_key.hex()}

    def start(self) -> None:
        self.spawn([sys.executable, "-m", "nanotoll.cli", "gateway", "run",
                    "--config", str(self.config_path)], env=self._env)

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise DemoError(f"the gateway exited with code {self.process.returncode}:\n{tail}")


def _wait_for_catalog(broker: Mosquitto, provider: str, gateway: GatewayProcess,
                      credentials: Credentials, timeout: float = 30.0) -> None:
    """The gateway is ready once its signed catalog is retained on the broker (looked
    for with the device's credentials: a client may read the catalog only with a role)."""
    import paho.mqtt.client as mqtt

    seen = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda *_: seen.set()
    client.on_socket_open = no_delay
    client.username_pw_set(credentials.username, credentials.password)
    client.tls_set(ca_certs=str(broker.ca_file))
    client.connect(broker.host, broker.port)
    client.subscribe(catalog_topic(provider[2:].lower()), qos=1)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not seen.wait(0.1):
            gateway.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"no catalog from the gateway within {timeout:.0f} s; "
                                f"see {gateway.log_path}")
    finally:
        client.loop_stop()
        client.disconnect()


def _find_provider(w3: Any, provider: Any, config_path: Path, escrow: str, broker: Mosquitto,
                   credentials: Credentials, out: TextIO) -> tuple[str, str]:
    """Register the provider in the identity registry, then find it as a device's owner
    would: from its agent reference alone, checked against its file and its catalog.
    Returns (agent reference, the provider address found)."""
    from dataclasses import replace
    from urllib.parse import urlsplit

    from .gateway.config import load_config
    from .identity.discovery import discover
    from .identity.errors import IdentityError
    from .identity.provider_file import agent_uri
    from .identity.reference import AgentReference
    from .identity.register import register_agent
    from .identity.registry import IdentityRegistryClient
    from .identity.retained import BrokerEndpoint, read_retained

    config = load_config(config_path)
    registry = config.identity.identity_registry
    assert registry is not None
    try:
        outcome = register_agent(IdentityRegistryClient(w3, registry), provider,
                                 agent_uri(config), provider.key, provider.address,
                                 int(w3.eth.get_block("latest")["timestamp"]))
        reference = AgentReference(config.chain.chain_id, registry, outcome.agent_id)
        # The URI's path only: the demo prints the host:port of the two servers it
        # starts, and nothing else of that form (tests read them from its output).
        _say(out, f"provider registered as ERC-8004 agent {reference} (file at the "
                  f"gateway's {urlsplit(outcome.agent_uri).path})")

        def read_catalog(endpoint: BrokerEndpoint, topic: str) -> bytes | None:
            # The catalog is readable only with a role: the device's credentials.
            return read_retained(replace(endpoint, ca_file=str(broker.ca_file),
                                         username=credentials.username,
                                         password=credentials.password), topic)

        found = discover(w3, reference, escrow, read_catalog)
    except IdentityError as exc:
        raise DemoError(f"discovering the provider: {exc}") from exc
    _say(out, f"owner discovered provider {found.wallet} from {reference}: file, wallet and "
              f"catalog seq {found.catalog.seq} agree")
    return str(reference), found.wallet


def _rate_provider(w3: Any, reference: str, payer: Any, redeem_tx: str, escrow: str,
                   provider: str, reputation_registry: str, endpoint: str,
                   out: TextIO) -> None:
    """The payer rates the provider with the redeem that paid it, then reads the summary
    (from what the demo knows: its gateway, and so its registration file, has stopped)."""
    from .identity.errors import IdentityError
    from .identity.feedback import check_payment, give_feedback
    from .identity.reference import parse_agent_reference
    from .identity.registry import ReputationRegistryClient

    agent = parse_agent_reference(reference)
    reputation = ReputationRegistryClient(w3, reputation_registry)
    try:
        proof = check_payment(w3, escrow, redeem_tx, payer.address, provider)
        give_feedback(reputation, payer, agent.agent_id, 100, proof, endpoint)
    except IdentityError as exc:
        raise DemoError(f"rating the provider: {exc}") from exc
    _say(out, f"owner rated agent {reference} 100 with redeem {redeem_tx}: "
              f"{reputation.summary(agent.agent_id).text()}")


def _write_gateway_config(path: Path, broker: Mosquitto, rpc_url: str, escrow: str,
                          chain_id: int, provider: str, identity: str = "") -> None:
    assert broker.site is not None
    path.write_text(
        "# written by nanotoll demo\n"
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'ca_file = "{broker.ca_file}"\nusername = "{gateway_username(provider)}"\n'
        f'password_file = "{broker.site.gateway_password_file(provider)}"\n\n'
        '[provider]\nkey_env = "NANOTOLL_PROVIDER_KEY"\n\n'
        f'[chain]\nrpc_url = "{rpc_url}"\nescrow = "{escrow}"\nchain_id = {chain_id}\n'
        "confirmations = 1\npoll_interval = 0.1\n\n"
        '[ledger]\nurl = "sqlite:///ledger.db"\n\n'
        '[log]\nlevel = "INFO"\n\n'
        f"{identity}"
        "[catalog]\nseq = 1\n"
        f'[[catalog.products]]\nname = "weather"\nprice = {WEATHER_PRICE}\n'
        'description = "nowcast for a position, altitude and time"\n'
        '[[catalog.products]]\nname = "nav"\nprice = 4000\n'
        'description = "airspace, geofence and waypoint updates"\n'
        '[[catalog.products]]\nname = "route"\nprice = 25000\n'
        'description = "time-boxed corridor access grant"\n'
    )


def _device_link(stack: contextlib.ExitStack, device: Device, broker: Mosquitto,
                 out: TextIO) -> dict[str, Any]:
    """Where the device's config points its MQTT link: the broker itself over TLS, with
    its CA in DER beside the config; without ssl, a TLS modem on loopback."""
    assert broker.ca_file is not None
    if device.has_ssl():
        ca = broker.write_ca_der(device.workdir / "broker_ca.der")
        _say(out, f"the device connects with TLS, checking the broker against {ca.name}")
        return {"host": broker.host, "port": broker.port, "ca": ca.name}
    modem = stack.enter_context(UartBridge(broker.host, broker.port,
                                           ca_file=str(broker.ca_file)))
    _say(out, "this MicroPython has no ssl: the device reaches the broker through a TLS "
              f"modem on {LOOPBACK}:{modem.port}")
    return {"host": LOOPBACK, "port": modem.port}


class Device:
    """The firmware under MicroPython's unix port, driven through boards/unix/main.py."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config_path = workdir / "device.json"
        self.binary = micropython_binary()
        self.config: dict[str, Any] = {"key_file": "device.key", "state_dir": "state"}

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        self.config_path.write_text(json.dumps(self.config, indent=1))
        return subprocess.run(
            [self.binary, str(DEVICE_MAIN), "--config", str(self.config_path), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )

    def has_ssl(self) -> bool:
        """Whether this MicroPython can make TLS connections (make setup builds it so)."""
        probe = subprocess.run([self.binary, "-c", "import ssl; print(1)"], capture_output=True,
                               text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
        return probe.stdout.strip() == "1"

    def init_key(self) -> str:
        """The device makes its own key and tells only its address."""
        result = self._run("--init-key", timeout=60)
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or not lines or "address" not in lines[-1]:
            raise DemoError(f"the device could not make its key: {result.stdout}{result.stderr}")
        return str(lines[-1]["address"])

    def buy(self, product: str, count: int, out: TextIO) -> list[dict[str, Any]]:
        self.config_path.write_text(json.dumps(self.config, indent=1))
        argv = [self.binary, str(DEVICE_MAIN), "--config", str(self.config_path),
                "--buy", product, "--count", str(count)]
        lines: list[dict[str, Any]] = []
        log_path = self.workdir / "device.log"
        with log_path.open("w") as log, subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=log, text=True,
                stdin=subprocess.DEVNULL) as process:
            try:
                assert process.stdout is not None
                for raw in process.stdout:
                    if not raw.startswith("{"):
                        continue
                    line = json.loads(raw)
                    lines.append(line)
                    if "i" in line:
                        status = "ok" if line.get("ok") else f"error {line.get('error')}"
                        _say(out, f"purchase {line['i']:>3}/{count}: {product} {status}, "
                                  f"cumulative {line.get('cumulative')}, {line.get('ms')} ms")
                process.wait(timeout=60)
            finally:
                stop_process(process)  # type: ignore[arg-type]
        if process.returncode not in (0, 1) or not any(line.get("summary") for line in lines):
            tail = log_path.read_text(errors="replace")[-3000:]
            raise DemoError(f"the device exited with code {process.returncode}:\n{tail}")
        return lines


def preflight(broker_port: int | None, rpc_port: int | None) -> None:
    """Refuse to start anything when a tool is missing or a chosen port is taken."""
    missing = []
    for check in (micropython_binary, anvil_binary, forge_binary,
                  lambda: find_tool("mosquitto", "NANOTOLL_MOSQUITTO",
                                    Path("/usr/sbin/mosquitto"))):
        try:
            check()
        except ServiceError as exc:
            missing.append(str(exc))
    if not DEVICE_MAIN.exists():
        missing.append(f"{DEVICE_MAIN} is missing: is this a complete checkout?")
    for what, port in (("--broker-port", broker_port), ("--rpc-port", rpc_port)):
        if port is not None and port_in_use(port):
            missing.append(f"{what} {port} is taken: stop what listens there, pick another "
                           "port, or leave the option out to use a free one")
    if missing:
        raise DemoError("cannot start:\n  " + "\n  ".join(missing))


def run_demo(purchases: int = 20, workdir: str | Path | None = None,
             out: TextIO = sys.stdout, broker_port: int | None = None,
             rpc_port: int | None = None) -> int:
    """Run the demo; returns the process exit code (0 only when settled = paid)."""
    try:
        if purchases < 1:
            raise DemoError("--purchases must be at least 1")
        preflight(broker_port, rpc_port)
    except DemoError as exc:
        _say(out, f"failed: {exc}")
        return 2
    from .chain.client import EscrowClient
    from .gateway.commands import settle_now
    from .gateway.config import load_config
    from .identity.registry import deploy_registries
    from .servers.anvil import Anvil

    keep = workdir is not None
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="nanotoll-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    report = DemoReport(purchases=purchases)
    try:
        with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
            started = time.monotonic()
            device = Device(root)  # fails early, with a hint, if MicroPython is missing
            chain = stack.enter_context(Anvil(port=rpc_port, workdir=root / "anvil"))
            _say(out, f"anvil on {chain.rpc_url} (chain id {chain.chain_id})")
            w3 = chain.w3
            deployer, payer = chain.new_account(), chain.new_account()
            provider = Account.create()
            chain.set_balance(provider.address, 10 * 10**18)
            escrow = EscrowClient.deploy(w3, deployer)
            _say(out, f"escrow {escrow.address}, stablecoin {escrow.token_address}")

            registries = deploy_registries(w3, deployer)
            _say(out, f"ERC-8004 registries: identity {registries.identity}, reputation "
                      f"{registries.reputation}")

            address = device.init_key()
            _say(out, f"device made its key; address {address}")

            provider_hex = provider.address[2:].lower()
            broker = stack.enter_context(Mosquitto(port=broker_port, workdir=root / "broker",
                                                   secure=True, providers=[provider_hex]))
            _say(out, f"mosquitto on {LOOPBACK}:{broker.port} (TLS, CA {broker.ca_file})")
            with broker.admin() as admin:
                credentials = add_device(admin, provider_hex, address[2:].lower())
            _say(out, f"broker client {credentials.username} made for the device")
            device_broker = _device_link(stack, device, broker, out)
            gateway_config = root / "gateway.toml"
            _write_gateway_config(
                gateway_config, broker, chain.rpc_url, escrow.address, chain.chain_id,
                provider_hex,
                f"[metrics]\nport = {free_port()}\n\n[identity]\n"
                f'identity_registry = "{registries.identity}"\n'
                f'reputation_registry = "{registries.reputation}"\n'
                'name = "nanotoll demo weather"\n\n')
            gateway = stack.enter_context(
                GatewayProcess(gateway_config, provider.key, root / "gateway"))
            _wait_for_catalog(broker, provider.address, gateway, credentials)
            _say(out, f"gateway serving provider {provider.address}")
            reference, found = _find_provider(w3, provider, gateway_config, escrow.address,
                                              broker, credentials, out)
            escrow.mint(deployer, payer.address, DEPOSIT)
            expiry = int(w3.eth.get_block("latest")["timestamp"]) + CHANNEL_LIFETIME
            channel_id, _ = escrow.open_channel(payer, address, found, DEPOSIT, expiry)
            _say(out, f"channel {channel_id} funded with {DEPOSIT:,} units by {payer.address}")

            device.config.update({
                "chain_id": chain.chain_id, "escrow": escrow.address,
                "provider": found, "channel": channel_id,
                # receipts and catalogs verified against the provider's key (with comb
                # tables the device builds in its folder at first boot), not recovered
                "provider_key": "0x" + PrivateKey(provider.key).public_key.format(False)[1:].hex(),
                "comb_tables": "tables",
                # the credentials go in the device's CONNECT
                "broker": {**device_broker, "username": credentials.username,
                           "password": credentials.password},
                "policy": {"deposit": DEPOSIT, "budget": DEPOSIT,
                           "max_unit_price": WEATHER_PRICE, "expiry": expiry},
            })
            balance_before = escrow.balance_of(provider.address)
            lines = device.buy("weather", purchases, out)
            summary = next((line for line in lines if line.get("summary")), {})
            report.succeeded = int(summary.get("ok", 0))
            report.paid_by_device = int(summary.get("paid", 0))
            report.failures = [f"#{ln['i']}: {ln.get('error')} {ln.get('message', '')}"
                               for ln in lines if "i" in ln and not ln.get("ok")]

            gateway.stop()  # one owner of the provider key: the settlement below
            config = load_config(gateway_config)
            env = {"NANOTOLL_PROVIDER_KEY": provider.key.hex()}
            from .gateway.commands import status

            report.accepted_by_gateway = int(status(config, env)["accepted"])
            settlement = settle_now(config, env, timeout=120)
            report.redeem_transactions = list(settlement.transactions)
            report.redeem_gas = settlement.gas_used
            report.settled_on_chain = escrow.channel(channel_id).paid
            report.provider_balance_change = escrow.balance_of(provider.address) - balance_before
            if report.redeem_transactions:
                _rate_provider(w3, reference, payer, report.redeem_transactions[0],
                               escrow.address, found, registries.reputation,
                               f"mqtts://{broker.host}:{broker.port}", out)
            _say(out, f"settled in {time.monotonic() - started:.1f} s; logs in {root}")
    except (DemoError, ServiceError) as exc:
        _say(out, f"failed: {exc}")
        return 2
    except KeyboardInterrupt:
        _say(out, "interrupted; every process it started is stopped")
        return 130
    finally:
        if not keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    print(report.table(), file=out)
    for failure in report.failures:
        _say(out, f"purchase failed {failure}")
    return 0 if report.balanced else 1
