"""firmware/mqtt.py under the real MicroPython unix port against a real mosquitto."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
from support.agent_helpers import micropython, mp_env, run_mp

CLIENT = """
import sys, asyncio, json
from mqtt import MQTTClient
from tcp_link import TcpLink
PORT = int(sys.argv[1])
def out(**kw):
    print(json.dumps(kw))
def make(cid, **kw):
    return MQTTClient(TcpLink("127.0.0.1", PORT), cid, **kw)
"""


def paho_client(port: int, cid: str, clean: bool = True) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid,
                         protocol=paho.MQTTv311, clean_session=clean)
    client.connect("127.0.0.1", port, keepalive=10)
    return client


def collect(port: int, topic: str, cid: str = "watcher", clean: bool = True):
    got: list[tuple[str, bytes, bool]] = []
    ready = threading.Event()
    client = paho_client(port, cid, clean)

    def on_connect(c, userdata, flags, reason, props):
        c.subscribe(topic, qos=1)

    def on_subscribe(c, userdata, mid, reasons, props):
        ready.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload, m.retain))
    client.loop_start()
    assert ready.wait(10)
    return client, got


def stop(client: paho.Client) -> None:
    client.loop_stop()
    client.disconnect()


@contextlib.contextmanager
def client_script(path: Path, script: str, port: int) -> Iterator[subprocess.Popen[str]]:
    """``script`` (CLIENT and a main) written to ``path`` and run under MicroPython against
    the broker on ``port``, its JSON lines on stdout; killed on the way out if it runs."""
    path.write_text(script)
    proc = subprocess.Popen([micropython(), str(path), str(port)], cwd=path.parent,
                            env=mp_env(), stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_publish_subscribe_roundtrip_and_keepalive(mosquitto, tmp_path: Path) -> None:
    script = CLIENT + """
async def main():
    c = make("dev-a", keepalive=2)
    await c.subscribe("t/in", 1)
    await c.start()
    out(session=c.session_present)
    for i in range(3):
        await c.publish("t/in", b"m%d" % i, qos=1)
        topic, payload = await c.inbox.get(3000)
        out(topic=topic, payload=payload.decode())
    await c.publish("t/q0", b"zero", qos=0)
    await asyncio.sleep(5)      # idle for 2.5 keepalive periods: pings keep it up
    out(connected=c.isconnected(), connects=c.connects)
    await c.stop()
asyncio.run(main())
"""
    watcher, got = collect(mosquitto.port, "t/#")
    try:
        lines = [json.loads(x) for x in run_mp(script, tmp_path, args=(str(mosquitto.port),))
                 .splitlines()]
    finally:
        stop(watcher)
    assert lines[0] == {"session": False}
    assert [x["payload"] for x in lines[1:4]] == ["m0", "m1", "m2"]
    assert lines[4] == {"connected": True, "connects": 1}
    assert ("t/q0", b"zero", False) in got


def test_persistent_session_gets_messages_sent_while_offline(mosquitto, tmp_path: Path) -> None:
    first = CLIENT + """
async def main():
    c = make("dev-b")
    await c.subscribe("t/persist", 1)
    await c.start()
    out(session=c.session_present)
    await c.stop()
asyncio.run(main())
"""
    second = CLIENT + """
async def main():
    c = make("dev-b")
    await c.start()
    got = []
    for i in range(5):
        topic, payload = await c.inbox.get(3000)
        got.append(payload.decode())
    out(session=c.session_present, got=got)
    await c.stop()
asyncio.run(main())
"""
    assert json.loads(run_mp(first, tmp_path, args=(str(mosquitto.port),))) == {"session": False}
    pub = paho_client(mosquitto.port, "pub")
    pub.loop_start()
    for i in range(5):
        pub.publish("t/persist", f"p{i}", qos=1).wait_for_publish(5)
    stop(pub)
    result = json.loads(run_mp(second, tmp_path, args=(str(mosquitto.port),)))
    assert result == {"session": True, "got": ["p0", "p1", "p2", "p3", "p4"]}


def test_last_will_on_abrupt_loss(mosquitto, tmp_path: Path) -> None:
    script = CLIENT + """
async def main():
    c = make("dev-c", keepalive=5, will=("t/status/dev-c", b"offline", True, 1))
    await c.start()
    await c.publish("t/status/dev-c", b"online", retain=True)
    out(up=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""
    watcher, got = collect(mosquitto.port, "t/status/#")
    try:
        with client_script(tmp_path / "will.py", script, mosquitto.port) as proc:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline()) == {"up": True}
            proc.kill()  # power cut: no DISCONNECT, the broker publishes the will
            proc.wait(5)
            deadline = time.monotonic() + 10
            while (time.monotonic() < deadline
                   and ("t/status/dev-c", b"offline", False) not in got):
                time.sleep(0.05)
    finally:
        stop(watcher)
    assert ("t/status/dev-c", b"online", False) in got
    assert ("t/status/dev-c", b"offline", False) in got


def test_qos1_survives_broker_restart(mosquitto, tmp_path: Path) -> None:
    """Messages published across a broker restart are all acknowledged and delivered;
    the ones caught in the outage are re-sent under their packet id with DUP set."""
    script = CLIENT + """
async def main():
    # backoff above the watcher's reconnect delay: mosquitto drops QoS 1 messages for a
    # restored persistent session until that client is back, which is not ours to test
    c = make("dev-d", keepalive=5, response_ms=1000, backoff_min_ms=700, backoff_max_ms=1400)
    await c.start()
    for i in range(16):
        pid = await c.publish("t/qos1", b"%d" % i, qos=1, timeout_ms=30000)
        out(acked=i, pid=pid, connects=c.connects)
        # a pause after message 4, while the test stops the broker: messages 5.. go
        # into a dead link and wait for the new one
        await asyncio.sleep_ms(600 if i == 4 else 150)
    out(done=True, connects=c.connects, retransmits=c.retransmits)
    await c.stop()
asyncio.run(main())
"""
    watcher, got = collect(mosquitto.port, "t/qos1", cid="qos1-watcher", clean=False)
    watcher.reconnect_delay_set(0.1, 0.5)
    lines = []
    try:
        with client_script(tmp_path / "qos1.py", script, mosquitto.port) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = json.loads(raw)
                lines.append(line)
                if line.get("acked") == 4:
                    mosquitto.stop()
                    time.sleep(1.0)   # the device publishes into a dead link meanwhile
                    mosquitto.start()
                if line.get("done"):
                    break
            proc.wait(30)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len({p for _, p, _ in got}) < 16:
                time.sleep(0.05)
    finally:
        stop(watcher)
    done = lines[-1]
    assert done["done"] and done["connects"] >= 2
    assert [x["acked"] for x in lines[:-1]] == list(range(16))
    assert {int(p) for _, p, _ in got} == set(range(16))


def test_oversized_message_is_dropped_and_link_survives(mosquitto, tmp_path: Path) -> None:
    script = CLIENT + """
async def main():
    c = make("dev-e", max_packet=2048, inbox_size=4)
    await c.subscribe("t/big", 1)
    await c.start()
    out(ready=True)
    got = []
    while len(got) < 3:
        try:
            topic, payload = await c.inbox.get(5000)
        except Exception:
            break
        got.append(len(payload))
    out(got=got, oversized=c.oversized, connects=c.connects, dropped=c.inbox.dropped)
    await c.stop()
asyncio.run(main())
"""
    with client_script(tmp_path / "big.py", script, mosquitto.port) as proc:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        pub = paho_client(mosquitto.port, "bigpub")
        pub.loop_start()
        for payload in (b"a" * 10, b"b" * 50_000, b"c" * 20, b"d" * 30):
            pub.publish("t/big", payload, qos=1).wait_for_publish(5)
        stop(pub)
        result = json.loads(proc.stdout.readline())
        proc.wait(10)
    assert result["oversized"] == 1 and result["connects"] == 1
    assert result["got"] == [10, 20, 30]


def _listen() -> socket.socket:
    """A scripted broker's listening socket on a free loopback port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    return server


def read_packet(conn: socket.socket) -> tuple[int, bytes]:
    """(first byte, body) of the next MQTT packet a scripted broker receives."""
    first = conn.recv(1)[0]
    size, shift = 0, 0
    while True:
        b = conn.recv(1)[0]
        size |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    body = b""
    while len(body) < size:
        body += conn.recv(size - len(body))
    return first, body


def test_unacked_publish_is_resent_with_dup_under_same_packet_id(tmp_path: Path) -> None:
    """A broker that dies before PUBACK: after reconnecting the client re-sends the PUBLISH
    with DUP set and the original packet id (a scripted broker checks the bytes)."""
    server = _listen()
    port = server.getsockname()[1]
    seen: list[tuple[int, int, bytes]] = []  # (first byte, packet id, payload)

    def broker() -> None:
        for attempt in range(2):
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                first, body = read_packet(conn)
                assert first == 0x10 and body[7] & 0x02 == 0  # CONNECT, clean_session=0
                conn.sendall(bytes([0x20, 2, attempt, 0]))  # CONNACK, session present 2nd time
                first, body = read_packet(conn)
                n = body[0] << 8 | body[1]
                pid = body[2 + n] << 8 | body[3 + n]
                seen.append((first, pid, body[4 + n:]))
                if attempt == 1:
                    conn.sendall(bytes([0x40, 2, pid >> 8, pid & 0xFF]))  # PUBACK
                    first, body = read_packet(conn)  # DISCONNECT
                    seen.append((first, 0, b""))
        server.close()

    thread = threading.Thread(target=broker, daemon=True)
    thread.start()
    script = CLIENT + """
async def main():
    c = make("dev-f", keepalive=0, response_ms=60000, backoff_min_ms=50)
    await c.start()
    task = asyncio.create_task(c.publish("t/dup", b"payload", qos=1, timeout_ms=10000))
    await asyncio.sleep_ms(300)
    pid = await task
    out(pid=pid, connects=c.connects, retransmits=c.retransmits)
    await c.stop()
asyncio.run(main())
"""
    result = json.loads(run_mp(script, tmp_path, args=(str(port),)))
    thread.join(10)
    assert result["connects"] == 2 and result["retransmits"] == 1
    (first1, pid1, p1), (first2, pid2, p2), (last, _, _) = seen
    assert first1 == 0x32 and first2 == 0x3A  # QoS 1, then QoS 1 with DUP
    assert pid1 == pid2 == result["pid"] and p1 == p2 == b"payload"
    assert last == 0xE0


def _publish_packet(topic: bytes, pid: int, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + pid.to_bytes(2, "big") + payload
    size, head = len(body), bytearray([0x32])  # PUBLISH, QoS 1
    while True:
        head.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            return bytes(head) + body


def test_hostile_publish_framing_from_the_broker(tmp_path: Path) -> None:
    """A scripted broker's PUBLISHes, read in parts: an oversized one with a topic longer
    than any kept head is skipped and still acknowledged under its own packet id, a good
    one is delivered, and one whose topic length passes its remaining length takes the
    link down (then the client reconnects) instead of reading into the next packet."""
    server = _listen()
    port = server.getsockname()[1]
    acks: list[bytes] = []

    def scripted() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            assert read_packet(conn)[0] == 0x10  # CONNECT
            conn.sendall(bytes([0x20, 2, 0, 0]))  # CONNACK
            conn.sendall(_publish_packet(b"t/" + b"x" * 998, 0x1234, b"p" * 3000))
            first, body = read_packet(conn)
            acks.append(bytes([first]) + body)
            conn.sendall(_publish_packet(b"t/ok", 0x0008, b"fine"))
            first, body = read_packet(conn)
            acks.append(bytes([first]) + body)
            # topic length 200 in a remaining length of 8
            conn.sendall(bytes([0x32, 8, 0, 200]) + b"abcdef")
            # the client closes the link (a reset: it left bytes unread)
            with contextlib.suppress(ConnectionResetError):
                assert conn.recv(1) == b""
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            assert read_packet(conn)[0] == 0x10
            conn.sendall(bytes([0x20, 2, 1, 0]))
            acks.append(bytes([read_packet(conn)[0]]))  # DISCONNECT
        server.close()

    thread = threading.Thread(target=scripted, daemon=True)
    thread.start()
    script = CLIENT + """
async def main():
    c = make("dev-g", keepalive=0, max_packet=2048, backoff_min_ms=50)
    await c.start()
    topic, payload = await c.inbox.get(10000)
    for _ in range(100):
        if c.connects == 2 and c.isconnected():
            break
        await asyncio.sleep_ms(50)
    out(topic=topic, payload=bytes(payload).decode(), oversized=c.oversized,
        connects=c.connects, error=repr(c.last_error), left=len(c.inbox))
    await c.stop()
asyncio.run(main())
"""
    result = json.loads(run_mp(script, tmp_path, args=(str(port),)))
    thread.join(10)
    assert result == {"topic": "t/ok", "payload": "fine", "oversized": 1, "connects": 2,
                      "error": "MQTTError('short PUBLISH',)", "left": 0}
    assert acks == [b"\x40\x12\x34", b"\x40\x00\x08", b"\xe0"]
