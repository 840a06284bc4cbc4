"""``nanotoll channel open | top-up | extend | reclaim | list | show``: the payer's channels.

The payer's key comes from ``--keystore FILE`` (password in NANOTOLL_KEYSTORE_PASSWORD) or
NANOTOLL_OWNER_KEY, never from a flag. The escrow is named by ``--rpc-url`` and ``--escrow``,
or by a gateway's config (``--gateway-config``), which also gives ``list`` and ``show`` the
gateway's ledger: what it accepted and has not yet redeemed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from eth_utils.address import is_address, to_checksum_address

from .errors import OwnerError

DEFAULT_RPC_URL = "http://127.0.0.1:8545"


@dataclass(frozen=True, slots=True)
class Target:
    """Which escrow, through which node, and (optionally) which gateway's ledger."""

    rpc_url: str
    escrow: str
    ledger_url: str | None


def _target(args: argparse.Namespace) -> Target:
    ledger_url = None
    rpc_url, escrow = args.rpc_url, args.escrow
    if args.gateway_config is not None:
        from ..gateway.config import ConfigError, load_config

        try:
            config = load_config(args.gateway_config)
        except ConfigError as exc:
            raise OwnerError(str(exc)) from None
        ledger_url = config.ledger_url
        rpc_url = rpc_url or config.chain.rpc_url
        escrow = escrow or config.chain.escrow
    if escrow is None:
        raise OwnerError("which escrow? pass --escrow ADDRESS or --gateway-config FILE")
    if not is_address(escrow):
        raise OwnerError(f"--escrow: {escrow!r} is not an address")
    return Target(rpc_url or DEFAULT_RPC_URL, to_checksum_address(escrow), ledger_url)


def _client(target: Target) -> Any:
    from web3 import Web3

    from ..chain.client import EscrowClient

    w3 = Web3(Web3.HTTPProvider(target.rpc_url, request_kwargs={"timeout": 30}))
    try:
        code = w3.eth.get_code(to_checksum_address(target.escrow))
    except Exception as exc:  # connection refused, DNS, timeout: all mean the same here
        raise OwnerError(f"cannot reach the node at {target.rpc_url}: {exc}") from None
    if not code:
        raise OwnerError(f"no contract at {target.escrow} on the node at {target.rpc_url}: "
                         "check --escrow and --rpc-url")
    return EscrowClient(w3, target.escrow)


def _payer(args: argparse.Namespace) -> Any:
    from .payer import payer_account

    return payer_account(args.keystore)


def _progress(label: str, stream: TextIO | None = None) -> Any:
    """A progress line on ``stream`` (standard error), redrawn in place on a terminal."""
    def show(done: int, total: int) -> None:
        out = sys.stderr if stream is None else stream
        end = "\r" if out.isatty() and done < total else "\n"
        out.write(f"{label}: {done}/{total} channels{end}")
        out.flush()
    return show


def _channels(text: str) -> list[int]:
    from .selection import parse_channels

    return parse_channels(text)


def _print_sent(args: argparse.Namespace, what: str, sent: list[Any],
                extra: dict[str, Any] | None = None) -> None:
    if args.json:
        print(json.dumps({"operation": what, **(extra or {}),
                          "transactions": [tx.as_dict() for tx in sent]}, sort_keys=True))
        return
    for key, value in (extra or {}).items():
        print(f"{key}: {value}")
    for tx in sent:
        ids = tx.channels
        span = f"{ids[0]}" if len(ids) == 1 else f"{ids[0]}..{ids[-1]} ({len(ids)})"
        print(f"{what} channels {span}: tx {tx.tx_hash}, gas {tx.gas_used}")


def _expiry(args: argparse.Namespace, client: Any) -> int:
    from .funding import chain_time

    if args.expiry is not None:
        return int(args.expiry)
    return chain_time(client) + int(args.lifetime)


def _cmd_open(args: argparse.Namespace) -> int:
    from ..chain.client import EscrowClient
    from .funding import open_channels

    signers = list(args.signer or [])
    if args.signers_file:
        try:
            lines = Path(args.signers_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise OwnerError(f"--signers-file: cannot read it ({exc.strerror})") from None
        signers += [line.split("#", 1)[0].strip() for line in lines
                    if line.split("#", 1)[0].strip()]
    if not signers:
        raise OwnerError("which devices? pass --signer ADDRESS (repeatable) or --signers-file")
    if not is_address(args.token):
        raise OwnerError(f"--token: {args.token!r} is not an address")
    client = _client(_target(args))
    client = EscrowClient(client.w3, client.address, args.token)
    payer = _payer(args)
    ids, sent = open_channels(client, payer, signers, args.payee, args.deposit,
                              _expiry(args, client), approve=args.approve,
                              progress=_progress("open") if len(signers) > 1 else None)
    _print_sent(args, "opened", sent, {"channels": ids})
    return 0


def _cmd_top_up(args: argparse.Namespace) -> int:
    from .funding import top_up

    ids = _channels(args.channels)
    client = _client(_target(args))
    sent = top_up(client, _payer(args), ids, args.amount, approve=args.approve,
                  progress=_progress("top-up") if len(ids) > 1 else None)
    _print_sent(args, "topped up", sent)
    return 0


def _cmd_extend(args: argparse.Namespace) -> int:
    from .funding import extend

    ids = _channels(args.channels)
    client = _client(_target(args))
    expiry = _expiry(args, client)
    sent = extend(client, _payer(args), ids, expiry,
                  progress=_progress("extend") if len(ids) > 1 else None)
    _print_sent(args, "extended", sent, {"expiry": expiry})
    return 0


def _cmd_reclaim(args: argparse.Namespace) -> int:
    from .funding import reclaim

    ids = _channels(args.channels)
    client = _client(_target(args))
    sent = reclaim(client, _payer(args), ids,
                   progress=_progress("reclaim") if len(ids) > 1 else None)
    _print_sent(args, "reclaimed", sent)
    return 0


def _rows(args: argparse.Namespace, channels: str | None) -> list[Any]:
    from .funding import read_channels
    from .report import accepted_by_gateway, channel_rows, known_channels

    target = _target(args)
    client = _client(target)
    if channels is not None:
        states = read_channels(client, _channels(channels))
    else:
        payer = None
        if args.payer is not None:
            if not is_address(args.payer):
                raise OwnerError(f"--payer: {args.payer!r} is not an address")
            payer = to_checksum_address(args.payer)
        states = known_channels(client, payer)
    accepted = None
    if target.ledger_url is not None:
        accepted = accepted_by_gateway(target.ledger_url, [s.channel_id for s in states])
    return channel_rows(client, states, accepted)


def _cmd_list(args: argparse.Namespace) -> int:
    rows = _rows(args, args.channels)
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], sort_keys=True))
        return 0
    print(f"{'channel':>8} {'state':9} {'deposit':>14} {'paid':>14} {'unredeemed':>12} "
          f"{'expiry':>11} {'expires in':>11}  signer")
    for row in rows:
        unredeemed = "-" if row.unredeemed is None else str(row.unredeemed)
        print(f"{row.channel_id:>8} {row.state:9} {row.deposit:>14} {row.paid:>14} "
              f"{unredeemed:>12} {row.expiry:>11} {row.expires_in:>10}s  {row.signer}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    rows = _rows(args, str(args.channel))
    row = rows[0]
    if row.state == "unknown":
        raise OwnerError(f"channel {args.channel} does not exist on escrow {_target(args).escrow}")
    if args.json:
        print(json.dumps(row.as_dict(), sort_keys=True))
        return 0
    for key, value in row.as_dict().items():
        print(f"{key:12} {'-' if value is None else value}")
    return 0


BROKER_PASSWORD_ENV = "NANOTOLL_BROKER_PASSWORD"


def _broker(args: argparse.Namespace, owner: str | None) -> Any:
    import os

    from .policy import BrokerAccess

    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        raise OwnerError(f"--broker: {args.broker!r} is not HOST:PORT")
    password = os.environ.get(BROKER_PASSWORD_ENV)
    username = args.broker_user
    if username is None and password is not None and owner is not None:
        username = owner[2:].lower()  # the owner's broker client is named by its address
    return BrokerAccess(host, int(port), username, password, args.broker_ca)


def _print_policy(args: argparse.Namespace, fields: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(fields, sort_keys=True))
        return
    for key, value in fields.items():
        print(f"{key:16} {value}")


def _cmd_policy_set(args: argparse.Namespace) -> int:
    from .policy import PolicyLimits, parse_caps, set_policy

    limits = PolicyLimits(
        budget=args.budget, expiry_margin=args.expiry_margin,
        max_unit_price=args.max_unit_price, per_hour=args.per_hour,
        per_minute=args.per_minute, providers=tuple(args.provider or ()),
        provider_caps=parse_caps(args.provider_cap or (), "--provider-cap"),
        product_caps=parse_caps(args.product_cap or (), "--product-cap"))
    client = _client(_target(args))
    owner = _payer(args)
    fields = set_policy(client, owner, _broker(args, owner.address), args.channel, limits,
                        args.seq)
    _print_policy(args, fields)
    return 0


def _cmd_policy_show(args: argparse.Namespace) -> int:
    from .funding import read_channels
    from .policy import show_policy

    client = _client(_target(args))
    # On a secured broker the channel's payer (the device's owner) logs in, by default.
    state = read_channels(client, [args.channel])[0]
    owner = state.payer if state.exists else None
    _print_policy(args, show_policy(client, _broker(args, owner), args.channel))
    return 0


def _broker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST:PORT",
                        help="the MQTT broker the device uses (127.0.0.1:1883)")
    parser.add_argument("--broker-user", default=None,
                        help=f"broker username (with {BROKER_PASSWORD_ENV} set: the owner's "
                             "address, lowercase without 0x)")
    parser.add_argument("--broker-ca", default=None, metavar="FILE",
                        help="the broker's CA (PEM): connect with TLS")


def add_device_policy_commands(commands: Any) -> None:
    """``nanotoll device policy set | show``, under the device commands when they exist."""
    device = commands.choices.get("device")
    if device is None:
        device = commands.add_parser("device", help="a device's owner-signed policy")
        device.add_subparsers(dest="device_command", required=True)
    actions = [a for a in device._actions if isinstance(a, argparse._SubParsersAction)]
    policy = actions[0].add_parser("policy", help="the owner's signed spending policy")
    sub = policy.add_subparsers(dest="policy_command", required=True)

    setter = sub.add_parser("set", help="make, sign, publish (retained) and read back")
    _common(setter, payer=True)
    _broker_options(setter)
    setter.add_argument("channel", type=int, help="the device's channel")
    setter.add_argument("--budget", type=int, default=None,
                        help="units the device may spend in all (the deposit)")
    setter.add_argument("--expiry-margin", type=int, default=3600, metavar="SECONDS")
    setter.add_argument("--max-unit-price", type=int, default=0, help="0: no ceiling")
    setter.add_argument("--per-hour", type=int, default=0, help="units an hour; 0: no limit")
    setter.add_argument("--per-minute", type=int, default=0,
                        help="purchases a minute; 0: no limit")
    setter.add_argument("--provider", action="append", help="an allowed provider "
                        "(repeatable; none: any the device was provisioned with)")
    setter.add_argument("--provider-cap", action="append", metavar="ADDRESS=UNITS")
    setter.add_argument("--product-cap", action="append", metavar="NAME=UNITS")
    setter.add_argument("--seq", type=int, default=None,
                        help="the policy's seq (one above the retained one)")
    setter.set_defaults(func=_run(_cmd_policy_set))

    shower = sub.add_parser("show", help="the policy the broker holds for the device")
    _common(shower, payer=False)
    _broker_options(shower)
    shower.add_argument("channel", type=int, help="the device's channel")
    shower.set_defaults(func=_run(_cmd_policy_show))


def _run(func: Any) -> Any:
    """Turn an :class:`OwnerError` into the CLI's error, which prints without a traceback."""
    def run(args: argparse.Namespace) -> int:
        from ..cli import CLIError

        try:
            return int(func(args))
        except OwnerError as exc:
            raise CLIError(str(exc)) from None
    return run


def _common(parser: argparse.ArgumentParser, payer: bool) -> None:
    parser.add_argument("--rpc-url", default=None, help=f"the node ({DEFAULT_RPC_URL})")
    parser.add_argument("--escrow", default=None, help="the escrow's address")
    parser.add_argument("--gateway-config", default=None, metavar="FILE",
                        help="a gateway's TOML config: its node, escrow and ledger")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    if payer:
        parser.add_argument("--keystore", default=None, metavar="FILE",
                            help="the payer's keystore (password in "
                                 "NANOTOLL_KEYSTORE_PASSWORD); else NANOTOLL_OWNER_KEY")


def _expiry_options(parser: argparse.ArgumentParser, default_lifetime: int | None) -> None:
    group = parser.add_mutually_exclusive_group(required=default_lifetime is None)
    group.add_argument("--expiry", type=int, default=None, help="unix time")
    group.add_argument("--lifetime", type=int, default=default_lifetime, metavar="SECONDS",
                       help="seconds from the chain's time now")


CHANNELS_HELP = "ids: 7, 1-100, 1-100,205 or @FILE (ids and ranges, one or more a line)"


def add_channel_commands(commands: Any) -> None:
    channel = commands.add_parser("channel", help="the payer's channels: open, fund, extend, "
                                  "reclaim, list, show")
    sub = channel.add_subparsers(dest="channel_command", required=True)

    opener = sub.add_parser("open", help="open and fund one channel per device key")
    _common(opener, payer=True)
    opener.add_argument("--signer", action="append", help="a device's address (repeatable)")
    opener.add_argument("--signers-file", default=None, help="device addresses, one a line")
    opener.add_argument("--payee", required=True, help="the provider's address")
    opener.add_argument("--token", required=True, help="the token to lock")
    opener.add_argument("--deposit", type=int, required=True, help="units per channel")
    _expiry_options(opener, 7 * 86_400)
    opener.add_argument("--approve", action="store_true",
                        help="approve the escrow for the total first if needed")
    opener.set_defaults(func=_run(_cmd_open))

    topper = sub.add_parser("top-up", help="add to each channel's deposit")
    _common(topper, payer=True)
    topper.add_argument("channels", help=CHANNELS_HELP)
    topper.add_argument("--amount", type=int, required=True, help="units per channel")
    topper.add_argument("--approve", action="store_true",
                        help="approve the escrow for the total first if needed")
    topper.set_defaults(func=_run(_cmd_top_up))

    extender = sub.add_parser("extend", help="move each channel's expiry later")
    _common(extender, payer=True)
    extender.add_argument("channels", help=CHANNELS_HELP)
    _expiry_options(extender, None)
    extender.set_defaults(func=_run(_cmd_extend))

    reclaimer = sub.add_parser("reclaim", help="after expiry: take back the unpaid deposit")
    _common(reclaimer, payer=True)
    reclaimer.add_argument("channels", help=CHANNELS_HELP)
    reclaimer.set_defaults(func=_run(_cmd_reclaim))

    lister = sub.add_parser("list", help="deposit, paid, unredeemed, expiry and state")
    _common(lister, payer=False)
    lister.add_argument("channels", nargs="?", default=None, help=CHANNELS_HELP + " (all)")
    lister.add_argument("--payer", default=None, help="only this payer's channels")
    lister.set_defaults(func=_run(_cmd_list))

    shower = sub.add_parser("show", help="one channel in full")
    _common(shower, payer=False)
    shower.add_argument("channel", type=int)
    shower.set_defaults(func=_run(_cmd_show))

    add_device_policy_commands(commands)
