"""MQTT packet framing: cut a TCP byte stream into whole MQTT packets.

Every MQTT packet (3.1.1 and 5) starts with a fixed header: one byte whose high nibble is
the packet type, then the remaining length as a varint of one to four bytes. That is all
a proxy needs to move packets whole without understanding them.
"""

from __future__ import annotations

from dataclasses import dataclass

# The packet types by the high nibble of the first byte (0 and, before MQTT 5, 15 are
# reserved).
PACKET_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}
MAX_REMAINING_LENGTH = 268_435_455  # four varint bytes of seven bits


class FramingError(ValueError):
    """The stream is not MQTT: a varint longer than four bytes or a reserved type."""


@dataclass(frozen=True)
class Packet:
    data: bytes  # the whole packet, fixed header included

    @property
    def kind(self) -> int:
        return self.data[0] >> 4

    @property
    def name(self) -> str:
        return PACKET_NAMES.get(self.kind, f"TYPE{self.kind}")


def remaining_length(buffer: bytes | bytearray, start: int = 1) -> tuple[int, int] | None:
    """(remaining length, header size) of the packet at buffer[0], or None when the
    varint is not complete yet."""
    value = 0
    for index in range(4):
        position = start + index
        if position >= len(buffer):
            return None
        byte = buffer[position]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, position + 1
    raise FramingError("remaining length runs past four bytes")


class FrameSplitter:
    """Feed it bytes as they arrive; it hands back the packets that are complete.

    A packet split over any number of reads comes out once, whole; bytes of the next
    packet stay buffered until it is complete too.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held of a packet that is not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        self._buffer += data
        packets: list[Packet] = []
        while self._buffer:
            if self._buffer[0] >> 4 == 0:
                raise FramingError(f"reserved packet type in first byte "
                                   f"0x{self._buffer[0]:02x}")
            header = remaining_length(self._buffer)
            if header is None:
                break
            length, header_size = header
            end = header_size + length
            if len(self._buffer) < end:
                break
            packets.append(Packet(bytes(self._buffer[:end])))
            del self._buffer[:end]
        return packets
