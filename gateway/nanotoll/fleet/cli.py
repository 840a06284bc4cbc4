"""``nanotoll fleet run`` and ``nanotoll fleet report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .options import (
    CHAOS_EVENTS,
    DEVICE_BOARDS,
    PROVIDER_MODES,
    FleetError,
    FleetOptions,
    parse_chaos,
    parse_net_faults_option,
)


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import Fleet

    try:
        chaos = parse_chaos(args.chaos)
        net_faults = parse_net_faults_option(args.net_faults)
    except FleetError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    options = FleetOptions(
        devices=args.devices, rate=args.rate, duration=args.duration, gateways=args.gateways,
        ledger=args.ledger, chaos=chaos,
        run_dir=Path(args.run_dir) if args.run_dir else None,
        per_process=args.per_process, rpc_url=args.rpc_url, broker=args.broker,
        timeout_ms=args.timeout_ms, warmup=args.warmup, settle_threshold=args.settle_threshold,
        settle_interval=args.settle_interval, net_faults=net_faults,
        provider=args.provider, board=args.board)
    return Fleet(options).run()


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import ReportError, write_report

    try:
        page = write_report(Path(args.run_dir))
    except ReportError as exc:
        print(f"fleet report: {exc}", file=sys.stderr)
        return 2
    print(page)
    return 0


def add_fleet_commands(commands: Any) -> None:
    fleet = commands.add_parser("fleet", help="simulate a fleet of devices running the real "
                                              "firmware against real gateways")
    sub = fleet.add_subparsers(dest="fleet_command", required=True)

    run = sub.add_parser("run", help="bring everything up, run N devices, settle, check",
                         description="Run N simulated devices (the firmware under "
                         "MicroPython's unix port, several agents per process) against G "
                         "gateway processes; settle at the end and check that settled = paid "
                         "and nothing was charged twice. Exit 0 only when all holds.")
    run.add_argument("--devices", type=int, required=True, help="how many devices")
    run.add_argument("--rate", type=float, required=True,
                     help="purchases per second per device (0.2 = one every 5 s)")
    run.add_argument("--duration", type=float, required=True, help="seconds of purchasing")
    run.add_argument("--warmup", type=float, default=0.0,
                     help="seconds before the measured window in which every device buys "
                          "once (each gateway reads a new channel from the chain once)")
    run.add_argument("--gateways", type=int, default=1, help="gateway processes (1)")
    run.add_argument("--ledger", default="sqlite",
                     help="sqlite (a file in the run directory), sqlite:///PATH, postgres "
                          "(start a local server) or postgresql://USER@HOST:PORT/DB")
    run.add_argument("--chaos", default="",
                     help=f"comma-separated events, each once: {', '.join(CHAOS_EVENTS)}")
    run.add_argument("--net-faults", default="",
                     help="devices reach the broker through a loopback proxy that loses, "
                          "duplicates, delays and reorders whole MQTT packets from go on: "
                          "loss=0.1,dup=0.1 (both directions), up.KEY or down.KEY for one "
                          "(up: device to broker), delay=P with delay_ms=MS, reorder=P, "
                          "seed=N")
    run.add_argument("--provider", choices=PROVIDER_MODES, default="address",
                     help="address: devices are told the provider's address; agent: the "
                          "provider registers as an ERC-8004 agent in registries deployed on "
                          "the fleet's chain and the fleet finds it from its agent reference "
                          "(eip155:CHAIN:REGISTRY/AGENT_ID) before any channel is opened")
    run.add_argument("--board", choices=DEVICE_BOARDS, default="unix",
                     help="unix: the firmware under MicroPython's unix port, many agents a "
                          "process; qemu_mps2: one emulated Cortex-M3 board (QEMU) per "
                          "device, flashed with the firmware's ROMFS image, its key made on "
                          "the board, its MQTT over the UART bridge")
    run.add_argument("--run-dir", default=None,
                     help="where records, logs and the summary go (runs/fleet-TIME)")
    run.add_argument("--per-process", type=int, default=0,
                     help="agents per MicroPython process (0: chosen from the core count)")
    run.add_argument("--rpc-url", default=None, help="attach to this anvil node")
    run.add_argument("--broker", default=None, help="attach to this mosquitto, HOST:PORT")
    run.add_argument("--timeout-ms", type=int, default=60_000,
                     help="one purchase, the agent's own re-sends included (60000)")
    run.add_argument("--settle-threshold", type=int, default=100_000,
                     help="units unredeemed on a channel that make the gateway redeem")
    run.add_argument("--settle-interval", type=int, default=20,
                     help="seconds an accepted voucher may wait unredeemed")
    run.set_defaults(func=_cmd_run)

    report = sub.add_parser("report", help="an HTML page with plots of a run directory")
    report.add_argument("run_dir", help="a directory written by 'nanotoll fleet run'")
    report.set_defaults(func=_cmd_report)
