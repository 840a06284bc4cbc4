"""``fleet run --provider agent`` (issue 17): the fleet's provider registers as an
ERC-8004 agent on the fleet's chain and the fleet provisions its devices from what
discovery finds; a provider whose registration file names another escrow, or an agent
whose wallet points at another key's file, is refused before a channel is opened."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.tools import require

pytestmark = pytest.mark.e2e


def test_a_fleet_buys_from_the_provider_it_discovered(tmp_path: Path) -> None:
    # run as a user types it: no --run-dir, so under ./runs of the folder it is run from
    # (every server is then given paths relative to a folder it does not run in)
    result = subprocess.run(
        [sys.executable, "-m", "nanotoll.cli", "fleet", "run", "--devices", "4",
         "--rate", "0.5", "--duration", "4", "--provider", "agent"],
        capture_output=True, text=True, timeout=240, check=False, env=dict(os.environ),
        cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    (run_dir,) = (tmp_path / "runs").glob("fleet-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    identity = summary["identity"]
    assert re.fullmatch(r"eip155:31337:0x[0-9a-fA-F]{40}/1", identity["reference"]), identity
    assert re.fullmatch(r"mqtts://127\.0\.0\.1:[0-9]+", identity["broker"]), identity
    assert identity["catalog_seq"] >= 1
    # Discovery comes before the channels, which go to the wallet it found.
    assert output.index("provider discovered from") < output.index("channels opened")
    assert f"{identity['provider']}, broker" in output
    check = summary["check"]
    assert check["errors"] == 0 and check["double_charges"] == 0, check
    assert check["settled_equals_paid"] is True, check
    assert summary["purchases"]["ok"] > 0


@pytest.fixture
def provider_world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Anvil with two escrows and the registries, a broker, and a gateway selling for the
    first escrow with gateway 1's identity tables."""
    require("mosquitto")
    require("anvil")
    from eth_account import Account
    from nanotoll.chain.client import EscrowClient
    from nanotoll.fleet.identity import identity_tables
    from nanotoll.identity.registry import deploy_registries
    from nanotoll.servers.anvil import Anvil
    from nanotoll.servers.gateway import GatewayProcess, gateway_toml
    from nanotoll.servers.mosquitto import Mosquitto
    from nanotoll.servers.process import free_port

    with contextlib.ExitStack() as stack:
        chain = stack.enter_context(Anvil(workdir=tmp_path / "anvil"))
        deployer = chain.new_account()
        provider = Account.create()
        chain.set_balance(provider.address, 10 * 10**18)
        sold_for = EscrowClient.deploy(chain.w3, deployer)
        other = EscrowClient.deploy(chain.w3, deployer)
        registries = deploy_registries(chain.w3, deployer)
        broker = stack.enter_context(Mosquitto(workdir=tmp_path / "broker", secure=False))
        config = tmp_path / "gateway-1.toml"
        config.write_text(gateway_toml(
            mqtt_port=broker.port, rpc_url=chain.rpc_url, escrow=sold_for.address,
            chain_id=chain.chain_id, ledger_path=tmp_path / "ledger.db",
            extra=identity_tables(registries, free_port())))
        stack.enter_context(GatewayProcess(config, provider.key, tmp_path / "gw"))
        yield {"chain": chain, "w3": chain.w3, "provider": provider, "config": config,
               "escrow": sold_for.address, "other_escrow": other.address,
               "broker_port": broker.port}


def test_a_provider_for_another_escrow_or_wallet_is_refused(
        provider_world: dict[str, Any]) -> None:
    from eth_account import Account
    from nanotoll.fleet.identity import register_and_discover
    from nanotoll.fleet.options import FleetError

    world = provider_world
    with pytest.raises(FleetError, match=f"names escrow {world['escrow']}, not "
                                         f"{world['other_escrow']}"):
        register_and_discover(world["w3"], world["provider"], world["config"],
                              world["other_escrow"])
    # Another key registers the gateway's file as its own agent (2), its own key the
    # agentWallet: the file, made by the gateway's key, lists only the agents whose
    # wallet that key is.
    impostor = Account.create()
    world["chain"].set_balance(impostor.address, 10**18)
    with pytest.raises(FleetError, match=r"does not list agent eip155:\S+/2 in its "
                                         "registrations"):
        register_and_discover(world["w3"], impostor, world["config"], world["escrow"])
    # The same provider, checked against the escrow it sells for, is found.
    agent = register_and_discover(world["w3"], world["provider"], world["config"],
                                  world["escrow"])
    assert agent.provider == world["provider"].address
    assert (agent.broker_port, agent.broker_tls) == (world["broker_port"], False)
    assert agent.reference.endswith("/1")
