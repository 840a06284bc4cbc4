# nanotoll board layer: Raspberry Pi Pico W (RP2040, CYW43 Wi-Fi).
# Same names on every board: NAME, randbytes, now, network_up, link, storage, led.

import os
import time
import machine
import network
from mqtt import TcpLink

NAME = "rp2040_picow"
_EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0  # ports with a 2000 epoch
_led = None


def randbytes(n):
    # The RP2040 port mixes the ring oscillator into os.urandom;
    # signatures do not depend on it (RFC 6979 nonces), only key generation does.
    return os.urandom(n)


def now():
    t = time.time() + _EPOCH
    return t if t > 1700000000 else None  # None until NTP has set the clock


def network_up(cfg, timeout_ms=20000):
    wifi = cfg.get("wifi")
    if not wifi:
        return
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(wifi["ssid"], wifi["password"])
        start = time.ticks_ms()
        while not wlan.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                raise OSError("Wi-Fi: no connection to %s" % wifi["ssid"])
            time.sleep_ms(100)
    try:
        import ntptime

        if cfg.get("ntp_host"):
            ntptime.host = cfg["ntp_host"]
        ntptime.settime()
    except Exception as exc:  # no clock: catalogs are used without a validity check
        print("ntp:", exc)


def link(cfg):
    broker = cfg["broker"]
    return TcpLink(broker["host"], broker.get("port", 1883), broker.get("ssl"))


def storage(cfg):
    path = cfg.get("state_dir", "/state")
    try:
        os.mkdir(path)
    except OSError:
        pass
    return path


def led(on, pin="LED"):
    global _led
    if _led is None:
        _led = machine.Pin(pin, machine.Pin.OUT)
    _led.value(1 if on else 0)
