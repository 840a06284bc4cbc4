# nanotoll board layer, the part shared by the Wi-Fi boards (ESP32, Pico W): clock,
# Wi-Fi and NTP, the TCP link to the broker, the state folder and the status LED.
# Each board's board.py re-exports these and adds NAME, randbytes and its LED pin.

import os
import time
import machine
import network
from tcp_link import TcpLink, broker_tls

_EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0  # ports with a 2000 epoch
_leds = {}


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
    return TcpLink(broker["host"], broker.get("port", 1883), broker_tls(broker),
                   broker.get("ca"))


def storage(cfg):
    path = cfg.get("state_dir", "/state")
    try:
        os.mkdir(path)
    except OSError:
        pass
    return path


def set_led(pin, on):
    light = _leds.get(pin)
    if light is None:
        light = _leds[pin] = machine.Pin(pin, machine.Pin.OUT)
    light.value(1 if on else 0)
