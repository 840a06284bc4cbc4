# nanotoll device: the MQTT client's link over TCP, with TLS where the port has ssl
# (boards/unix, firmware/wifi_board.py). Apart from mqtt.py so that boards whose
# broker link is a UART do not load socket and TLS code they never run.

import asyncio
from mqtt import MQTTError


def no_delay(sock):
    """Turn Nagle's algorithm off where the port lets us; True if it did.

    A purchase is one small request answered by one small response: with Nagle on,
    a request that follows an unacknowledged packet waits for the peer's delayed
    ACK (tens of ms). lwIP ports (ESP32, Pico W) export IPPROTO_TCP/TCP_NODELAY;
    the unix port passes any option to the OS but exports neither name, so Linux's
    numbers stand in there. A TLS socket has no setsockopt: TcpLink.open sets it on the
    TCP socket before the TLS context wraps it.
    """
    import socket
    import sys

    level = getattr(socket, "IPPROTO_TCP", None)
    option = getattr(socket, "TCP_NODELAY", None)
    if (level is None or option is None) and sys.platform == "linux":
        level, option = 6, 1  # <netinet/in.h> IPPROTO_TCP, <netinet/tcp.h> TCP_NODELAY
    setsockopt = getattr(sock, "setsockopt", None)
    if level is None or option is None or setsockopt is None:
        return False
    try:
        setsockopt(level, option, 1)
    except OSError:
        return False
    return True


class TcpLink:
    """TCP (or TLS when the port has ssl: pass ssl=True or an SSLContext; ``ca`` names
    the CA file it trusts, for errors). ``tls_stream(session, tcp_socket)``, where a
    board gives one, makes the stream of a TLS link instead of asyncio's (the unix port:
    boards/unix/tls_stream.py)."""

    def __init__(self, host, port, ssl=None, ca=None, tls_stream=None):
        self.host = host
        self.port = port
        self.ssl = ssl
        self.ca = ca
        self.tls_stream = tls_stream
        self.nodelay = False  # whether the last socket opened has Nagle off

    def describe(self):
        """The broker as errors name it: where, and with which CA for TLS."""
        where = "%s:%s" % (self.host, self.port)
        if not self.ssl:
            return where
        return where + (" (TLS, CA %s)" % self.ca if self.ca else " (TLS)")

    async def open(self):
        # TCP first, then TLS over it (where asked): Nagle goes off on the TCP socket,
        # and the wait for the connection is on a socket with a file descriptor.
        stream, _ = await asyncio.open_connection(self.host, self.port)
        sock = stream.s
        self.nodelay = no_delay(sock)
        if not self.ssl:
            return stream
        ctx = self.ssl
        if ctx is True:  # what open_connection itself would make of ssl=True
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # The handshake comes with the first write (the MQTT CONNECT).
        tls = ctx.wrap_socket(sock, server_hostname=self.host,
                              do_handshake_on_connect=False)
        tls.setblocking(False)
        if self.tls_stream is not None:
            return self.tls_stream(tls, sock)
        return asyncio.StreamReader(tls)

    def close(self, stream):
        try:
            stream.s.close()
        except Exception:
            pass


def broker_tls(broker):
    """TcpLink's ``ssl`` for a broker config: with "ca" (a DER file: mbedTLS refuses
    PEM as cadata), a context that accepts only a broker whose certificate chains to that
    CA and names the host dialled; without it, the config's "ssl" (None: plain TCP)."""
    ca = broker.get("ca")
    if not ca:
        return broker.get("ssl")
    try:
        import ssl
    except ImportError:
        raise MQTTError("broker %s:%s needs TLS (CA %s) and this port has no ssl module"
                        % (broker.get("host"), broker.get("port"), ca))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Already the client default; said here so that no port's default decides it.
    ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # not in the stubs
    with open(ca, "rb") as f:
        ctx.load_verify_locations(cadata=f.read())
    return ctx
