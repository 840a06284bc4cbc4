# nanotoll board layer: ESP32 (stock MicroPython, files copied with mpremote).
# Same names on every board: NAME, randbytes, now, network_up, link, storage, led.

import os
from wifi_board import now, network_up, link, storage, set_led

NAME = "esp32"


def randbytes(n):
    # Truly random only while Wi-Fi or Bluetooth is on (network_up runs first);
    # signatures do not depend on it (RFC 6979 nonces), only key generation does.
    return os.urandom(n)


def led(on, pin=2):
    set_led(pin, on)
