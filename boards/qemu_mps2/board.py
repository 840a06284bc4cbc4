# nanotoll board layer: QEMU's mps2-an385 (Cortex-M3), an emulated 32-bit board.
# Same names on every board: NAME, randbytes, now, network_up, link, storage, led.
#
# The port has no network, file system, clock, time, select, _asyncio or
# os.urandom: this folder supplies time.py, select.py and aiotask.py (for asyncio),
# uart.py (the MQTT link is UART1, QEMU's second -serial, bridged to a broker by
# the host) and ramfs.py (state in RAM, lost when QEMU stops). Import board first.

import sys

try:
    import _asyncio  # noqa: F401 - a build with the C module needs no help
except ImportError:
    import aiotask

    sys.modules["asyncio.task"] = aiotask  # frozen asyncio lacks task.py

import time
from hashlib import sha256
from machine import mem32
from mqtt import StreamLink
from uart import Uart

NAME = "qemu_mps2"
_clock = None  # unix seconds at boot, from the config (the host knows the time)
_pool = sha256(b"qemu_mps2")
_fs = None


def randbytes(n):
    # EMULATOR ONLY: no hardware random source here. Timer jitter and the call
    # order are hashed together, which is not a key source for a real device.
    global _pool
    out = b""
    while len(out) < n:
        _pool.update((mem32[0x40001004] & 0xFFFFFFFF).to_bytes(4, "little"))
        digest = _pool.digest()
        _pool = sha256(digest)
        out += digest
    return out[:n]


def now():
    return None if _clock is None else _clock + time.time()


def network_up(cfg):
    global _clock
    if cfg.get("clock"):
        _clock = cfg["clock"] - time.time()


def link(cfg):
    return StreamLink(Uart(cfg.get("uart_base", 0x40005000)))


def storage(cfg):
    global _fs
    if _fs is None:
        import ramfs

        _fs = ramfs.mount("/ram")
    path = cfg.get("state_dir", "/ram/state")
    try:
        import os

        os.mkdir(path)
    except OSError:
        pass
    return path


def led(on):
    pass
