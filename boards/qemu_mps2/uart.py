# nanotoll board layer, qemu_mps2: the CMSDK APB UART as a non-blocking byte stream
# for asyncio (through select.py's poll_ready). UART1 at 0x40005000 is QEMU's second
# -serial, e.g. `-serial tcp:127.0.0.1:PORT`; UART0 stays the REPL.

from machine import mem32
from micropython import const

_DATA = const(0)
_STATE = const(4)  # bit 0: TX full, bit 1: RX full
_CTRL = const(8)  # bit 0: TX enable, bit 1: RX enable
_BAUDDIV = const(16)


class Uart:
    def __init__(self, base=0x40005000):
        self.base = base
        mem32[base + _BAUDDIV] = 16
        mem32[base + _CTRL] = 3

    def read(self, n=-1):
        base = self.base
        out = bytearray()
        while (n < 0 or len(out) < n) and mem32[base + _STATE] & 2:
            out.append(mem32[base + _DATA] & 0xFF)
        return bytes(out) if out else None

    def readinto(self, buf):
        data = self.read(len(buf))
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)

    def write(self, buf):
        base = self.base
        n = 0
        for byte in buf:
            if mem32[base + _STATE] & 1:
                break
            mem32[base + _DATA] = byte
            n += 1
        return n if n else None

    def poll_ready(self, mask):
        state = mem32[self.base + _STATE]
        events = 0
        if mask & 1 and state & 2:
            events |= 1
        if mask & 4 and not state & 1:
            events |= 4
        return events

    def close(self):
        pass
