# nanotoll board layer for the nanotoll emulated board FIRMWARE (boards/qemu_mps2,
# built by `make setup`, started by `nanotoll sim board`), installed as /lib/board.mpy
# by `nanotoll device flash --board qemu_mps2`. That firmware has what a real board
# has: littlefs at "/", time, select, asyncio, os.urandom (the host's, through
# semihosting) and machine.UART(1), the second CMSDK UART, which QEMU connects to
# the host's UART bridge and on to the MQTT broker. (The .py files one folder up are
# the layer for the stock qemu firmware, used through `mpremote mount`.)
# Same names on every board: NAME, randbytes, now, network_up, link, storage, led.

import os
import time
from machine import UART
from mqtt import StreamLink

NAME = "qemu_mps2"
_uart = None


def randbytes(n):
    return os.urandom(n)


def now():
    t = time.time()
    return t if t > 1700000000 else None  # the host's clock, read at boot


def network_up(cfg):
    pass  # the broker link is a UART: nothing to bring up


def _drain():
    # Drop bytes of an earlier connection before a new CONNECT goes out.
    while _uart.any():
        _uart.read()


def link(cfg):
    global _uart
    if _uart is None:
        _uart = UART(cfg.get("uart", 1))
    return StreamLink(_uart, _drain)


def storage(cfg):
    path = cfg.get("state_dir", "/state")
    try:
        os.mkdir(path)
    except OSError:
        pass
    return path


def led(on):
    pass
