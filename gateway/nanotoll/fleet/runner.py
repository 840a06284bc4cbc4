"""``nanotoll fleet run``: bring everything up, run the devices, settle, check.

Order: validate (nothing started yet) → anvil and the escrow (and, with ``--provider
agent``, the ERC-8004 registries) → mosquitto → the ledger (a PostgreSQL server when
asked) → every device makes its key → G gateway processes on the shared subscription,
each with its own fixed client id → with ``--provider agent``, the provider registers
and is discovered (a refusal stops the run here) → ``openMany`` in chunks to the
provider → the MicroPython processes connect their agents → go → purchases at the rate,
with a live progress line and the chaos events → the devices stop and report their
records → the gateways stop → ``settle now`` → devices vs ledger vs chain → the run directory.

Every process started here belongs to an ExitStack: an error, Ctrl-C or SIGTERM stops
them all.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from coincurve import PrivateKey

from ..servers.process import ServiceError, sigterm_as_interrupt
from .boards import BoardGroup
from .check import Verdict, check_fleet
from .devices import DeviceGroup, DeviceSlot
from .faultproxy import ACTIONS, FaultProxy, ProxyError
from .netfaults import DIRECTIONS
from .options import PRICES, FleetError, FleetOptions, default_run_dir, validate
from .proxy_tls import ProxyTLSError, proxy_tls
from .topup import FleetFunding, check_top_up, top_up_fleet

OPEN_MANY_CHUNK = 200  # channels per openMany: ~62k gas each, well under the 16.7M cap
CHANNEL_LIFETIME = 7 * 86400
CLIENT_ID = "nanotoll-fleet-gw-{}"
KEY_ENV = "NANOTOLL_PROVIDER_KEY"


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


_CLK_TCK = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds (user + system) used by named groups of processes and their children.

    Each process's last reading is kept, so a process that exited (a device process
    at the end, a gateway killed by chaos) still counts with what it used.
    """

    def __init__(self) -> None:
        self._last: dict[str, dict[int, float]] = {}

    def totals(self, roots: dict[str, list[int]]) -> dict[str, float]:
        parent: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2:].split()
            parent[int(entry)] = int(fields[1])
            cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / _CLK_TCK
        children: dict[int, list[int]] = {}
        for pid, ppid in parent.items():
            children.setdefault(ppid, []).append(pid)
        for name, pids in roots.items():
            seen = self._last.setdefault(name, {})
            stack = list(pids)
            while stack:
                pid = stack.pop()
                if pid not in cpu or (pid in seen and cpu[pid] < seen[pid]):
                    continue  # gone, or a new process that reuses an old id
                seen[pid] = cpu[pid]
                stack.extend(children.get(pid, ()))
        return {name: sum(self._last.get(name, {}).values()) for name in roots}


def _raise_open_files(needed: int) -> None:
    """Children inherit the limit: the broker holds one socket per device."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))


@dataclass
class Live:
    """What the progress line and the summary count while purchases come in."""

    started: float = 0.0  # monotonic time of go
    ok: int = 0  # scheduled purchases (the warm-up ones apart)
    failed: int = 0
    warm_ok: int = 0
    warm_failed: int = 0
    recovered: int = 0
    late_ms_max: int = 0
    latencies: list[float] = field(default_factory=list)  # ms, every scheduled purchase
    warm_latencies: list[float] = field(default_factory=list)  # ms, warm-up purchases
    window: list[tuple[float, float]] = field(default_factory=list)  # (time, ms) recent
    errors: dict[str, int] = field(default_factory=dict)
    by_product: dict[str, list[int]] = field(default_factory=dict)  # name -> [ok, revenue]

    def add(self, line: dict[str, Any], now: float) -> None:
        ms = line["us"] / 1000.0
        self.window.append((now, ms))
        if line.get("w"):
            self.warm_latencies.append(ms)
            if line.get("ok"):
                self.warm_ok += 1
            else:
                self.warm_failed += 1
                self.errors[str(line.get("e"))] = self.errors.get(str(line.get("e")), 0) + 1
            return
        self.latencies.append(ms)
        self.late_ms_max = max(self.late_ms_max, int(line.get("late", 0)))
        if line.get("ok"):
            self.ok += 1
            entry = self.by_product.setdefault(line["p"], [0, 0])
            entry[0] += 1
            entry[1] += int(line.get("pr") or 0)
        else:
            self.failed += 1
            self.errors[str(line.get("e"))] = self.errors.get(str(line.get("e")), 0) + 1

    def recent(self, now: float, seconds: float = 5.0) -> list[float]:
        cut = now - seconds
        while self.window and self.window[0][0] < cut:
            self.window.pop(0)
        return [ms for _, ms in self.window]


def _micropython_has_ssl() -> bool:
    """Whether the devices' MicroPython can make TLS connections (make setup builds it
    with mbedTLS; a build without the mbedTLS source has none)."""
    from ..servers.tools import micropython_binary

    probe = subprocess.run([micropython_binary(), "-c", "import ssl; print(1)"],
                           capture_output=True, text=True, timeout=30, check=False)
    return probe.stdout.strip() == "1"


def _gateway_login(broker: Any, provider_hex: str) -> dict[str, str]:
    """The [mqtt] keys of a gateway on our secure broker (none on an operator's own)."""
    return {} if broker is None else broker.gateway_login(provider_hex)


class Fleet:
    """One fleet run; :meth:`run` returns the process exit code."""

    def __init__(self, options: FleetOptions, out: TextIO = sys.stderr) -> None:
        self.options = options
        self.out = out
        self.run_dir = (options.run_dir or default_run_dir()).resolve()
        self.work = self.run_dir / "work"
        self.events: list[dict[str, Any]] = []
        self.live = Live()
        self.summary: dict[str, Any] = {}
        self.samples: list[dict[str, Any]] = []
        self._tty = hasattr(out, "isatty") and out.isatty()
        self._last_progress = 0.0
        self._phase_started = time.monotonic()
        self.funding: FleetFunding | None = None  # the channels, for --chaos top-up

    # ------------------------------------------------------------------ output --

    def say(self, message: str) -> None:
        if self._tty:
            self.out.write("\r\033[K")
        print(f"fleet: {message}", file=self.out, flush=True)

    def event(self, name: str, **fields: Any) -> None:
        t = time.monotonic() - self.live.started if self.live.started else None
        entry = {"event": name, "t": None if t is None else round(t, 3),
                 "wall": round(time.time(), 3), **fields}
        self.events.append(entry)
        with (self.run_dir / "events.jsonl").open("a") as handle:
            handle.write(json.dumps(entry) + "\n")

    def progress(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self._tty:
            self.out.write("\r\033[K" + text)
            self.out.flush()
        elif force or now - self._last_progress >= 5.0:
            print(text, file=self.out, flush=True)
            self._last_progress = now

    # --------------------------------------------------------------------- run --

    def run(self) -> int:
        try:
            validate(self.options)
        except FleetError as exc:
            self.say(str(exc))
            return 2
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        _raise_open_files(self.options.devices + 256)
        try:
            with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
                verdict = self._run(stack)
        except (FleetError, ServiceError) as exc:
            self.say(f"failed: {exc}")
            self.summary.setdefault("failure", str(exc))
            self._write_summary()
            return 2
        except KeyboardInterrupt:
            self.say("interrupted; every process it started is stopped")
            self.summary.setdefault("failure", "interrupted")
            self._write_summary()
            return 130
        self._write_summary()
        self.say(f"run directory {self.run_dir}")
        return 0 if verdict.passed else 1

    def _write_summary(self) -> None:
        with contextlib.suppress(OSError):
            (self.run_dir / "summary.json").write_text(
                json.dumps(self.summary, indent=1, sort_keys=True, default=str) + "\n")

    def _run(self, stack: contextlib.ExitStack) -> Verdict:
        from eth_account import Account

        from ..chain.client import ChannelSpec, EscrowClient
        from ..servers.anvil import Anvil
        from ..servers.gateway import GatewayProcess, gateway_toml
        from ..servers.mosquitto import Mosquitto
        from ..servers.process import free_port
        from .identity import identity_tables, register_and_discover

        o = self.options
        t_start = time.monotonic()
        # Devices connect with TLS to the broker this run starts (through the fault proxy,
        # which terminates TLS on both sides, with --net-faults).
        tls = o.broker is None and o.board == "unix"
        if tls and not _micropython_has_ssl():
            raise FleetError("the devices' MicroPython has no ssl module and the fleet's "
                             "devices log in with TLS: build it with mbedTLS (make setup)")
        processes = o.processes(tls)
        self.summary.update({
            "options": {"devices": o.devices, "rate": o.rate, "duration": o.duration,
                        "gateways": o.gateways, "ledger": o.ledger, "chaos": list(o.chaos),
                        "processes": processes, "timeout_ms": o.timeout_ms,
                        "board": o.board,
                        "warmup": o.warmup, "provider": o.provider,
                        "settle_threshold": o.settle_threshold,
                        "settle_interval": o.settle_interval, "cores": o.cores,
                        "net_faults": o.net_faults.describe() if o.net_faults else None},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        kind = (f"{processes} MicroPython processes" if o.board == "unix" else
                f"{o.devices} emulated {o.board} boards (QEMU)")
        self.say(f"{o.devices} devices at {o.rate}/s each ({o.total_rate:,.1f} purchases/s) "
                 f"for {o.duration:g} s; {o.gateways} gateway(s); {kind}; run directory "
                 f"{self.run_dir}")
        self.summary["device_kind"] = "unix-port MicroPython processes" if o.board == "unix" \
            else f"emulated {o.board} boards (QEMU, flashed ROMFS image, UART bridge)"

        # chain ---------------------------------------------------------------------
        if o.rpc_url is None:
            anvil = stack.enter_context(Anvil(workdir=self.work / "anvil"))
            rpc_url, w3, anvil_pid = anvil.rpc_url, anvil.w3, anvil.process.pid \
                if anvil.process else None

            def fund(address: str) -> None:
                anvil.set_balance(address, 1000 * 10**18)
        else:
            from web3 import Web3

            rpc_url, anvil_pid = o.rpc_url, None
            w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))

            def fund(address: str) -> None:
                w3.provider.make_request("anvil_setBalance",  # type: ignore[arg-type]
                                         [address, hex(1000 * 10**18)])
        chain_id = int(w3.eth.chain_id)
        deployer, payer, provider = Account.create(), Account.create(), Account.create()
        for account in (deployer, payer, provider):
            fund(account.address)
        escrow = EscrowClient.deploy(w3, deployer)
        self.say(f"chain {rpc_url} (id {chain_id}); escrow {escrow.address}")
        registries = None
        if o.provider == "agent":
            from ..identity.registry import deploy_registries

            registries = deploy_registries(w3, deployer)
            self.say(f"ERC-8004 registries: identity {registries.identity}, reputation "
                     f"{registries.reputation}")

        # broker ----------------------------------------------------------------------
        # Ours is the secure broker: TLS only, a client per party, topic rights; gateways
        # and devices connect with TLS and their own credentials, checking its CA. The
        # fault proxy, with --net-faults, terminates TLS on both sides (its own
        # certificate from the same CA) and forwards each device's login unchanged.
        broker: Mosquitto | None = None
        provider_hex = provider.address[2:].lower()
        device_broker: dict[str, Any]
        if o.broker is None:
            broker = stack.enter_context(Mosquitto(
                workdir=self.work / "mosquitto", secure=True, providers=[provider_hex]))
            broker_host, broker_port = broker.host, broker.port
            device_port = broker_port
            device_broker = {"host": broker_host, "port": device_port,
                             "ca": str(self._device_ca(broker))}
            self.say(f"broker {broker_host}:{broker_port} (TLS, CA {broker.ca_file}); "
                     "devices log in with TLS")
        else:
            broker_host, broker_port = o.broker_address()
            device_port = broker_port
            device_broker = {"host": broker_host, "port": device_port}
            self.say(f"broker {broker_host}:{broker_port}")
        proxy = self._fault_proxy(stack, broker, broker_host, device_port)
        if proxy is not None:
            device_broker.update(host=proxy.host, port=proxy.port)
        self.summary["device_transport"] = "tls" if "ca" in device_broker else "plain"

        # ledger ----------------------------------------------------------------------
        ledger_url, postgres_pid = self._ledger(stack)
        self.summary["ledger_url"] = ledger_url

        # devices make their keys ---------------------------------------------------
        slots = [DeviceSlot(i, self.work / "devices" / f"{i:05d}") for i in range(o.devices)]
        group: DeviceGroup | BoardGroup
        if o.board == "unix":
            group = stack.enter_context(DeviceGroup(slots, processes, self.work / "mpy"))
        else:  # each board's UART bridge dials the broker, TLS with its CA when it has one
            group = stack.enter_context(BoardGroup(
                slots, self.work / "boards", (device_broker["host"], device_broker["port"]),
                broker.ca_file if broker is not None and "ca" in device_broker else None))
        t0 = time.monotonic()
        group.init_keys({}, timeout=60 + o.devices * 0.2)
        self.say(f"{o.devices} devices made their keys in {time.monotonic() - t0:.1f} s")
        if broker is not None:
            self._enrol(broker, provider_hex, slots)

        # gateways ----------------------------------------------------------------------
        gateways: list[GatewayProcess] = []
        configs: list[Path] = []
        for i in range(o.gateways):
            config = self.work / f"gateway-{i + 1}.toml"
            config.write_text(gateway_toml(
                mqtt_host=broker_host, mqtt_port=broker_port, rpc_url=rpc_url,
                escrow=escrow.address, chain_id=chain_id, ledger_url=ledger_url,
                client_id=CLIENT_ID.format(i + 1),
                extra={"mqtt": _gateway_login(broker, provider_hex),
                       "chain": {"poll_interval": 0.2},
                       "settlement": {"threshold": o.settle_threshold,
                                      "interval": o.settle_interval, "check_every": 2.0},
                       "log": {"level": "WARNING"},
                       **(identity_tables(registries, free_port())
                          if registries is not None and i == 0 else {})}))
            configs.append(config)
            gateway = GatewayProcess(config, bytes(provider.key),
                                     workdir=self.work / f"gateway-{i + 1}")
            stack.enter_context(gateway)
            gateways.append(gateway)
        self.say(f"{o.gateways} gateway(s) up: client ids "
                 f"{', '.join(CLIENT_ID.format(i + 1) for i in range(o.gateways))}")

        provider_address = provider.address
        if registries is not None:
            agent = register_and_discover(
                w3, provider, configs[0], escrow.address,
                login=(slots[0].username, slots[0].password) if slots[0].username else None,
                ca_file=str(broker.ca_file) if broker is not None else None)
            provider_address = agent.provider
            self.summary["identity"] = agent.as_dict()
            if proxy is None and device_port == broker_port:
                # on the gateway's listener, not through the fault proxy
                device_broker.update(host=agent.broker_host, port=agent.broker_port)
            self.say(f"provider discovered from {agent.reference}: {agent.provider}, broker "
                     f"{agent.as_dict()['broker']}, catalog seq {agent.catalog_seq}")

        # channels: one payer funds the fleet with openMany --------------------------
        t0 = time.monotonic()
        deposit = o.deposit()
        escrow.mint(deployer, payer.address, deposit * o.devices)
        escrow.approve(payer, deposit * o.devices)
        expiry = int(w3.eth.get_block("latest")["timestamp"]) + CHANNEL_LIFETIME
        open_gas = 0
        open_txs = 0
        for first in range(0, o.devices, OPEN_MANY_CHUNK):
            chunk = slots[first:first + OPEN_MANY_CHUNK]
            ids, receipt = escrow.open_many(
                payer, [ChannelSpec(s.address, provider_address, deposit, expiry)
                        for s in chunk], approve=False)
            if len(ids) != len(chunk):
                raise FleetError(f"openMany opened {len(ids)} channels for {len(chunk)}")
            for slot, channel_id in zip(chunk, ids, strict=True):
                slot.channel = channel_id
            open_gas += int(receipt["gasUsed"])
            open_txs += 1
        self.funding = FleetFunding(escrow, deployer, payer, [s.channel for s in slots],
                                    deposit, expiry)
        self.summary["provisioning"] = {"open_many_transactions": open_txs,
                                        "open_many_gas": open_gas,
                                        "gas_per_channel": open_gas // o.devices,
                                        "deposit_per_channel": deposit,
                                        "seconds": round(time.monotonic() - t0, 2)}
        self.say(f"{o.devices} channels opened in {open_txs} openMany transaction(s), "
                 f"{open_gas // o.devices:,} gas per channel, {deposit:,} units each")

        # devices connect --------------------------------------------------------------
        common = {"chain_id": chain_id, "escrow": escrow.address,
                  "provider": provider_address,
                  "broker": device_broker,
                  "policy": {"deposit": deposit, "budget": deposit,
                             "max_unit_price": max(PRICES.values()), "expiry": expiry},
                  "keepalive": 60, "timeout_ms": o.timeout_ms, "resend_ms": 4000}
        if provider_address.lower() == provider.address.lower():
            # the devices verify receipts and catalogs against the provider's key
            # instead of recovering their signer (a discovered provider that is not
            # ours keeps recovery: its key is not known here)
            common["provider_key"] = "0x" + PrivateKey(bytes(provider.key)).public_key.format(
                False)[1:].hex()
        if isinstance(group, DeviceGroup):  # a board has G's table in its ROMFS image
            common["comb_tables"] = str(group.comb_tables(provider_address,
                                                          common.get("provider_key")))
        go_file = self.work / "go"
        # Two agents of a process connect at a time: a TLS handshake costs the unix port
        # tens of ms of CPU, and a thousand at once took longer than the MQTT client's
        # time-out, so each was abandoned and started again and none finished.
        group.start_run(common, rate=o.rate, duration=o.duration, warmup=o.warmup,
                        products=list(PRICES), go=str(go_file.resolve()), connect_batch=2)
        t0 = time.monotonic()
        self._wait_ready(group, timeout=60 + o.devices * 0.1)
        ready = [p.ready or {} for p in group.processes]
        heap_per_agent = max(int(r.get("heap_per_agent_connected", 0)) for r in ready)
        rss = [r for r in group.rss_kib() if r]
        self.summary["provider_tables"] = sum(int(r.get("provider_tables", 0)) for r in ready)
        self.summary["memory"] = {
            "heap_import_bytes": max(int(r.get("heap_import", 0)) for r in ready),
            "heap_per_agent_built_bytes": max(int(r.get("heap_per_agent_built", 0))
                                              for r in ready),
            "heap_per_agent_connected_bytes": heap_per_agent,
            "rss_kib_per_process_ready": rss,
            "rss_kib_per_agent_ready": round(sum(rss) / o.devices, 1) if rss else None,
        }
        self.say(f"{o.devices} agents connected in {time.monotonic() - t0:.1f} s; "
                 f"{heap_per_agent:,} bytes of MicroPython heap per agent")

        balance_before = escrow.balance_of(provider.address)
        def roots() -> dict[str, list[int]]:
            """Process ids by part, read again each time: chaos restarts some."""
            return {"devices": group.pids(),
                    "gateways": [g.process.pid for g in gateways if g.process],
                    "broker": [broker.process.pid] if broker and broker.process else [],
                    "anvil": [anvil_pid] if anvil_pid else [],
                    "postgres": [postgres_pid] if postgres_pid else []}

        meter = CpuMeter()
        cpu_before = meter.totals(roots())
        self.summary["phases"] = {"bring_up_s": round(time.monotonic() - t_start, 2)}

        # go ----------------------------------------------------------------------------
        if proxy is not None:
            proxy.arm()  # the devices wait for go: bring-up had a clean link
        records = self._purchase_loop(group, gateways, broker, ledger_url, roots, go_file,
                                      meter)
        if proxy is not None:
            self._fault_summary(proxy)
        cpu_after = meter.totals(roots())
        window = max(1e-6, self.summary["phases"]["devices_done_s"])  # go to the last exit
        self.summary["cpu"] = {
            name: {"seconds": round(cpu_after.get(name, 0) - cpu_before.get(name, 0), 2),
                   "cores": round((cpu_after.get(name, 0) - cpu_before.get(name, 0)) / window,
                                  3)}
            for name in roots()}
        self.summary["cpu"]["total_cores"] = round(sum(
            v["cores"] for v in self.summary["cpu"].values()), 3)
        # While the schedule runs (warm-up and the drain at the end left out).
        steady = [s["cpu_cores"] for s in self.samples if "cpu_cores" in s
                  and o.warmup + 2 <= s["t"] <= o.warmup + o.duration]
        if steady:
            self.summary["cpu_steady_cores"] = {
                name: round(sum(s.get(name, 0) for s in steady) / len(steady), 3)
                for name in steady[-1]}

        # settle ------------------------------------------------------------------------
        for gateway in gateways:
            code = gateway.terminate(timeout=30)
            if code not in (0, -signal.SIGTERM):
                self.event("gateway_exit", code=code)
        t0 = time.monotonic()
        from ..gateway.commands import settle_now
        from ..gateway.config import load_config

        settlement = settle_now(load_config(configs[0]), {KEY_ENV: bytes(provider.key).hex()},
                                timeout=300)
        self.say(f"settle now: {len(settlement.transactions)} transaction(s), "
                 f"{settlement.gas_used:,} gas, in {time.monotonic() - t0:.1f} s")
        self.summary["phases"]["settle_s"] = round(time.monotonic() - t0, 2)
        received = escrow.balance_of(provider.address) - balance_before
        verdict = check_fleet(slots, records, ledger_url, escrow, received, self.run_dir)
        if "top-up" in o.chaos and self.funding is not None:
            self.summary["top_up"] = topped = check_top_up(self.funding)
            if topped["channels_not_topped_up"] or not self.funding.added:
                verdict.problems.append(
                    f"--chaos top-up: {len(topped['channels_not_topped_up'])} channel(s) "
                    f"without the new deposit and expiry (added {self.funding.added})")
        done = [x for x in json.loads((self.run_dir / "settlements.json").read_text())
                if x["state"] == "confirmed"]
        self.summary["settlement"] = {
            "redeem_transactions": len(done),
            "redeem_gas": sum(x["gas_used"] or 0 for x in done),
            "during_run_transactions": len(done) - len(settlement.transactions),
            "settle_now_transactions": len(settlement.transactions),
            "settle_now_gas": settlement.gas_used,
        }
        self._summarise(verdict, slots, group)
        self.say(verdict.table())
        return verdict

    # ----------------------------------------------------------------- helpers --

    def _ledger(self, stack: contextlib.ExitStack) -> tuple[str, int | None]:
        url = self.options.ledger
        if url == "sqlite":
            return f"sqlite:///{(self.work / 'ledger.db').resolve()}", None
        if url in ("postgres", "postgresql"):
            from ..servers.postgres import PostgresServer

            server = stack.enter_context(PostgresServer(workdir=self.work / "postgres",
                                                        max_connections=200))
            self.say(f"PostgreSQL on {server.host}:{server.port}")
            pid = server.process.pid if server.process else None
            return server.url, pid
        return url, None

    def _device_ca(self, broker: Any) -> Path:
        """The broker's CA in DER, as the devices' mbedTLS reads it."""
        return broker.write_ca_der(self.work / "broker_ca.der").resolve()

    def _enrol(self, broker: Any, provider_hex: str, slots: list[DeviceSlot]) -> None:
        """A broker client for each device, its username its address."""
        from ..broker.clients import add_device

        t0 = time.monotonic()
        with broker.admin() as admin:
            for slot in slots:
                credentials = add_device(admin, provider_hex, slot.address[2:].lower())
                slot.username, slot.password = credentials.username, credentials.password
        self.say(f"{len(slots)} broker clients made in {time.monotonic() - t0:.1f} s")

    def _fault_proxy(self, stack: contextlib.ExitStack, broker: Any, broker_host: str,
                     broker_port: int) -> FaultProxy | None:
        """With --net-faults, the proxy the devices reach the broker through (disarmed
        until go); the gateways keep their direct link. On our broker it is TLS on both
        sides, with a certificate of its own issued by the broker's CA."""
        o = self.options
        if o.net_faults is None:
            return None
        tls = None
        if broker is not None and broker.site is not None:
            try:
                tls = proxy_tls(broker.site.ca_file, broker.site.ca_key_file, broker.host,
                                self.work / "fault-proxy")
            except ProxyTLSError as exc:
                raise FleetError(str(exc)) from None
        # Its own bound: the devices' bring-up, the run and its drain, and a margin.
        lifetime = (60 + o.devices * 0.1) + o.warmup + o.duration + o.timeout_ms / 1000 + 180
        try:
            proxy = stack.enter_context(FaultProxy(
                broker_port, o.net_faults, upstream_host=broker_host, host=broker_host,
                lifetime_s=lifetime, armed=False, tls=tls))
        except ProxyError as exc:
            raise FleetError(str(exc)) from None
        transport = "tls" if tls is not None else "plain"
        self.summary["net_faults"] = {"faults": o.net_faults.as_dict(),
                                      "proxy": f"{proxy.host}:{proxy.port}",
                                      "proxy_transport": transport}
        self.say(f"devices reach the broker through the fault proxy {proxy.host}:"
                 f"{proxy.port} ({transport}; {o.net_faults.describe()}, from go on)")
        return proxy

    def _fault_summary(self, proxy: FaultProxy) -> None:
        counts = proxy.counts.snapshot()
        self.summary["net_faults"]["counts"] = counts
        self.summary["net_faults"]["expired"] = proxy.expired
        parts = []
        for direction in DIRECTIONS:
            done = {action: proxy.counts.total(direction, action) for action in ACTIONS}
            parts.append(f"{direction} {done['packets']:,} packets, "
                         + ", ".join(f"{n:,} {a}" for a, n in done.items()
                                     if a != "packets" and n))
        self.say("fault proxy: " + "; ".join(parts))

    def _wait_ready(self, group: DeviceGroup | BoardGroup, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(p.ready for p in group.processes):
            for process in group.processes:
                if not process.alive() and not process.ready:
                    raise FleetError(process.failure())
            if time.monotonic() > deadline:
                count = sum(1 for p in group.processes if p.ready)
                raise FleetError(f"only {count} of {len(group.processes)} MicroPython "
                                 f"processes connected their agents within {timeout:.0f} s")
            with contextlib.suppress(queue.Empty):
                group.lines.get(timeout=0.2)

    def _purchase_loop(self, group: DeviceGroup | BoardGroup, gateways: list[Any],
                       broker: Any,
                       ledger_url: str, roots: Callable[[], dict[str, list[int]]],
                       go_file: Path, meter: CpuMeter) -> dict[int, dict[str, Any]]:
        """Go, then collect purchase lines until every process is done; returns the
        devices' own summaries by device index."""
        from ..ledger import open_ledger

        o = self.options
        ledger = open_ledger(ledger_url)
        purchases = (self.run_dir / "purchases.jsonl").open("w")
        timeline = (self.run_dir / "timeline.jsonl").open("w")
        summaries: dict[int, dict[str, Any]] = {}
        recovered: list[dict[str, Any]] = []
        chaos = _Chaos(self, broker, gateways) if o.chaos else None
        exited = 0
        try:
            go_file.write_text("go\n")
            self.live.started = time.monotonic()
            self.summary["go_wall"] = round(time.time(), 3)
            self.event("go")
            if chaos is not None:
                chaos.start()
            end_by = self.live.started + o.warmup + o.duration + o.timeout_ms / 1000 + 60
            next_sample = self.live.started
            purchasing_end = None
            cpu_prev = meter.totals(roots())
            cpu_prev_t = time.monotonic()
            while exited < len(group.processes):
                now = time.monotonic()
                if now > end_by:
                    raise FleetError("the devices did not finish within "
                                     f"{end_by - self.live.started:.0f} s of go")
                try:
                    number, line = group.lines.get(timeout=0.1)
                except queue.Empty:
                    line = None
                while line is not None:
                    if "us" in line:
                        self.live.add(line, time.monotonic())
                        purchases.write(json.dumps(_purchase_record(line)) + "\n")
                    elif "rec" in line:
                        self.live.recovered += 1
                        recovered.append(line)
                    elif "sum" in line:
                        summaries[int(line["sum"])] = line
                        if purchasing_end is None:
                            purchasing_end = time.monotonic()
                    elif line.get("exit"):
                        exited += 1
                        process = group.processes[number]
                        assert process.process is not None
                        code = process.process.wait(timeout=30)
                        if code != 0 or process.done is None:
                            raise FleetError(process.failure())
                    try:
                        number, line = group.lines.get_nowait()
                    except queue.Empty:
                        line = None
                now = time.monotonic()
                if now >= next_sample:
                    next_sample = now + 1.0
                    sample = self._sample(ledger, group, roots, meter, cpu_prev, cpu_prev_t)
                    cpu_prev, cpu_prev_t = sample.pop("_cpu"), now
                    self.samples.append(sample)
                    timeline.write(json.dumps(sample) + "\n")
                    timeline.flush()
                    self._progress_line(sample, len(gateways))
            if chaos is not None:
                chaos.join()
        finally:
            purchases.close()
            timeline.close()
            ledger.close()
            if chaos is not None:
                chaos.stop()
        if self._tty:
            self.out.write("\n")
        # Purchases start within the duration; the last ones end a latency later.
        self.summary["phases"]["purchasing_s"] = o.duration
        if purchasing_end is not None:
            self.summary["phases"]["last_purchase_done_s"] = round(
                purchasing_end - self.live.started, 2)
        self.summary["phases"]["devices_done_s"] = round(time.monotonic() - self.live.started, 2)
        done = [p.done or {} for p in group.processes]
        mem = self.summary.setdefault("memory", {})
        mem["heap_per_agent_after_bytes"] = max(int(d.get("heap_per_agent_after", 0))
                                                for d in done)
        for entry in recovered:
            summaries.setdefault(int(entry["d"]), {}).setdefault("_recovered", []).append(
                int(entry["rec"]))
        return summaries

    def _sample(self, ledger: Any, group: DeviceGroup | BoardGroup,
                roots: Callable[[], dict[str, list[int]]], meter: CpuMeter,
                cpu_prev: dict[str, float], cpu_prev_t: float) -> dict[str, Any]:
        now = time.monotonic()
        t = now - self.live.started
        unredeemed = accepted = redeemed = 0
        oldest_ms: int | None = None
        try:
            for record in ledger.channels():
                accepted += record.cumulative
                redeemed += record.redeemed
                if record.unredeemed > 0:
                    unredeemed += record.unredeemed
                    if oldest_ms is None or record.first_unredeemed_ms < oldest_ms:
                        oldest_ms = record.first_unredeemed_ms
            gas = sum(s.gas_used or 0 for s in ledger.settlements()
                      if s.state.value == "confirmed")
            settlements = sum(1 for s in ledger.settlements() if s.state.value == "confirmed")
        except Exception as exc:  # the ledger is busy or restarting: skip this sample
            return {"t": round(t, 3), "ledger_error": str(exc)[:200],
                    "_cpu": cpu_prev, **self._counts(now)}
        lag = (time.time() * 1000 - oldest_ms) / 1000 if oldest_ms else 0.0
        parts = roots()
        cpu = meter.totals(parts)
        span = max(1e-6, now - cpu_prev_t)
        rss = [r for r in group.rss_kib() if r]
        return {
            "t": round(t, 3), **self._counts(now),
            "accepted": accepted, "redeemed": redeemed, "unredeemed": unredeemed,
            "settlement_lag_s": round(lag, 3), "gas": gas, "settlements": settlements,
            "cpu_cores": {k: round((cpu.get(k, 0) - cpu_prev.get(k, 0)) / span, 3)
                          for k in parts},
            "rss_kib_devices": sum(rss), "_cpu": cpu,
        }

    def _counts(self, now: float) -> dict[str, Any]:
        recent = self.live.recent(now)
        return {"ok": self.live.ok + self.live.warm_ok,
                "failed": self.live.failed + self.live.warm_failed,
                "recent_per_s": round(len(recent) / min(5.0, max(0.2, now - self.live.started)),
                                      1),
                "recent_p50_ms": round(percentile(recent, 0.5), 2) if recent else None,
                "recent_p99_ms": round(percentile(recent, 0.99), 2) if recent else None}

    def _progress_line(self, sample: dict[str, Any], gateways: int) -> None:
        o = self.options
        t = min(sample["t"] - o.warmup, o.duration)
        chaos = ", ".join(e["event"] for e in self.events if e["event"] not in ("go",))
        p50, p99 = sample.get("recent_p50_ms"), sample.get("recent_p99_ms")
        latency = f"p50 {p50:.0f} ms p99 {p99:.0f} ms" if p50 is not None else "p50 - p99 -"
        clock = f"warm-up {sample['t']:3.0f}/{o.warmup:g} s" if t < 0 else \
            f"{t:5.0f}/{o.duration:g} s"
        text = (f"fleet {clock}  ok {sample['ok']:,}  errors "
                f"{sample['failed']}  {sample['recent_per_s']:.0f}/s  {latency}  unredeemed "
                f"{sample.get('unredeemed', 0):,}  lag {sample.get('settlement_lag_s', 0):.0f} s"
                + (f"  [{chaos}]" if chaos else ""))
        self.progress(text)

    def _summarise(self, verdict: Verdict, slots: list[DeviceSlot],
                   group: DeviceGroup | BoardGroup
                   ) -> None:
        live = self.live
        window = self.summary["phases"].get("purchasing_s") or self.options.duration
        self.summary["purchases"] = {
            "ok": live.ok, "failed": live.failed, "recovered_late": live.recovered,
            "per_s": round(live.ok / window, 2) if window else None,
            "target_per_s": round(self.options.total_rate, 2),
            "errors_by_code": live.errors,
            "warmup_ok": live.warm_ok, "warmup_failed": live.warm_failed,
            "warmup_latency_ms": {"p50": round(percentile(live.warm_latencies, 0.5), 2),
                                  "p99": round(percentile(live.warm_latencies, 0.99), 2)}
            if live.warm_latencies else None,
            "latency_ms": {"p50": round(percentile(live.latencies, 0.5), 2),
                           "p90": round(percentile(live.latencies, 0.9), 2),
                           "p99": round(percentile(live.latencies, 0.99), 2),
                           "max": round(max(live.latencies), 2) if live.latencies else None},
            "schedule_late_ms_max": live.late_ms_max,
            "by_product": {name: {"ok": v[0], "revenue": v[1]}
                           for name, v in sorted(live.by_product.items())},
        }
        self.summary["events"] = self.events
        self.summary["check"] = verdict.as_dict()
        self.summary["passed"] = verdict.passed


def _purchase_record(line: dict[str, Any]) -> dict[str, Any]:
    return {"device": line["d"], "product": line["p"], "t": round(line["t"] / 1000, 3),
            **({"phase": "warmup"} if line.get("w") else {}),
            "latency_ms": round(line["us"] / 1000, 3),
            "result": "ok" if line.get("ok") else str(line.get("e")),
            "cumulative": line.get("c"), "price": line.get("pr"),
            "late_ms": line.get("late", 0),
            **({"message": line["m"]} if "m" in line else {})}


class _Chaos:
    """The chaos events, each once, at fixed points of the purchasing window."""

    def __init__(self, fleet: Fleet, broker: Any, gateways: list[Any]) -> None:
        self.fleet = fleet
        self.broker = broker
        self.gateways = gateways
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=120)
        if self.error is not None:
            raise FleetError(f"chaos: {self.error}")

    def stop(self) -> None:
        self._stop.set()

    def _at(self, fraction: float) -> bool:
        o = self.fleet.options
        when = self.fleet.live.started + o.warmup + fraction * o.duration
        return not self._stop.wait(max(0.0, when - time.monotonic()))

    def _run(self) -> None:
        chaos = self.fleet.options.chaos
        try:
            if "broker-restart" in chaos and self._at(0.3):
                t0 = time.monotonic()
                self.fleet.event("broker_restart")
                self.broker.restart()
                self.fleet.event("broker_back", seconds=round(time.monotonic() - t0, 3))
            if "top-up" in chaos and self.fleet.funding is not None and self._at(0.45):
                top_up_fleet(self.fleet.funding, self.fleet.event)
            if "gateway-kill" in chaos and self._at(0.6):
                gateway = self.gateways[-1]
                t0 = time.monotonic()
                self.fleet.event("gateway_kill", gateway=len(self.gateways))
                gateway.kill()
                gateway.start()
                self.fleet.event("gateway_back", gateway=len(self.gateways),
                                 seconds=round(time.monotonic() - t0, 3))
        except BaseException as exc:  # reported by join()
            self.error = exc
