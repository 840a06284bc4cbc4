# nanotoll board layer, qemu_mps2: the `select.poll` this port lacks, for asyncio.
# Objects registered here answer poll_ready(mask) -> events themselves (the UART
# reads its status register). ipoll busy-waits: the board has no interrupts wired;
# `waited_ticks` counts the timer ticks spent waiting, so benchmarks can leave
# waiting out of what a purchase costs.

from machine import mem32
from micropython import const
from time import ticks_ms, ticks_diff

POLLIN = const(1)
POLLOUT = const(4)
POLLERR = const(8)
POLLHUP = const(16)

_T = const(0x40001000)
waited_ticks = 0


class _Poll:
    def __init__(self):
        self._entries = {}

    def register(self, obj, mask=POLLIN | POLLOUT):
        self._entries[id(obj)] = [obj, mask]

    def modify(self, obj, mask):
        self._entries[id(obj)][1] = mask

    def unregister(self, obj):
        self._entries.pop(id(obj), None)

    def ipoll(self, timeout=-1, flags=0):
        global waited_ticks
        start = ticks_ms()
        t0 = mem32[_T + 4] & 0xFFFFFFFF
        while True:
            ready = []
            for key in self._entries:
                obj, mask = self._entries[key]
                events = obj.poll_ready(mask)
                if events:
                    ready.append((obj, events))
            if ready or timeout == 0 or (timeout > 0 and ticks_diff(ticks_ms(), start) >= timeout):
                waited_ticks += (t0 - (mem32[_T + 4] & 0xFFFFFFFF)) & 0xFFFFFFFF
                return ready

    poll = ipoll


def poll():
    return _Poll()
