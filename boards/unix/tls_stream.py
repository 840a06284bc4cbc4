# nanotoll board layer (unix port): the MQTT stream over TLS, waited on by its TCP
# socket's file descriptor.
#
# Why: the unix port's select.poll waits on file descriptors in the kernel, but a TLS
# socket has none, and a poll set holding one is polled in 1 ms steps, each a sleep
# before the first look (extmod/modselect.c). Every asyncio task switch then costs a
# millisecond, about 17 ms a purchase, and an idle device wakes 1,000 times a second,
# which a fleet of hundreds cannot carry. Worse, 1.25's poll set, when it grows its
# array of descriptors, moves the entry of a TLS socket registered beside them to a
# wrong address, and unregistering that socket then crashes the process. So no TLS
# socket is ever registered here: the bare-metal ports, which poll without the sleep and
# have no such array, keep asyncio's own Stream (firmware/tcp_link.py).
#
# How: the TLS session reads and writes as before; waiting is done on the TCP socket
# under it. That is exact once nothing decrypted is left in the session, so each read
# takes all the session has (until it says EAGAIN) into our buffer before waiting again.

import asyncio
from micropython import const

_CHUNK = const(512)
# A write that mbedtls answers with EAGAIN after the handshake found the socket's send
# buffer full (rare on a purchase's small packets): it is tried again after this long.
# In the handshake, EAGAIN means it waits for the broker's next message, and the wait
# is for the socket to read, as for any read: no polling while hundreds shake hands.
_RETRY_MS = const(5)


class TlsStream:
    """readinto, write and drain (the MQTT client's stream) on a TLS session ``tls``
    over the TCP socket ``sock``; ``s.close()`` closes it, as on asyncio's Stream."""

    def __init__(self, tls, sock):
        self.s = self
        self._session = tls
        self._readable = asyncio.StreamReader(sock)  # read(0): wait for the socket
        self._in = b""
        self._out = b""
        self._shaken = False  # the handshake is over (the session wrote or read data)

    def close(self):
        # The port's TLS session must not be read or written once closed (it frees its
        # context) and a writer may still hold this stream: it finds None instead.
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _live(self):
        if self._session is None:
            raise OSError(9)  # EBADF: the link was closed under a reader or writer
        return self._session

    def _take(self):
        """Everything the session has decrypted or can decrypt now; False on EOF."""
        while True:
            data = self._live().read(_CHUNK)
            if data is None:
                return True
            if not data:
                return False
            self._shaken = True
            self._in += data

    async def readinto(self, buf):
        """As asyncio's Stream.readinto: at least one byte (0 at the end of the stream),
        at most len(buf); what the session holds first."""
        while not self._in:
            alive = self._take()
            if self._in:
                break
            if not alive:
                return 0
            await self._readable.read(0)
        n = min(len(buf), len(self._in))
        buf[:n] = self._in[:n]
        self._in = self._in[n:]
        return n

    def write(self, buf):
        if not self._out:
            sent = self._live().write(buf)
            if sent:
                self._shaken = True
                if sent == len(buf):
                    return
                buf = buf[sent:]
        self._out += buf

    async def drain(self):
        while self._out:
            sent = self._live().write(self._out)
            if sent:
                self._shaken = True
                self._out = self._out[sent:]
            elif self._shaken:
                await asyncio.sleep_ms(_RETRY_MS)
            else:
                await self._readable.read(0)
