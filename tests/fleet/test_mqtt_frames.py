"""MQTT framing for the fault proxy: whole packets out of a byte stream cut anywhere."""

from __future__ import annotations

import pytest
from nanotoll.fleet.mqtt_frames import FrameSplitter, FramingError, remaining_length


def _packet(first: int, body: bytes) -> bytes:
    """An MQTT packet written out by hand: first byte, varint length, body."""
    size, head = len(body), bytearray([first])
    while True:
        byte, size = size & 0x7F, size >> 7
        head.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(head) + body


STREAM = [
    _packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"),  # CONNECT
    _packet(0x32, b"\x00\x03a/b\x00\x07" + b"x" * 200),  # PUBLISH QoS 1, 2-byte length
    _packet(0xC0, b""),  # PINGREQ: no body at all
    _packet(0x30, b"\x00\x01t" + bytes(range(256)) * 80),  # 20 KB: 3-byte length
    _packet(0x40, b"\x00\x07"),  # PUBACK
]


def test_every_cut_of_the_stream_gives_the_same_whole_packets() -> None:
    data = b"".join(STREAM)
    for cut in range(1, len(data)):
        splitter = FrameSplitter()
        out = splitter.feed(data[:cut]) + splitter.feed(data[cut:])
        assert [p.data for p in out] == STREAM, cut
        assert splitter.pending == 0


def test_one_byte_at_a_time() -> None:
    splitter = FrameSplitter()
    out = []
    for byte in b"".join(STREAM):
        out += splitter.feed(bytes([byte]))
    assert [p.data for p in out] == STREAM
    assert [p.name for p in out] == ["CONNECT", "PUBLISH", "PINGREQ", "PUBLISH", "PUBACK"]


def test_a_partial_packet_waits_for_the_rest() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(STREAM[1][:5]) == []
    assert splitter.pending == 5
    assert [p.data for p in splitter.feed(STREAM[1][5:] + STREAM[2][:1])] == [STREAM[1]]
    assert splitter.pending == 1


@pytest.mark.parametrize("size", [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152,
                                  268_435_455])
def test_remaining_length_at_each_varint_boundary(size: int) -> None:
    head = _packet(0x30, b"")[:1]
    encoded = bytearray()
    n = size
    while True:
        byte, n = n & 0x7F, n >> 7
        encoded.append(byte | (0x80 if n else 0))
        if not n:
            break
    buffer = head + bytes(encoded)
    assert remaining_length(buffer) == (size, len(buffer))
    assert remaining_length(buffer[:-1]) is None  # the varint is not complete yet


def test_a_varint_past_four_bytes_is_not_mqtt() -> None:
    with pytest.raises(FramingError, match="four bytes"):
        FrameSplitter().feed(b"\x30\xff\xff\xff\xff\x01")


def test_a_reserved_packet_type_is_not_mqtt() -> None:
    with pytest.raises(FramingError, match="reserved"):
        FrameSplitter().feed(b"\x00\x00")
