"""nanotoll's own Robot keywords for the device suites, the same under QEMU and Renode:
flash the board with `nanotoll device flash`'s code, provision it, start the payment
side (anvil, escrow, the secure mosquitto, the gateway process) and check settlement.
Everything talks to the broker over TLS with its own credentials: the gateway as the
provider's gateway client, the board (enrolled when provisioned) through its UART
bridge, which makes the TLS connection for it.

The board's REPL port is the emulated board's pty under QEMU (QemuRenode.py), or
${BOARD_PORT} under Renode (the pty the .resc file creates for the REPL's UART).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from robot.api import logger
from robot.libraries.BuiltIn import BuiltIn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gateway"))

import _shared  # noqa: E402

PURCHASE_SCRIPT = """# written by the Robot suite: purchases on the REPL
import json, asyncio, board, device, errors
def run(product, count):
    c = device.load_config('/config.json')
    agent = device.make_agent(c, board)
    async def go():
        await agent.start()
        try:
            for i in range(1, count + 1):
                p = {'lat': 52520008, 'lon': 13404954, 'alt': 120, 't': board.now() or 0}
                try:
                    await agent.buy(product, p)
                    print('PURCHASE', i, 'ok', agent.state.cumulative)
                except errors.AgentError as e:
                    print('PURCHASE', i, 'failed', errors.error_code(e), e)
        finally:
            await agent.stop()
    asyncio.run(go())
    print('PURCHASES DONE')
"""


class NanotollKeywords:
    ROBOT_LIBRARY_SCOPE = "GLOBAL"

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None
        self.env: dict[str, Any] = {}

    # the board's port ----------------------------------------------------------

    def board_port(self) -> str:
        port = _shared.board.get("port") or BuiltIn().get_variable_value("${BOARD_PORT}")
        if not port:
            raise AssertionError("no board port: Start Emulation first (QEMU), or set "
                                 "${BOARD_PORT} (Renode: the REPL UART's pty)")
        return str(port)

    def _release_terminal(self) -> None:
        terminal = _shared.board.get("terminal")
        if terminal is not None:
            terminal.close()  # mpremote needs the port to itself

    # flashing and provisioning -----------------------------------------------------

    def flash_nanotoll_firmware(self, board: str = "qemu_mps2") -> str:
        from nanotoll.device.boards import board_spec
        from nanotoll.device.flash import flash_port

        self._release_terminal()
        lines: list[str] = []

        def say(message: str) -> None:
            lines.append(message)
            logger.info(message)

        flash_port(self.board_port(), board_spec(board), say)
        return "\n".join(lines)

    def start_payment_stack(self, deposit: int = 2_000_000) -> None:
        """anvil, the escrow and its token, mosquitto and the gateway process."""
        from eth_account import Account
        from nanotoll.broker.site import gateway_username
        from nanotoll.chain.client import EscrowClient
        from nanotoll.servers.anvil import Anvil
        from nanotoll.servers.gateway import GatewayProcess, gateway_toml
        from nanotoll.servers.mosquitto import Mosquitto

        if _shared.board.get("sim") is not None:
            raise AssertionError("Start Payment Stack before Start Emulation: the board's "
                                 "UART bridge takes the broker and its CA when it starts")
        stack = contextlib.ExitStack()
        self._stack = stack
        anvil = stack.enter_context(Anvil())
        deployer, owner = anvil.new_account(), anvil.new_account()
        provider = Account.create()
        anvil.set_balance(provider.address, 10 * 10**18)
        escrow = EscrowClient.deploy(anvil.w3, deployer)
        escrow.mint(deployer, owner.address, 2 * int(deposit))
        # The secure broker, as an operator runs it: TLS, a client per party, ACLs. The
        # gateway logs in as the provider's gateway client; Provision Board enrols the
        # board, and its UART bridge makes the TLS connection for it (a modem's offload).
        provider_hex = provider.address[2:].lower()
        broker = stack.enter_context(Mosquitto(secure=True, providers=[provider_hex]))
        assert broker.site is not None
        workdir = broker.workdir
        config = workdir / "gateway.toml"
        config.write_text(gateway_toml(
            mqtt_port=broker.port, rpc_url=anvil.rpc_url, escrow=escrow.address,
            chain_id=anvil.chain_id, ledger_path=workdir / "ledger.db",
            extra={"chain": {"poll_interval": 0.1}, "settlement": {"check_every": 3600},
                   "mqtt": {"ca_file": str(broker.ca_file),
                            "username": gateway_username(provider_hex),
                            "password_file": str(
                                broker.site.gateway_password_file(provider_hex))}}))
        gateway = stack.enter_context(GatewayProcess(config, provider.key))
        self.env = {"anvil": anvil, "escrow": escrow, "owner": owner, "provider": provider,
                    "broker": broker, "gateway": gateway, "config": config,
                    "deposit": int(deposit)}
        _shared.board["broker"] = (broker.host, broker.port, broker.ca_file)
        logger.info(f"payment stack: anvil {anvil.rpc_url}, mosquitto {broker.port} (TLS, "
                    f"CA {broker.ca_file}), escrow {escrow.address}")

    def stop_payment_stack(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        _shared.board["broker"] = None

    def provision_board(self, board: str = "qemu_mps2") -> int:
        """Key made on the board, channel opened and funded, config written; the channel."""
        from nanotoll.broker.enrol import BrokerEnrolment
        from nanotoll.device.boards import board_spec
        from nanotoll.device.provision import ProvisionRequest, provision
        from nanotoll.device.repl import Repl

        self._release_terminal()
        env = self.env
        broker = env["broker"]
        # the board gets a broker client of its own and the broker's CA
        request = ProvisionRequest(
            rpc_url=env["anvil"].rpc_url, escrow=env["escrow"].address,
            token=env["escrow"].token_address, provider=env["provider"].address,
            deposit=env["deposit"], broker_host=broker.host, broker_port=broker.port,
            max_unit_price=5000, broker=BrokerEnrolment(broker.site, broker.host, broker.port))
        with Repl(self.board_port()) as repl:
            result = provision(repl, board_spec(board), request, env["owner"], logger.info)
            repl.write_file("/nt_buy.py", PURCHASE_SCRIPT.encode())
        env["channel"] = result.channel
        return result.channel

    def settle_and_check_paid(self, amount: int) -> None:
        """Stop the gateway, redeem what it accepted, and compare with the chain."""
        from nanotoll.gateway import load_config, settle_now

        env = self.env
        env["gateway"].stop()
        settle_now(load_config(env["config"]),
                   {"NANOTOLL_PROVIDER_KEY": env["provider"].key.hex()}, timeout=120)
        paid = env["escrow"].channel(env["channel"]).paid
        if paid != int(amount):
            raise AssertionError(f"the chain settled {paid}, expected {amount}")
        logger.info(f"channel {env['channel']}: {paid} units settled on-chain")

    # host-side reference values --------------------------------------------------

    def host_voucher_hex(self, key_hex: str, chain_id: int, contract_hex: str, channel: int,
                         amount: int) -> str:
        """The 76 packed voucher bytes as the host's reference code signs them (hex)."""
        from nanotoll.protocol.eip712 import domain_separator
        from nanotoll.protocol.voucher import sign

        separator = domain_separator(int(chain_id), bytes.fromhex(contract_hex))
        return sign(bytes.fromhex(key_hex), separator, int(channel), int(amount)).pack().hex()
