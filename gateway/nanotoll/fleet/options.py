"""Fleet options and their validation: every check runs before any process starts."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..servers.process import ServiceError
from ..servers.tools import REPO_ROOT
from .netfaults import NetFaults, NetFaultsError, parse_net_faults

CHAOS_EVENTS = ("broker-restart", "gateway-kill", "top-up")
TLS_AGENTS_PER_PROCESS = 10
PROVIDER_MODES = ("address", "agent")  # how devices learn their provider: --provider
DEVICE_BOARDS = ("unix", "qemu_mps2")  # --board: unix-port processes or emulated boards
MAX_DEVICES = 5000
MAX_GATEWAYS = 8
MAX_DURATION = 3600.0
# One agent has one purchase in flight at a time; a purchase costs the device a few
# milliseconds of signing and checking, so faster than this no real drone buys.
MAX_RATE_PER_DEVICE = 2.0
# Purchases per second one core carries with everything on one machine, latency still
# in milliseconds: the firmware under MicroPython (sign, receipt recovery, two state-
# record writes: ~4.7 ms a purchase), the gateway (~2 ms), mosquitto and anvil. The fleet
# bench's saturation runs carried 255-315/s on the slower of the 2-core machines it ran on
# and 675-703/s on the faster, with queues growing: rates above 125 a core are refused up
# front, so that the slower machine's latency stays in milliseconds too.
PURCHASES_PER_CORE = 125.0
MIN_CHAOS_DURATION = 20.0
FLEET_MAIN = REPO_ROOT / "boards" / "unix" / "fleet.py"
PRICES = {"weather": 1500, "nav": 4000, "route": 25000}


class FleetError(RuntimeError):
    """A fleet run that cannot start or failed; the message says what to do."""


@dataclass
class FleetOptions:
    devices: int
    rate: float  # purchases per second per device
    duration: float  # seconds of purchasing at the rate
    gateways: int = 1
    ledger: str = "sqlite"  # sqlite | sqlite:///path | postgresql://... | postgres (start one)
    chaos: tuple[str, ...] = ()
    run_dir: Path | None = None
    per_process: int = 0  # agents per MicroPython process; 0 = chosen from the core count
    rpc_url: str | None = None  # attach to this anvil instead of starting one
    broker: str | None = None  # attach to this mosquitto (HOST:PORT) instead of starting one
    timeout_ms: int = 60_000  # one purchase, the agent's retries included
    settle_threshold: int = 100_000  # units unredeemed on a channel that trigger a redeem
    settle_interval: int = 20  # seconds an accepted voucher may wait unredeemed
    warmup: float = 0.0  # seconds before: one purchase per device (gateway caches fill)
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    allow_overload: bool = False  # the bench measures past the estimate on purpose
    net_faults: NetFaults | None = None  # devices reach the broker through a fault proxy
    # address: devices are told the provider's address; agent: it registers as an
    # ERC-8004 agent and the fleet provisions from what discovery finds (fleet/identity.py)
    provider: str = "address"
    board: str = "unix"  # unix: agents in unix-port processes; qemu_mps2: a QEMU board each

    @property
    def total_rate(self) -> float:
        return self.devices * self.rate

    @property
    def capacity(self) -> float:
        return PURCHASES_PER_CORE * self.cores

    def processes(self, tls: bool = False) -> int:
        """How many MicroPython processes share the devices (``tls``: they connect with
        TLS, which keeps fewer agents in one process)."""
        if self.board != "unix":
            return self.devices  # one emulated board per device
        if self.per_process > 0:
            return max(1, math.ceil(self.devices / self.per_process))
        # At least one per core, and at most 125 agents in one heap (GC pauses grow with
        # it). A TLS socket has no file descriptor for select.poll, which then checks each
        # one in turn every millisecond: purchases stalled for seconds with 50 TLS agents
        # in a process and not with 10.
        per_process = TLS_AGENTS_PER_PROCESS if tls else 125
        return max(1, min(self.devices, max(self.cores, math.ceil(self.devices / per_process))))

    def deposit(self) -> int:
        """Units per channel: every purchase the run may make at the highest price, twice."""
        purchases = math.ceil(self.rate * self.duration) + 2
        return 2 * purchases * max(PRICES.values())

    def broker_address(self) -> tuple[str, int]:
        assert self.broker is not None
        host, _, port = self.broker.rpartition(":")
        return host or "127.0.0.1", int(port)


def parse_chaos(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in CHAOS_EVENTS]
    if unknown:
        raise FleetError(f"--chaos: unknown event {unknown[0]!r}; choose from "
                         f"{', '.join(CHAOS_EVENTS)} (comma-separated)")
    return tuple(dict.fromkeys(names))


def parse_net_faults_option(text: str | None) -> NetFaults | None:
    if not text:
        return None
    try:
        return parse_net_faults(text)
    except NetFaultsError as exc:
        raise FleetError(f"--net-faults: {exc}") from None


def _check_postgres(url: str) -> str | None:
    """None when the database answers and holds no ledger rows yet; else the problem."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        return f"psycopg is not installed: {exc}"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SELECT to_regclass('public.channels') IS NOT NULL").fetchone()
            if row and row[0]:
                count = conn.execute("SELECT COUNT(*) FROM channels").fetchone()
                if count and int(count[0]) > 0:
                    return ("it already holds a ledger with channels; a fleet deploys a new "
                            "escrow whose channel ids start at 1 again: give an empty database")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot connect: {first}"
    return None


def _check_tools(options: FleetOptions) -> list[str]:
    from ..servers.tools import anvil_binary, find_tool, forge_binary, micropython_binary

    checks = [micropython_binary]
    if options.rpc_url is None:
        checks += [anvil_binary, forge_binary]
    if options.broker is None:
        checks.append(lambda: find_tool("mosquitto", "NANOTOLL_MOSQUITTO",
                                        Path("/usr/sbin/mosquitto")))
    problems = []
    for check in checks:
        try:
            check()
        except ServiceError as exc:
            problems.append(str(exc))
    if not FLEET_MAIN.exists():
        problems.append(f"{FLEET_MAIN} is missing: is this a complete checkout?")
    return problems


def validate(options: FleetOptions) -> None:
    """Raise FleetError listing every problem; start nothing."""
    problems: list[str] = []
    if options.devices < 1:
        problems.append(f"--devices must be at least 1, got {options.devices}")
    elif options.devices > MAX_DEVICES:
        problems.append(f"--devices {options.devices} is above {MAX_DEVICES:,}: one machine "
                        "holds that many MQTT sessions and state records at most")
    if not options.rate > 0 or math.isnan(options.rate):
        problems.append(f"--rate must be above 0 purchases per second per device, got "
                        f"{options.rate}")
    elif options.rate > MAX_RATE_PER_DEVICE:
        problems.append(f"--rate {options.rate}/s per device is above {MAX_RATE_PER_DEVICE}/s:"
                        " a device has one purchase in flight at a time")
    elif options.devices >= 1 and options.total_rate > options.capacity \
            and not options.allow_overload:
        problems.append(
            f"{options.devices} devices × {options.rate}/s = {options.total_rate:,.0f} "
            f"purchases/s is more than this machine can hold (about {options.capacity:,.0f}/s"
            f" on {options.cores} cores, firmware, gateway and broker together): lower "
            f"--rate or --devices")
    if not 0 < options.duration <= MAX_DURATION:
        problems.append(f"--duration must be in (0, {MAX_DURATION:.0f}] seconds, got "
                        f"{options.duration}")
    if options.rate > 0 and options.duration > 0 and options.rate * options.duration < 1:
        problems.append(f"--rate {options.rate} × --duration {options.duration} is less than "
                        "one purchase per device")
    if options.devices >= 1:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        needed = options.devices + 256
        if hard != resource.RLIM_INFINITY and hard < needed:
            problems.append(f"{options.devices} devices need {needed} open files in the "
                            f"broker, the limit here is {hard}: raise it (ulimit -n)")
    if not 1 <= options.gateways <= MAX_GATEWAYS:
        problems.append(f"--gateways must be in 1..{MAX_GATEWAYS}, got {options.gateways}")
    if not 0 <= options.warmup <= 600:
        problems.append(f"--warmup must be in 0..600 seconds, got {options.warmup}")
    if options.provider not in PROVIDER_MODES:
        problems.append(f"--provider must be one of {', '.join(PROVIDER_MODES)}, got "
                        f"{options.provider!r}")
    if options.board not in DEVICE_BOARDS:
        problems.append(f"--board must be one of {', '.join(DEVICE_BOARDS)}, got "
                        f"{options.board!r}")
    elif options.board != "unix" and options.devices >= 1 and options.rate > 0:
        from .boards import capacity_problems

        problems += capacity_problems(options.devices, options.rate, options.cores)
    if options.per_process < 0:
        problems.append("--per-process must be 0 (automatic) or more")
    if options.timeout_ms < 1000:
        problems.append("--timeout-ms must be at least 1000")
    if options.chaos and options.duration < MIN_CHAOS_DURATION:
        problems.append(f"--chaos needs --duration of at least {MIN_CHAOS_DURATION:.0f} s, so "
                        "that every event lands mid-run and the fleet recovers before the end")
    if "broker-restart" in options.chaos and options.broker is not None:
        problems.append("--chaos broker-restart restarts the broker this run starts: leave "
                        "--broker out")
    if options.broker is not None:
        host, _, port = options.broker.rpartition(":")
        if not port.isdigit():
            problems.append(f"--broker must be HOST:PORT, got {options.broker!r}")
        else:
            from ..servers.process import port_in_use

            if not port_in_use(int(port), host or "127.0.0.1"):
                problems.append(f"--broker {options.broker}: nothing listens there")
    if options.rpc_url is not None:
        problems += _check_rpc(options.rpc_url)
    problems += _check_ledger(options)
    if options.net_faults is not None:
        try:
            options.net_faults.validate()
        except NetFaultsError as exc:
            problems.append(f"--net-faults: {exc}")
        if options.broker is not None \
                and options.broker.rpartition(":")[0] not in ("", "127.0.0.1", "localhost"):
            problems.append("--net-faults puts its proxy on loopback in front of a loopback "
                            f"broker; --broker {options.broker} is not one")
    if options.run_dir is not None and options.run_dir.exists() \
            and any(options.run_dir.iterdir()):
        problems.append(f"--run-dir {options.run_dir} is not empty: give a new directory")
    problems += _check_tools(options)
    if problems:
        raise FleetError("invalid fleet options:\n  " + "\n  ".join(problems))


def _check_rpc(url: str) -> list[str]:
    from web3 import Web3

    try:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 3}))
        w3.eth.chain_id  # noqa: B018 - a call that must answer
        response = w3.provider.make_request("anvil_nodeInfo", [])  # type: ignore[arg-type]
    except Exception as exc:  # connection refused, timeout, not JSON-RPC
        return [f"--rpc-url {url}: no JSON-RPC node answers ({type(exc).__name__})"]
    if "error" in response:
        return [f"--rpc-url {url}: not an anvil node (the fleet funds its accounts with "
                "anvil_setBalance)"]
    return []


def _check_ledger(options: FleetOptions) -> list[str]:
    url = options.ledger
    if url in ("sqlite", "postgres", "postgresql"):
        if url != "sqlite":
            from ..servers.postgres import postgres_bindir

            try:
                postgres_bindir()
            except ServiceError as exc:
                return [f"--ledger {url}: {exc}"]
        return []
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if path.exists():
            return [f"--ledger {url}: the file exists; a fleet needs a new ledger"]
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            return [f"--ledger {url}: cannot create a file in {parent}"]
        return []
    if url.startswith(("postgresql://", "postgres://")):
        problem = _check_postgres(url)
        return [f"--ledger {url}: {problem}"] if problem else []
    return [f"--ledger must be sqlite, sqlite:///PATH, postgres (start a local server) or "
            f"postgresql://USER@HOST:PORT/DB, got {url!r}"]


def default_run_dir() -> Path:
    return Path("runs") / time.strftime("fleet-%Y%m%d-%H%M%S")
