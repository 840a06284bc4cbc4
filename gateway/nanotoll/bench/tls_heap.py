"""What TLS costs the MicroPython heap, on the project's unix-port build (with mbedTLS).

``measure_tls_heap()`` starts the secure broker (TLS listener, and a plain loopback one
for the comparison), gives a device its client, and runs the firmware's own MQTT client
and ``tcp_link.broker_tls`` under the unix port. Every figure is a difference of
``gc.mem_free()`` after ``gc.collect()``: what importing ``ssl`` keeps; then, after a
warm-up round of connections (one-time allocations), what the TLS context, a connected
TLS session (context included) and a connected plain session hold, against the free
heap once they are stopped and dropped: the most of five rounds.

The unix port's mbedTLS allocates its record buffers and handshake state from the C
heap, which ``gc.mem_free()`` does not see: the figures are the MicroPython objects of
TLS (the context, the CA, the wrapped socket), not mbedTLS's buffers. docs/boards.md says
what that means for boards whose mbedTLS allocates from MicroPython's heap.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]

# Runs under the unix port with the firmware on its path; argv[1] is a JSON file with
# the broker's address, the plain port, the CA (DER) and the device's login.
_MEASURE = """
import sys, gc, json, asyncio
from mqtt import MQTTClient
from tcp_link import TcpLink, broker_tls

with open(sys.argv[1]) as f:
    cfg = json.load(f)
ROUNDS = 5


def free():
    gc.collect()
    return gc.mem_free()


async def session(port, ssl, name):
    client = MQTTClient(TcpLink(cfg["host"], port, ssl), name, user=cfg["username"],
                        password=cfg["password"], timeout_ms=5000)
    await client.start(5000)
    return client


# Heap held by a context (if any) and a connected session: free heap with them,
# against free heap once they are stopped and dropped.
async def held(port, make_ssl, name):
    ctx = make_ssl()
    with_context = free()
    client = await session(port, ctx, name)
    connected = free()
    await client.stop()
    client = ctx = None
    after = free()
    return after - with_context, after - connected


async def main():
    before = free()
    import ssl  # noqa: F401  (once per boot: the module's objects stay)

    imported = before - free()
    plain = lambda: None
    tls = lambda: broker_tls(cfg)
    rounds = [[], []]
    for i in range(ROUNDS + 1):  # the first round is a warm-up: one-time allocations
        p = await held(cfg["plain_port"], plain, "nt-plain")
        t = await held(cfg["port"], tls, "nt-tls")
        if i:
            rounds[0].append(p[1])
            rounds[1].append(t)
    print(json.dumps({"import": imported, "plain": max(rounds[0]),
                      "context": max(t[0] for t in rounds[1]),
                      "tls": max(t[1] for t in rounds[1])}))


asyncio.run(main())
"""


class TlsHeapError(RuntimeError):
    """The measurement could not run; the message says what failed."""


def measure_tls_heap(micropython: str | None = None) -> dict[str, Any]:
    """MicroPython heap held by the ssl module once imported, by the TLS context, by a
    connected TLS session (context included) and by a connected plain session, on the
    unix port (the most of five rounds each)."""
    from ..broker.clients import add_device
    from ..servers.mosquitto import Mosquitto
    from ..servers.tools import micropython_binary

    binary = micropython or micropython_binary()
    provider, device = "ab" * 20, "cd" * 20
    with tempfile.TemporaryDirectory(prefix="nanotoll-tls-heap-") as tmp, \
            Mosquitto(workdir=Path(tmp) / "broker", secure=True, plain_port=True,
                      providers=[provider]) as broker:
        assert broker.ca_file is not None and broker.plain_port is not None
        with broker.admin() as admin:
            login = add_device(admin, provider, device)
        ca = broker.write_ca_der(Path(tmp) / "broker_ca.der")
        settings = Path(tmp) / "broker.json"
        settings.write_text(json.dumps({
            "host": broker.host, "port": broker.port, "plain_port": broker.plain_port,
            "ca": str(ca), "username": login.username, "password": login.password}))
        script = Path(tmp) / "measure.py"
        script.write_text(_MEASURE)
        env = {**os.environ, "MICROPYPATH": f".frozen:{ROOT / 'firmware'}"}
        done = subprocess.run([binary, str(script), str(settings)], capture_output=True,
                              text=True, timeout=120, env=env, check=False)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not lines:
        raise TlsHeapError(f"the TLS heap measurement failed under {binary}: "
                           f"{(done.stderr or done.stdout).strip()[-600:]}")
    held = json.loads(lines[-1])
    return {
        "ssl_import_heap_bytes_unix": held["import"],
        "tls_context_heap_bytes_unix": held["context"],
        "tls_connected_heap_bytes_unix": held["tls"],
        "plain_connected_heap_bytes_unix": held["plain"],
        "tls_heap_runtime": "MicroPython 1.25 unix port with mbedTLS 3.6.6 (make setup), "
                            "gc.mem_free() after gc.collect(); mbedTLS's own buffers are "
                            "on the C heap and not counted",
    }
