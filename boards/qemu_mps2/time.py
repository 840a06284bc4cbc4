# nanotoll board layer, qemu_mps2: the `time` module this port lacks, on the CMSDK
# timer 1 (0x40001000, 25 MHz, counting down; timer 0 stays free for benchmarks).
# Enough for asyncio and the agent: ticks_ms/us, ticks_add, ticks_diff, sleep_ms,
# sleep, time (seconds since boot: the board has no clock).

from machine import mem32
from micropython import const

_T = const(0x40001000)
_MASK = const(0x3FFFFFFF)  # ticks wrap at 2^30, as on every MicroPython port
_HALF = const(0x20000000)
_PER_MS = const(25000)

mem32[_T] = 0
mem32[_T + 8] = 0xFFFFFFFF  # reload
mem32[_T + 4] = 0xFFFFFFFF  # value
mem32[_T] = 1  # enable
_last = mem32[_T + 4] & 0xFFFFFFFF
_ms = 0
_rem = 0  # timer ticks not yet a whole millisecond
_us = 0


def _advance():
    global _last, _ms, _rem
    value = mem32[_T + 4] & 0xFFFFFFFF
    _rem += (_last - value) & 0xFFFFFFFF
    _last = value
    if _rem >= _PER_MS:
        _ms = (_ms + _rem // _PER_MS) & _MASK
        _rem %= _PER_MS


def ticks_ms():
    _advance()
    return _ms


def ticks_us():
    _advance()
    return (_ms * 1000 + _rem // 25) & _MASK


def ticks_add(ticks, delta):
    return (ticks + delta) & _MASK


def ticks_diff(a, b):
    return ((a - b + _HALF) & _MASK) - _HALF


def sleep_ms(ms):
    start = ticks_ms()
    while ticks_diff(ticks_ms(), start) < ms:
        pass


def sleep(seconds):
    sleep_ms(int(seconds * 1000))


_seconds = 0
_last_ms = 0


def time():
    global _seconds, _last_ms
    now = ticks_ms()
    _seconds += ticks_diff(now, _last_ms)
    _last_ms = now
    return _seconds // 1000
