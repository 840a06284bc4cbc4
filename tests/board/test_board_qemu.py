"""The emulated board end to end: QEMU mps2-an385 with the boards/qemu_mps2 firmware,
flashed with `nanotoll device flash`, provisioned with `nanotoll device provision`
(key made on the board, channel opened and funded on anvil), paying for weather through
its UART link -> bridge -> mosquitto -> the gateway process, settled on-chain.

Every step runs the real CLI as a subprocess, as a user would. Run alone with
`make test-board`.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nanotoll.device.boards import ARCH_CODES, BOARDS
from nanotoll.device.repl import BoardInfo, DeviceError
from support import paths as _paths
from support.tools import require

ROOT = _paths.ROOT
PRICE = 1500  # weather, gateway_toml's default catalog
DEPOSIT = 2_000_000

needs_qemu = pytest.mark.usefixtures("qemu_board")


@pytest.fixture
def qemu_board() -> str:
    return require("qemu-board")


def nanotoll(*args: str, env: dict[str, str] | None = None,
             timeout: float = 240) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "gateway"), environ.get("PYTHONPATH")) if p)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "nanotoll.cli", *args], env=environ,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


# ------------------------------------------------------------- no board needed --

def _info(platform: str = "qemu", mpy: int = 6 | (3 << 8) | (6 << 10),
          nanotoll_board: str | None = "nanotoll-qemu-mps2") -> BoardInfo:
    return BoardInfo({"platform": platform, "version": [1, 25, 0], "mpy": mpy,
                      "machine": "test", "build": "", "fs": [4096, 128, 100],
                      "nanotoll_board": nanotoll_board})


def test_board_check_refuses_wrong_platform_version_and_arch() -> None:
    _info().check(BOARDS["qemu_mps2"])
    with pytest.raises(DeviceError, match="not the esp32 board"):
        _info().check(BOARDS["esp32"])
    with pytest.raises(DeviceError, match="wrong MicroPython version"):
        _info(mpy=6 | (2 << 8) | (6 << 10)).check(BOARDS["qemu_mps2"])  # 1.22: .mpy 6.2
    with pytest.raises(DeviceError, match="wrong architecture"):
        # an esp32 build of MicroPython that reports the older xtensa arch
        _info("esp32", 6 | (3 << 8) | (ARCH_CODES["xtensa"] << 10)).check(BOARDS["esp32"])
    with pytest.raises(DeviceError, match="wrong architecture"):
        # an armv6m (RP2040) board cannot run code compiled for armv7m
        _info(mpy=6 | (3 << 8) | (ARCH_CODES["armv6m"] << 10)).check(BOARDS["qemu_mps2"])
    with pytest.raises(DeviceError, match="stock qemu firmware"):
        _info(nanotoll_board=None).check(BOARDS["qemu_mps2"])
    _info("rp2", 6 | (3 << 8) | (ARCH_CODES["armv6m"] << 10)).check(BOARDS["rp2040_picow"])


def test_no_board_at_the_port() -> None:
    result = nanotoll("device", "flash", "--port", "/dev/ttyNANOTOLL9", "--board", "esp32",
                      timeout=60)
    assert result.returncode == 2
    assert "no board at /dev/ttyNANOTOLL9" in result.stderr


def test_bridge_splits_mqtt_packets() -> None:
    from nanotoll.device.bridge import split_packets

    buffer = bytearray(b"\x10\x02ab\x30\x81\x01" + b"x" * 129 + b"\xc0")
    packets = split_packets(buffer)
    assert packets == [b"\x10\x02ab", b"\x30\x81\x01" + b"x" * 129]
    assert buffer == bytearray(b"\xc0")  # PINGREQ not complete yet
    buffer += b"\x00"
    assert split_packets(buffer) == [b"\xc0\x00"] and not buffer


def test_bridge_opens_a_broker_connection_per_connect_and_survives_a_drop() -> None:
    import socket

    from nanotoll.device.bridge import UartBridge

    def wait_for(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 5
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.01)

    def read(sock: socket.socket, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data

    connect, publish = b"\x10\x02ab", b"\x30\x03xyz"
    with socket.create_server(("127.0.0.1", 0)) as broker:
        broker.settimeout(5)
        with UartBridge("127.0.0.1", broker.getsockname()[1]) as bridge, \
                socket.create_connection(("127.0.0.1", bridge.port)) as uart:
            uart.settimeout(5)
            bridge.wait_for_board()
            uart.sendall(publish)  # no CONNECT yet: dropped, no broker connection
            wait_for(lambda: bridge.stats.dropped_bytes == len(publish), "not dropped")
            uart.sendall(connect + publish)
            first, _ = broker.accept()
            with first:
                assert read(first, len(connect + publish)) == connect + publish
                first.sendall(b"\x20\x02\x00\x00")  # CONNACK
                assert read(uart, 4) == b"\x20\x02\x00\x00"
                bridge.drop_broker()  # the broker side dies ...
                first.settimeout(5)
                assert first.recv(16) == b""
            uart.sendall(publish)  # ... the board's packets go nowhere until CONNECT
            uart.sendall(connect)
            second, _ = broker.accept()
            with second:
                assert read(second, len(connect)) == connect
        assert bridge.stats.broker_connections == 2 and bridge.stats.uart_connections == 1
        assert bridge.stats.dropped_bytes == 2 * len(publish)
        assert bridge.stats.bytes_to_broker == 2 * len(connect) + len(publish)
        assert bridge.stats.bytes_to_board == 4
        with pytest.raises(ConnectionRefusedError):  # stopped: its port is closed
            socket.create_connection(("127.0.0.1", bridge.port), timeout=5).close()


# ------------------------------------------------------------ the whole board --

@dataclass
class Stack:
    anvil: object
    escrow: object
    owner: object
    provider: object
    broker: object
    gateway: object
    gateway_config: Path
    board: object
    workdir: Path

    @property
    def port(self) -> str:
        return str(self.board.pty)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require("qemu-board")
    import contextlib

    from eth_account import Account
    from nanotoll.broker.site import gateway_username
    from nanotoll.chain.client import EscrowClient
    from nanotoll.device.sim import BoardSim
    from nanotoll.servers.anvil import Anvil
    from nanotoll.servers.gateway import GatewayProcess, gateway_toml
    from nanotoll.servers.mosquitto import Mosquitto

    workdir = tmp_path_factory.mktemp("board")
    with contextlib.ExitStack() as es:
        anvil = es.enter_context(Anvil(workdir=workdir / "anvil"))
        deployer, owner = anvil.new_account(), anvil.new_account()
        provider = Account.create()
        anvil.set_balance(provider.address, 10 * 10**18)
        escrow = EscrowClient.deploy(anvil.w3, deployer)
        escrow.mint(deployer, owner.address, 3 * DEPOSIT)
        # The secure broker: TLS, a client per party, ACLs. The board's UART bridge makes
        # the TLS connection for it; provisioning enrols the board with the broker.
        provider_hex = provider.address[2:].lower()
        broker = es.enter_context(Mosquitto(workdir=workdir / "broker", secure=True,
                                            providers=[provider_hex]))
        config = workdir / "gateway.toml"
        config.write_text(gateway_toml(
            mqtt_port=broker.port, rpc_url=anvil.rpc_url, escrow=escrow.address,
            chain_id=anvil.chain_id, ledger_path=workdir / "ledger.db",
            extra={"chain": {"poll_interval": 0.1}, "settlement": {"check_every": 3600},
                   "mqtt": {"ca_file": str(broker.ca_file),
                            "username": gateway_username(provider_hex),
                            "password_file": str(broker.site.gateway_password_file(
                                provider_hex))}}))
        gateway = es.enter_context(GatewayProcess(config, provider.key, workdir / "gateway"))
        board = es.enter_context(BoardSim(broker.host, broker.port, ca_file=broker.ca_file,
                                          log_path=workdir / "qemu.log"))
        yield Stack(anvil, escrow, owner, provider, broker, gateway, config, board, workdir)


def _provision_args(s: Stack, *extra: str) -> list[str]:
    return ["device", "provision", "--port", s.port, "--board", "qemu_mps2",
            "--rpc-url", s.anvil.rpc_url, "--escrow", s.escrow.address,  # type: ignore[attr-defined]
            "--token", s.escrow.token_address,  # type: ignore[attr-defined]
            "--provider", s.provider.address, "--deposit", str(DEPOSIT),  # type: ignore[attr-defined]
            "--max-unit-price", "5000",
            "--broker", f"{s.broker.host}:{s.broker.port}",  # type: ignore[attr-defined]
            "--broker-folder", str(s.broker.site.root),  # type: ignore[attr-defined]
            "--json", *extra]


def _has_broker_client(s: Stack, username: str) -> bool:
    from nanotoll.broker.clients import has_client

    with s.broker.admin() as admin:  # type: ignore[attr-defined]
        return has_client(admin, username)


def _owner_env(s: Stack) -> dict[str, str]:
    return {"NANOTOLL_OWNER_KEY": s.owner.key.hex()}  # type: ignore[attr-defined]


def _status(s: Stack) -> dict[str, object]:
    result = nanotoll("device", "status", "--port", s.port, "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _exec(s: Stack, code: str) -> str:
    from nanotoll.device.repl import Repl

    with Repl(s.port) as repl:
        return repl.exec(code)


@needs_qemu
@pytest.mark.e2e
def test_flash_copies_then_copies_nothing(stack: Stack) -> None:
    started = time.monotonic()
    first = nanotoll("device", "flash", "--port", stack.port, "--board", "qemu_mps2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "verified by sha256" in first.stdout and "soft reset" in first.stdout
    copied = int(first.stdout.split("flash: copied ")[1].split()[0])
    assert copied >= 18
    second = nanotoll("device", "flash", "--port", stack.port, "--board", "qemu_mps2")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to copy" in second.stdout and "[1/" not in second.stdout
    print(f"flash + re-flash: {time.monotonic() - started:.1f} s")


@needs_qemu
@pytest.mark.e2e
def test_full_filesystem_is_refused_and_nothing_half_written(stack: Stack) -> None:
    # A damaged module and a file system filled to the brim.
    # (One block per file: littlefs commits a file at close, all of it or nothing.)
    _exec(stack, "import os\nwith open('/lib/errors.mpy', 'wb') as f:\n    f.write(b'junk')\n"
                 "os.mkdir('/fill')\n_b = bytearray(4096)\n_i = 0\n"
                 "try:\n    while True:\n        with open('/fill/%d' % _i, 'wb') as f:\n"
                 "            f.write(_b)\n        _i += 1\nexcept OSError:\n    pass")
    result = nanotoll("device", "flash", "--port", stack.port, "--board", "qemu_mps2")
    assert result.returncode == 2
    assert "file system is full" in result.stderr and "Nothing was written" in result.stderr
    left = _exec(stack, "import os\nprint(open('/lib/errors.mpy','rb').read(), "
                        "[n for n in os.listdir('/lib') if n.endswith('tmp')])")
    assert left.strip() == "b'junk' []"
    _exec(stack, "import os\nfor _n in os.listdir('/fill'):\n    os.remove('/fill/' + _n)\n"
                 "os.rmdir('/fill')")
    again = nanotoll("device", "flash", "--port", stack.port, "--board", "qemu_mps2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[1/1] /lib/errors.mpy" in again.stdout


@needs_qemu
@pytest.mark.e2e
def test_a_broker_that_is_down_stops_provisioning_before_anything_is_done(
        stack: Stack) -> None:
    from nanotoll.servers.process import free_port

    port = free_port()
    result = nanotoll(*_provision_args(stack, "--broker", f"127.0.0.1:{port}"),
                      env=_owner_env(stack))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot enrol device" in result.stderr and f"127.0.0.1:{port}" in result.stderr
    # Nothing half-written on the board, no channel on the chain.
    left = _exec(stack, "import os\nprint(sorted(n for n in os.listdir('/') if n.startswith("
                        "('device.key', 'config.json', 'broker_ca'))))")
    assert left.strip() == "[]", left
    assert not stack.escrow.channel(1).exists  # type: ignore[attr-defined]


@needs_qemu
@pytest.mark.e2e
def test_provision_then_refuse_a_second_key(stack: Stack) -> None:
    result = nanotoll(*_provision_args(stack), env=_owner_env(stack))
    assert result.returncode == 0, result.stdout + result.stderr
    made = json.loads(result.stdout.strip().splitlines()[-1])
    channel = stack.escrow.channel(made["channel"])  # type: ignore[attr-defined]
    assert channel.signer.lower() == made["address"].lower()
    assert channel.deposit == DEPOSIT
    assert "the board made its key" in result.stdout
    # The key stays on the board: nothing the command printed holds it.
    key_hex = _exec(stack, "print(open('/device.key').read().strip())").strip()
    assert len(key_hex) == 64 and key_hex not in result.stdout + result.stderr
    # Its broker client: username = its address, a password nothing printed, the CA.
    board_broker = json.loads(_exec(stack, "import json\nprint(json.dumps(json.load("
                                           "open('/config.json'))['broker']))").strip())
    device_hex = made["address"][2:].lower()
    assert board_broker["username"] == device_hex and board_broker["ca"] == "/broker_ca.der"
    assert board_broker["password"] not in result.stdout + result.stderr
    assert _has_broker_client(stack, device_hex)
    ca = _exec(stack, "import binascii\n"
                      "print(binascii.hexlify(open('/broker_ca.der', 'rb').read()).decode())")
    assert bytes.fromhex(ca.strip()) == ssl.PEM_cert_to_DER_cert(
        stack.broker.ca_file.read_text())  # type: ignore[attr-defined]
    again = nanotoll(*_provision_args(stack), env=_owner_env(stack))
    assert again.returncode == 2 and "already has a key" in again.stderr
    assert _status(stack)["channel"] == made["channel"]


@needs_qemu
@pytest.mark.e2e
def test_main_starts_the_agent_at_boot_and_ctrl_c_stops_it(stack: Stack) -> None:
    from nanotoll.device.repl import Repl

    bridge = stack.board.bridge  # type: ignore[attr-defined]
    before = bridge.stats.broker_connections
    with Repl(stack.port) as repl:
        repl.soft_reset()  # as Ctrl-D at the prompt: boot.py, then main.py
    deadline = time.monotonic() + 60
    while bridge.stats.broker_connections == before:  # main.py's agent sent CONNECT
        assert time.monotonic() < deadline, "the agent did not come online after reset"
        time.sleep(0.2)
    # The agent runs forever; the next command interrupts it (Ctrl-C) and gets the REPL.
    assert _status(stack)["channel"]


@needs_qemu
@pytest.mark.e2e
def test_paid_purchases_settle_on_chain(stack: Stack) -> None:
    from nanotoll.gateway import load_config, settle_now

    started = time.monotonic()
    result = nanotoll("device", "buy", "--port", stack.port, "--product", "weather",
                      "--count", "3")
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line["ok"] for line in lines] == [True, True, True]
    assert [line["cumulative"] for line in lines] == [PRICE, 2 * PRICE, 3 * PRICE]
    bought = time.monotonic() - started
    state = _status(stack)
    assert state["spent"] == 3 * PRICE and state["cumulative"] == 3 * PRICE
    assert state["acked"] == 3 * PRICE and not state["pending"]
    text = nanotoll("device", "status", "--port", stack.port)
    assert "spent 4,500" in text.stdout and "cumulative 4,500" in text.stdout

    stack.gateway.stop()  # type: ignore[attr-defined]  # one owner of the provider key
    config = load_config(stack.gateway_config)
    settle_now(config, {"NANOTOLL_PROVIDER_KEY": stack.provider.key.hex()},  # type: ignore[attr-defined]
               timeout=120)
    channel = stack.escrow.channel(int(state["channel"]))  # type: ignore[attr-defined,call-overload]
    assert channel.paid == 3 * PRICE
    assert stack.escrow.balance_of(stack.provider.address) == 3 * PRICE  # type: ignore[attr-defined]
    print(f"3 purchases on the emulated board: {bought:.1f} s")


@needs_qemu
@pytest.mark.e2e
def test_rotate_makes_a_new_key_and_channel(stack: Stack) -> None:
    before = _status(stack)
    result = nanotoll(*_provision_args(stack, "--rotate"), env=_owner_env(stack))
    assert result.returncode == 0, result.stdout + result.stderr
    made = json.loads(result.stdout.strip().splitlines()[-1])
    assert made["channel"] != before["channel"] and made["address"] != before["device"]
    assert "stays open until its expiry" in result.stdout
    # The old key's broker client is gone; the new one's is there.
    old_hex, new_hex = str(before["device"])[2:].lower(), made["address"][2:].lower()
    assert f"broker client {old_hex} revoked" in result.stdout
    assert not _has_broker_client(stack, old_hex) and _has_broker_client(stack, new_hex)
    old = stack.escrow.channel(int(before["channel"]))  # type: ignore[attr-defined,call-overload]
    assert old.exists and not old.closed and old.paid == 3 * PRICE
    after = _status(stack)
    assert after["channel"] == made["channel"]
    assert not after["spent"] and not after["cumulative"]  # a fresh state record


@needs_qemu
@pytest.mark.e2e
def test_sim_board_prints_the_pty_and_stops_on_sigterm(tmp_path: Path) -> None:
    import signal

    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "gateway"), environ.get("PYTHONPATH")) if p)
    process = subprocess.Popen([sys.executable, "-m", "nanotoll.cli", "sim", "board"],
                               stdout=subprocess.PIPE, text=True, env=environ,
                               stdin=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("board: REPL on /dev/pts/"), first
        pty = first.split()[-1]
        assert os.path.exists(pty)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "stopping QEMU" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
