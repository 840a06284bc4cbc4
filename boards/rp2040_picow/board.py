# nanotoll board layer: Raspberry Pi Pico W (RP2040, CYW43 Wi-Fi).
# Same names on every board: NAME, randbytes, now, network_up, link, storage, led.

import os
from wifi_board import now, network_up, link, storage, set_led

NAME = "rp2040_picow"


def randbytes(n):
    # The RP2040 port mixes the ring oscillator into os.urandom;
    # signatures do not depend on it (RFC 6979 nonces), only key generation does.
    return os.urandom(n)


def led(on, pin="LED"):
    set_led(pin, on)
