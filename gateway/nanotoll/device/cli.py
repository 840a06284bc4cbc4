"""``nanotoll device flash|provision|status|buy`` and ``nanotoll sim board``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .boards import BOARDS, board_spec
from .repl import DeviceError

DEFAULT_BROKER = ("127.0.0.1", 1883)


def _address(text: str) -> str:
    """An address argument; mixed case must be its EIP-55 checksum (argparse names the
    option in its error)."""
    from ..address import parse_address  # on use: the parser is built for every command

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _provider(text: str) -> str:
    """--provider: an address, or an ERC-8004 agent reference (checked when used)."""
    return text if text.startswith("eip155:") else _address(text)


def _discovered(args: argparse.Namespace) -> None:
    """With --provider eip155:CHAIN:REGISTRY/AGENT_ID: find the provider through its
    registry entry, registration file and catalog, and use its address and (unless
    --broker is given) its broker; refused before the board is touched."""
    if not args.provider.startswith("eip155:"):
        args.broker = args.broker or DEFAULT_BROKER
        return
    from ..broker.site import BrokerSite
    from ..identity.discovery import discover_at
    from ..identity.errors import IdentityError

    # A broker folder gives the CA a TLS broker is checked with (reading its catalog
    # still needs a client the broker lets read it).
    ca = str(BrokerSite(Path(args.broker_folder)).ca_file) if args.broker_folder else None
    try:
        found = discover_at(args.rpc_url, args.provider, args.escrow, broker_ca=ca)
    except IdentityError as exc:
        raise DeviceError(f"provider {args.provider} refused: {exc}") from None
    _say(f"provider {args.provider}: {found.wallet}, broker {found.registration.broker_url}, "
         f"catalog seq {found.catalog.seq} verified")
    args.provider = found.wallet
    args.broker = args.broker or (found.broker.host, found.broker.port)


def _say(message: str) -> None:
    print(message, flush=True)


def _fail(exc: Exception) -> int:
    print(f"nanotoll: {exc}", file=sys.stderr, flush=True)
    return 2


def _cmd_log(args: argparse.Namespace) -> int:
    from .purchases import as_document, purchases, read_log, render_csv
    from .repl import Repl

    try:
        with Repl(args.port) as repl:
            export = read_log(repl)
    except DeviceError as exc:
        return _fail(exc)
    rows, torn = purchases(export)
    if args.format == "csv":
        sys.stdout.write(render_csv(rows))
    else:
        print(json.dumps(as_document(export, rows, torn), sort_keys=True))
    unverified = [row.seq for row in rows if not row.verified]
    if torn or unverified:
        print(f"nanotoll: {torn} torn record(s); receipts that do not verify against the "
              f"provider: {unverified or 'none'}", file=sys.stderr)
    return 1 if unverified else 0


def _cmd_flash(args: argparse.Namespace) -> int:
    from .flash import flash_port, flash_romfs_port

    try:
        flasher = flash_romfs_port if args.romfs else flash_port
        flasher(args.port, board_spec(args.board), _say, reset=not args.no_reset)
    except DeviceError as exc:
        return _fail(exc)
    return 0


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _cmd_provision(args: argparse.Namespace) -> int:
    from .provision import WIFI_PASSWORD_ENV, ProvisionRequest, owner_account, provision
    from .repl import Repl

    try:
        _discovered(args)
        spec = board_spec(args.board)
        extra: dict[str, Any] = {}
        if args.policy:
            try:
                with open(args.policy) as f:
                    extra = dict(json.load(f))
            except (OSError, ValueError) as exc:
                raise DeviceError(f"--policy {args.policy}: {exc}") from exc
        owner = owner_account(args.keystore)
        request = ProvisionRequest(
            rpc_url=args.rpc_url, escrow=args.escrow, token=args.token, provider=args.provider,
            deposit=args.deposit, broker_host=args.broker[0], broker_port=args.broker[1],
            lifetime=args.lifetime, budget=args.budget, max_unit_price=args.max_unit_price,
            policy_extra=extra, wifi_ssid=args.wifi_ssid,
            wifi_password=os.environ.get(WIFI_PASSWORD_ENV), rotate=args.rotate,
            provider_key=args.provider_key, broker=_enrolment(args))
        with Repl(args.port) as repl:
            result = provision(repl, spec, request, owner, _say)
    except DeviceError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps({"address": result.address, "channel": result.channel,
                          "deposit": result.deposit, "expiry": result.expiry}))
    return 0


def _enrolment(args: argparse.Namespace) -> Any:
    """The broker enrolment --broker-folder asks for (None without it)."""
    if args.broker_folder is None:
        return None
    from ..broker.enrol import BrokerEnrolment, EnrolError

    try:
        return BrokerEnrolment.from_folder(Path(args.broker_folder), *args.broker)
    except EnrolError as exc:
        raise DeviceError(str(exc)) from exc


def _cmd_status(args: argparse.Namespace) -> int:
    from .provision import status
    from .repl import Repl

    try:
        with Repl(args.port) as repl:
            info = repl.info()
            state = status(repl)
    except DeviceError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps(state, sort_keys=True))
        return 0
    spent = state["spent"] or 0
    budget = state["budget"] or 0
    cumulative = state["cumulative"] or 0
    print(f"board    {info.describe()}")
    print(f"device   {state['device']}")
    print(f"channel  {state['channel']} (provider {state['provider']}, expiry {state['expiry']})")
    print(f"budget   {budget:,} units; spent {spent:,}; left {budget - spent:,}")
    print(f"voucher  last signed: channel {state['channel']}, cumulative {cumulative:,} units "
          f"(acknowledged {state['acked'] or 0:,}; request {state['request_id'] or 0}"
          f"{', one unanswered' if state['pending'] else ''})")
    if state["corrupt"]:
        print(f"WARNING  state record corrupt: {state['corrupt']} (no signing until a resync)")
    return 0


def _cmd_buy(args: argparse.Namespace) -> int:
    from .provision import buy
    from .repl import Repl

    try:
        params = json.loads(args.params) if args.params else None
        with Repl(args.port) as repl:
            lines = buy(repl, args.product, args.count, args.max_price, params)
    except (DeviceError, ValueError) as exc:
        return _fail(exc)
    for line in lines:
        print(json.dumps(line))
    return 0 if lines and all(line.get("ok") for line in lines) else 1


def _cmd_sim_board(args: argparse.Namespace) -> int:
    from .sim import BoardSim

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with BoardSim(args.broker[0], args.broker[1], icount=args.icount,
                      bridge_log=args.verbose, ca_file=args.ca) as board:
            print(f"board: REPL on {board.pty}", flush=True)
            print(f"board: UART1 -> bridge 127.0.0.1:{board.bridge.port} -> broker "
                  f"{args.broker[0]}:{args.broker[1]}", flush=True)
            print(f"board: flash it with `nanotoll device flash --port {board.pty} "
                  "--board qemu_mps2`; Ctrl-C stops QEMU", flush=True)
            try:
                while not stop.wait(0.5):
                    if board.process is None or board.process.poll() is not None:
                        print("board: QEMU exited", flush=True)
                        return 1
            except KeyboardInterrupt:
                pass
            print("board: stopping QEMU", flush=True)
    except DeviceError as exc:
        return _fail(exc)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def add_device_commands(subparsers: Any) -> None:
    device = subparsers.add_parser("device", help="flash, provision and inspect a board")
    commands = device.add_subparsers(dest="device_command", required=True)
    boards = ", ".join(f"{name}: {spec.description}" for name, spec in BOARDS.items())

    flash = commands.add_parser(
        "flash", help="compile the firmware for the board and copy what changed",
        description=f"Boards: {boards}.")
    flash.add_argument("--port", required=True, help="serial port (e.g. /dev/ttyUSB0)")
    flash.add_argument("--board", required=True, choices=sorted(BOARDS))
    flash.add_argument("--no-reset", action="store_true", help="do not soft-reset afterwards")
    flash.add_argument("--romfs", action="store_true",
                       help="modules in a ROMFS image (mpremote romfs deploy), run in place "
                            "from flash; needs a MicroPython with a ROMFS partition")
    flash.set_defaults(func=_cmd_flash)

    prov = commands.add_parser(
        "provision", help="key on the device, funded channel, config",
        description="The board makes its key; the owner's account (--keystore FILE with "
        "NANOTOLL_KEYSTORE_PASSWORD, or NANOTOLL_OWNER_KEY) opens and funds a channel "
        "for it; the config goes to /config.json on the board.")
    prov.add_argument("--port", required=True)
    prov.add_argument("--board", required=True, choices=sorted(BOARDS))
    prov.add_argument("--rpc-url", default="http://127.0.0.1:8545")
    prov.add_argument("--escrow", required=True, type=_address,
                      help="escrow contract address")
    prov.add_argument("--token", required=True, type=_address,
                      help="the deposit's ERC-20 address")
    prov.add_argument("--provider", required=True, type=_provider,
                      help="the provider (payee) address, or its ERC-8004 agent "
                      "eip155:CHAIN:REGISTRY/AGENT_ID (address and broker read from its "
                      "registration, checked against its catalog)")
    prov.add_argument("--provider-key", default=None,
                      help="the provider's public key (hex x || y): receipts are then verified "
                      "against it; refused unless it hashes to --provider")
    prov.add_argument("--deposit", type=int, required=True, help="units to deposit")
    prov.add_argument("--budget", type=int, default=None, help="units the board may spend "
                      "(default: the deposit)")
    prov.add_argument("--max-unit-price", type=int, default=None)
    prov.add_argument("--lifetime", type=int, default=7 * 86400,
                      help="channel lifetime in seconds (7 days)")
    prov.add_argument("--policy", default=None, help="JSON file with more policy keys")
    prov.add_argument("--broker", type=_host_port, default=None,
                      help="the gateway's MQTT broker HOST:PORT, as the board reaches it "
                      "(127.0.0.1:1883; with an agent --provider, its registration's)")
    prov.add_argument("--broker-folder", default=None, metavar="DIR",
                      help="the broker's folder (`nanotoll broker init`): the board gets a "
                      "broker client of its own and the broker's CA, and connects with TLS")
    prov.add_argument("--wifi-ssid", default=None,
                      help="Wi-Fi network (password from NANOTOLL_WIFI_PASSWORD)")
    prov.add_argument("--keystore", default=None, help="the owner's keystore file")
    prov.add_argument("--rotate", action="store_true",
                      help="replace an existing key with a new one and a new channel")
    prov.add_argument("--json", action="store_true")
    prov.set_defaults(func=_cmd_provision)

    stat = commands.add_parser("status", help="budget, spent and the last voucher")
    stat.add_argument("--port", required=True)
    stat.add_argument("--json", action="store_true")
    stat.set_defaults(func=_cmd_status)

    log = commands.add_parser("log", help="the board's purchase log, receipts verified "
                              "offline against the provider")
    log.add_argument("--port", required=True)
    log.add_argument("--format", choices=("json", "csv"), default="json")
    log.set_defaults(func=_cmd_log)

    buy = commands.add_parser("buy", help="make purchases on the board (a smoke test)")
    buy.add_argument("--port", required=True)
    buy.add_argument("--product", default="weather")
    buy.add_argument("--count", type=int, default=1)
    buy.add_argument("--max-price", type=int, default=None)
    buy.add_argument("--params", default=None, help="JSON request parameters")
    buy.set_defaults(func=_cmd_buy)

    # `sim` may already exist (another part's simulators): add `board` under it.
    sim = subparsers.choices.get("sim")
    if sim is None:
        sim = subparsers.add_parser("sim", help="emulated hardware")
    actions = [a for a in sim._actions if isinstance(a, argparse._SubParsersAction)]
    sim_commands = actions[0] if actions else sim.add_subparsers(dest="sim_command",
                                                                 required=True)
    board = sim_commands.add_parser(
        "board", help="start the emulated board (QEMU) and print its REPL's pty")
    board.add_argument("--broker", type=_host_port, default=("127.0.0.1", 1883),
                       help="where the board's UART link leads (mosquitto HOST:PORT)")
    board.add_argument("--icount", action="store_true",
                       help="deterministic instruction counting (-icount shift=0)")
    board.add_argument("--ca", type=Path, default=None, metavar="FILE",
                       help="the broker's CA: the bridge makes the TLS connection for the "
                       "board, as a modem with TLS offload does")
    board.add_argument("--verbose", action="store_true", help="log the bridge's connections")
    board.set_defaults(func=_cmd_sim_board)
