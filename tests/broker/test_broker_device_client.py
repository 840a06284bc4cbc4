"""The firmware's MQTT client (MicroPython unix port) against the secure broker: it
connects with its credentials, a refusal reads clearly on its console, and the broker's
ACLs hold for it as for any client. Over the broker's plain loopback listener (the
same credentials and ACLs: the plugin guards every listener); over TLS when the
MicroPython build has ``ssl``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from nanotoll.broker.clients import Credentials, add_device
from nanotoll.protocol import topics
from nanotoll.servers.mosquitto import Mosquitto
from support.agent_helpers import micropython, mp_env
from support.tools import require

PROVIDER = "aa" * 20
DEVICE = "11" * 20
OTHER = "22" * 20

SCRIPT = """
import sys, asyncio, json
from mqtt import MQTTClient, MQTTError
from tcp_link import TcpLink, broker_tls
with open(sys.argv[1]) as f:
    broker = json.load(f)
async def main():
    link = TcpLink(broker["host"], broker["port"], broker_tls(broker))
    c = MQTTClient(link, "nt-" + broker["username"], user=broker["username"],
                   password=broker["password"], timeout_ms=3000, backoff_max_ms=500)
    for topic in broker["subscribe"]:
        await c.subscribe(topic, 1, 3000)
    up = False
    try:
        await c.start(4000)
        up = True
    except MQTTError as e:
        print(json.dumps({"connect": False, "error": str(e), "last": str(c.last_error)}))
    if up:
        print(json.dumps({"connect": True}))
        await c.publish(broker["publish"], b"hello", 1)
        print(json.dumps({"published": broker["publish"]}))
    await c.stop()
asyncio.run(main())
"""


@pytest.fixture
def broker(tmp_path: Path) -> Mosquitto:
    require("mosquitto")
    with Mosquitto(workdir=tmp_path / "broker", secure=True, plain_port=True,
                   providers=[PROVIDER]) as running:
        yield running


def _run(tmp_path: Path, broker: dict[str, object]) -> list[dict[str, object]]:
    script = tmp_path / "client.py"
    script.write_text(SCRIPT)
    # In a file: this unix port aborts ("uncaught NLR") on a command-line argument of a
    # few hundred bytes.
    arguments = tmp_path / "broker.json"
    arguments.write_text(json.dumps(broker))
    done = subprocess.run([micropython(), str(script), str(arguments)], cwd=tmp_path,
                          env=mp_env(), capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout + done.stderr
    return lines


def _plain(broker: Mosquitto, credentials: Credentials, **extra: object) -> dict[str, object]:
    return {"host": broker.host, "port": broker.plain_port, "username": credentials.username,
            "password": credentials.password, "subscribe": [], "publish": "",
            **extra}


def test_the_device_connects_with_its_credentials_and_keeps_to_its_topics(
        broker: Mosquitto, tmp_path: Path) -> None:
    with broker.admin() as admin:
        mine = add_device(admin, PROVIDER, DEVICE)
        add_device(admin, PROVIDER, OTHER)
    lines = _run(tmp_path, _plain(
        broker, mine, subscribe=[topics.response_topic(PROVIDER, DEVICE),
                                 topics.response_topic(PROVIDER, OTHER)],
        publish=topics.request_topic(PROVIDER, DEVICE)))
    # The refused subscription fails each connection attempt, with a clear reason.
    assert lines[-1]["connect"] is False
    assert f"subscription refused: {topics.response_topic(PROVIDER, OTHER)}" in \
        str(lines[-1]["last"])

    lines = _run(tmp_path, _plain(broker, mine,
                                  subscribe=[topics.response_topic(PROVIDER, DEVICE)],
                                  publish=topics.request_topic(PROVIDER, DEVICE)))
    assert {"connect": True} in lines
    assert {"published": topics.request_topic(PROVIDER, DEVICE)} in lines


def test_a_wrong_password_reads_clearly_on_the_console(broker: Mosquitto,
                                                      tmp_path: Path) -> None:
    with broker.admin() as admin:
        add_device(admin, PROVIDER, DEVICE)
    lines = _run(tmp_path, _plain(broker, Credentials(DEVICE, "not-the-password")))
    assert lines[-1]["connect"] is False
    assert f"broker refused client nt-{DEVICE} (user {DEVICE})" in str(lines[-1]["last"])
    assert "not authorised" in str(lines[-1]["last"]) or \
        "bad user name or password" in str(lines[-1]["last"])


def test_a_broker_that_is_down_is_named(tmp_path: Path) -> None:
    from nanotoll.servers.process import free_port

    lines = _run(tmp_path, {"host": "127.0.0.1", "port": free_port(), "username": DEVICE,
                            "password": "x", "subscribe": [], "publish": ""})
    assert lines[-1]["connect"] is False and "not connected" in str(lines[-1]["error"])
