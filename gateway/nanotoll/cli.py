"""The ``nanotoll`` command: demo, gateway, settlement, devices, benchmarks.

Sub-commands import their modules lazily, so ``nanotoll --help`` stays fast and one
part's missing dependency does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

# bench name -> (module, function); each function returns one flat dict of figures.
BENCHES: dict[str, tuple[str, str]] = {
    "device": ("nanotoll.bench.device", "run_device_bench"),
    "agent": ("nanotoll.bench.agent", "run_agent_bench"),
    "gas": ("nanotoll.bench.gas", "run_gas_bench"),
    "gateway": ("nanotoll.bench.gateway", "run_gateway_bench"),
    "fleet": ("nanotoll.bench.fleet", "run_fleet_bench"),
    "fuzz": ("nanotoll.bench.fuzz", "run_fuzz_bench"),
    "chaos": ("nanotoll.bench.chaos", "run_chaos_bench"),
    "policy": ("nanotoll.bench.policy", "run_policy_bench"),
    "wake": ("nanotoll.bench.wake", "run_wake_bench"),
}


class CLIError(Exception):
    """An error the user can fix; printed without a traceback."""


def _load(module: str, function: str) -> Callable[..., Any]:
    try:
        return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        raise CLIError(f"{module}.{function} is not available: {exc}") from exc


def _cmd_demo(args: argparse.Namespace) -> int:
    from nanotoll.demo import run_demo

    return run_demo(purchases=args.purchases, workdir=args.workdir,
                    broker_port=args.broker_port, rpc_port=args.rpc_port)


def _bench_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Keyword arguments per bench from the command line, checked before any bench runs."""
    options: dict[str, dict[str, Any]] = {}
    if args.gateways is not None:
        if args.which not in ("gateway", "all"):
            raise CLIError(f"--gateways is an option of the gateway bench, not of {args.which}")
        check = _load("nanotoll.bench.gateway", "check_gateways")
        try:
            options["gateway"] = {"gateways": check(args.gateways)}
        except ValueError as exc:
            raise CLIError(str(exc)) from exc
    fuzz: dict[str, Any] = {key: value for key, value in
                            (("runs", args.runs), ("seconds", args.seconds)) if value is not None}
    if args.targets is not None:
        fuzz["targets"] = [name for name in args.targets.split(",") if name]
    if fuzz:
        if args.which not in ("fuzz", "all"):
            raise CLIError(f"--runs, --seconds and --targets are options of the fuzz bench, "
                           f"not of {args.which}")
        if fuzz.get("runs", 1) < 1 or fuzz.get("seconds", 1) <= 0:
            raise CLIError("--runs and --seconds must be positive")
        if "targets" in fuzz:
            known: tuple[str, ...] = importlib.import_module("nanotoll.bench.fuzz").TARGETS
            unknown = sorted(set(fuzz["targets"]) - set(known)) or ([] if fuzz["targets"]
                                                                   else ["(none)"])
            if unknown:
                raise CLIError(f"--targets: unknown {', '.join(unknown)}; "
                               f"known: {', '.join(known)}")
        options["fuzz"] = fuzz
    return options


def _cmd_bench(args: argparse.Namespace) -> int:
    names = list(BENCHES) if args.which == "all" else [args.which]
    options = _bench_options(args)
    combined: dict[str, Any] = {}
    failed = []
    for name in names:
        module, function = BENCHES[name]
        try:
            figures = _load(module, function)(**options.get(name, {}))
        except CLIError as exc:
            if args.which != "all":
                raise
            print(f"bench {name}: skipped, {exc}", file=sys.stderr)
            failed.append(name)
            continue
        if args.json:
            print(json.dumps(figures, sort_keys=True), flush=True)
        else:
            for key, value in sorted(figures.items()):
                print(f"{name:8} {key:32} {value}")
        combined.update({f"{name}.{key}": value for key, value in figures.items()})
    if args.which == "all" and args.json:
        print(json.dumps(combined, sort_keys=True))
    return 1 if failed and args.which != "all" else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nanotoll", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="one device buys weather through every real part")
    demo.add_argument("--purchases", type=int, default=20, help="how many purchases (20)")
    demo.add_argument("--workdir", default=None, help="keep logs and state here")
    demo.add_argument("--broker-port", type=int, default=None, help="mosquitto port (free one)")
    demo.add_argument("--rpc-port", type=int, default=None, help="anvil port (a free one)")
    demo.set_defaults(func=_cmd_demo)

    bench = commands.add_parser("bench", help="benchmarks; the last stdout line is JSON")
    bench.add_argument("which", choices=[*BENCHES, "all"])
    bench.add_argument("--json", action="store_true", help="print JSON lines only")
    bench.add_argument("--gateways", type=int, default=None, metavar="N",
                       help="gateway bench: N gateway processes against N echo processes "
                            "(1; at most 16)")
    bench.add_argument("--runs", type=int, default=None, metavar="N",
                       help="fuzz bench: executions per target (1,000,000)")
    bench.add_argument("--seconds", type=float, default=None, metavar="S",
                       help="fuzz bench: at most S seconds per target")
    bench.add_argument("--targets", default=None, metavar="A,B",
                       help="fuzz bench: only these targets, comma-separated (all)")
    bench.set_defaults(func=_cmd_bench)

    for module, hook in (
        ("nanotoll.gateway.cli", "add_gateway_commands"),
        ("nanotoll.device.cli", "add_device_commands"),
        ("nanotoll.fleet.cli", "add_fleet_commands"),
        ("nanotoll.broker.cli", "add_broker_commands"),
        ("nanotoll.owner.cli", "add_channel_commands"),
        ("nanotoll.identity.cli", "add_provider_commands"),
    ):
        # A part that is not in this tree is left out; one that is there but fails to
        # import is a bug and must be loud, so only absence is checked here.
        if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None:
            continue
        if importlib.util.find_spec(module) is None:
            continue
        getattr(importlib.import_module(module), hook)(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"nanotoll: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nanotoll: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
