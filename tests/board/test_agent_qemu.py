"""The payment agent on the emulated 32-bit board (QEMU mps2-an385, Cortex-M3).

The firmware goes to the board as .mpy files; its MQTT link is UART1 (the same
mqtt.py code path as TCP, through StreamLink), carried by the host's UART bridge
(nanotoll.device.bridge) to a real mosquitto and a provider on the CPython reference.
The broker is the secure one: the bridge makes the TLS connection for the board, as a
cellular modem with TLS offload does, and the board logs in with its own credentials;
the provider connects with TLS as its gateway client.
"""

from __future__ import annotations

import time

import pytest
from nanotoll.bench.agent import AgentBoard, run_console, stage
from nanotoll.device.bridge import UartBridge
from support.agent_helpers import (
    CHAIN_ID,
    DEVICE_KEY,
    ESCROW,
    POLICY,
    PROVIDER_KEY,
    FakeGateway,
    addr_hex,
)
from support.secure_broker import secure_broker
from support.tools import require

PRICE = 1500


@pytest.fixture
def board_setup(tmp_path):
    require("qemu")
    with secure_broker(tmp_path / "broker") as (broker, login):
        config = {
            "key": DEVICE_KEY.hex(), "chain_id": CHAIN_ID, "escrow": "0x" + ESCROW.hex(),
            "channel": 1, "provider": "0x" + addr_hex(PROVIDER_KEY), "policy": POLICY,
            "state_dir": "/ram/state", "keepalive": 5, "timeout_ms": 20000,
            "resend_ms": 3000, "clock": int(time.time()),
            "broker": {"username": login.username, "password": login.password},
        }
        stage(tmp_path / "stage", config)
        with FakeGateway.on_secure_broker(broker) as gateway, \
                UartBridge(broker.host, broker.port, ca_file=str(broker.ca_file)) as bridge, \
                AgentBoard(bridge.port) as board:
            board.deploy_folder(tmp_path / "stage")
            board.import_modules(tmp_path / "stage")
            yield board, gateway, bridge


def test_purchases_over_uart_on_the_emulated_board(board_setup) -> None:
    board, gateway, bridge = board_setup
    lines = run_console(board, ["--config", "config.json", "--buy", "weather", "--count", "3"])
    rows = [x for x in lines if "i" in x]
    assert [x["ok"] for x in rows] == [True] * 3, lines
    assert all(x["receipt_verified"] for x in rows)
    assert lines[-1]["cumulative"] == 3 * PRICE == gateway.book.charged
    # the state record survived on the board's RAM file system between runs
    lines = run_console(board, ["--config", "config.json", "--buy", "weather", "--count", "1"])
    assert lines[-1]["cumulative"] == 4 * PRICE == gateway.book.charged


def test_emulated_board_reconnects_over_the_same_serial_line(board_setup) -> None:
    board, gateway, bridge = board_setup
    gateway.drop_first = 1  # the first request goes unanswered ...
    import threading

    def cut() -> None:
        while not gateway.received:
            time.sleep(0.02)
        bridge.drop_broker()  # ... and the broker side of the link dies under it

    thread = threading.Thread(target=cut, daemon=True)
    thread.start()
    lines = run_console(board, ["--config", "config.json", "--buy", "weather", "--count", "2"])
    thread.join(5)
    rows = [x for x in lines if "i" in x]
    assert [x["ok"] for x in rows] == [True, True], lines
    assert bridge.stats.broker_connections >= 2 and lines[-1]["mqtt_connects"] >= 2
    assert gateway.book.charged == 2 * PRICE and gateway.book.accepted == 2
