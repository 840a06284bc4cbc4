"""Sub-commands ``nanotoll gateway run|reload|status`` and ``nanotoll settle now``.

The top-level parser (nanotoll.cli) calls :func:`add_gateway_commands`. The provider key
is never an argument: the config names an environment variable or a keystore.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

LEDGER_HELP = ("sqlite:///path or postgresql://user[:password]@host:port/db; overrides "
               "[ledger] url")


def _config(args: argparse.Namespace) -> Any:
    import dataclasses
    from pathlib import Path

    from .config import ConfigError, load_config, normalise_ledger_url

    try:
        config = load_config(args.config)
        if getattr(args, "ledger", None):
            # Relative sqlite paths resolve against the working directory here.
            url = normalise_ledger_url(args.ledger, Path.cwd())
            config = dataclasses.replace(config, ledger_url=url)
        return config
    except ConfigError as exc:
        print(f"nanotoll: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _guard(run: Any) -> int:
    from ..chain.errors import ChainError
    from ..ledger import LedgerError
    from .config import ConfigError
    from .ingress import IngressError

    try:
        return int(run() or 0)
    except (ConfigError, LedgerError, ChainError, IngressError) as exc:
        print(f"nanotoll: {exc}", file=sys.stderr)
        return 2


def _cmd_run(args: argparse.Namespace) -> int:
    from .commands import run_gateway

    config = _config(args)
    return _guard(lambda: run_gateway(config))


def _cmd_status(args: argparse.Namespace) -> int:
    from .commands import status

    config = _config(args)

    def show() -> int:
        print(json.dumps(status(config), indent=None if args.json else 2, sort_keys=True))
        return 0

    return _guard(show)


def _cmd_reload(args: argparse.Namespace) -> int:
    from .config import ConfigError
    from .reload import check_config, find_gateways, signal_reload
    from .serve import ProductLoadError

    try:
        check_config(args.config)
    except ProductLoadError as exc:
        print(f"nanotoll: {args.config}: refused, nothing reloaded: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # its message names the file and the key
        print(f"nanotoll: refused, nothing reloaded: {exc}", file=sys.stderr)
        return 2
    pids = [args.pid] if args.pid else find_gateways(args.config)
    signalled = signal_reload(pids)
    print(json.dumps({"config": args.config, "signalled": signalled}))
    if not signalled:
        print(f"nanotoll: no gateway runs on {args.config}", file=sys.stderr)
        return 1
    return 0


def _cmd_settle_now(args: argparse.Namespace) -> int:
    from .commands import settle_now

    config = _config(args)

    def settle() -> int:
        summary = settle_now(config, timeout=args.timeout)
        print(json.dumps(summary.as_dict(), sort_keys=True))
        return 1 if summary.pending else 0

    return _guard(settle)


def add_gateway_commands(commands: Any) -> None:
    """Register ``gateway`` and ``settle`` on the top-level sub-parsers."""
    gateway = commands.add_parser("gateway", help="the provider's settlement gateway")
    sub = gateway.add_subparsers(dest="gateway_command", required=True)
    run = sub.add_parser("run", help="serve purchases until SIGINT/SIGTERM")
    run.add_argument("--config", default="gateway.toml", help="TOML config (gateway.toml)")
    run.add_argument("--ledger", metavar="URL", help=LEDGER_HELP)
    run.set_defaults(func=_cmd_run)
    reload = sub.add_parser("reload", help="check the config, then have the gateways "
                            "running on it sell its products and prices (SIGHUP)")
    reload.add_argument("--config", default="gateway.toml")
    reload.add_argument("--pid", type=int, help="signal this process only")
    reload.set_defaults(func=_cmd_reload)
    stat = sub.add_parser("status", help="ledger totals and open settlements as JSON")
    stat.add_argument("--config", default="gateway.toml")
    stat.add_argument("--ledger", metavar="URL", help=LEDGER_HELP)
    stat.add_argument("--json", action="store_true", help="one line")
    stat.set_defaults(func=_cmd_status)

    settle = commands.add_parser("settle", help="redeem accepted vouchers on-chain")
    settle_sub = settle.add_subparsers(dest="settle_command", required=True)
    now = settle_sub.add_parser("now", help="redeem everything accepted and wait")
    now.add_argument("--config", default="gateway.toml")
    now.add_argument("--ledger", metavar="URL", help=LEDGER_HELP)
    now.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (120)")
    now.set_defaults(func=_cmd_settle_now)
