"""The gateway's fast per-request functions give exactly the protocol module's bytes."""

from __future__ import annotations

import random

import pytest
from nanotoll.gateway import hotpath
from nanotoll.protocol import cbor
from nanotoll.protocol.eip712 import domain_separator, receipt_digest, voucher_digest
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import Response, sign_receipt
from nanotoll.protocol.signing import (
    HALF_N,
    SECP256K1_N,
    SignatureError,
    recover_address,
    sign_compact,
)
from nanotoll.protocol.voucher import sign
from support.gateway_support import PROVIDER_KEY, Device

RNG = random.Random(20261125)
SEPARATOR = domain_separator(31337, "0x95C62b7BCa32875bad1194Eb8c6A158277366Fd9")


def amounts() -> list[tuple[int, int]]:
    edges = [(1, 1), ((1 << 32) - 1, (1 << 64) - 1), (23, 24), (255, 256), (65_535, 65_536)]
    return edges + [(RNG.randint(1, (1 << 32) - 1), RNG.randint(1, (1 << 64) - 1))
                    for _ in range(40)]


def test_keccak_and_digests_match_the_protocol() -> None:
    from eth_utils import keccak

    for size in (0, 1, 31, 32, 135, 136, 137, 500):
        data = RNG.randbytes(size)
        assert hotpath.keccak256(data) == keccak(data)
    for channel_id, cumulative in amounts():
        assert hotpath.voucher_digest(SEPARATOR, channel_id, cumulative) == \
            voucher_digest(SEPARATOR, channel_id, cumulative)
        request_hash, data_hash = RNG.randbytes(32), RNG.randbytes(32)
        assert hotpath.receipt_digest(SEPARATOR, channel_id, cumulative, request_hash,
                                      data_hash) == \
            receipt_digest(SEPARATOR, channel_id, cumulative, request_hash, data_hash)


def test_recover_signer_is_the_raw_address_and_refuses_what_the_protocol_refuses() -> None:
    for _ in range(20):
        key = RNG.randbytes(32)
        voucher = sign(key, SEPARATOR, RNG.randint(1, 1000), RNG.randint(1, 10**12))
        digest = voucher.digest(SEPARATOR)
        raw = hotpath.recover_signer(digest, voucher.signature)
        assert "0x" + raw.hex() == recover_address(digest, voucher.signature).lower()
    digest = RNG.randbytes(32)
    good = sign_compact(PROVIDER_KEY, digest)
    high = good[:32] + (HALF_N + 1).to_bytes(32, "big")  # s above n/2: refused
    zero_r = bytes(32) + good[32:]
    big_r = SECP256K1_N.to_bytes(32, "big") + good[32:]
    for bad in (high, zero_r, big_r, bytes(64), good[:63]):
        with pytest.raises(SignatureError):
            hotpath.recover_signer(digest, bad)


def test_receipt_signer_and_ok_response_match_the_protocol() -> None:
    signer = hotpath.ReceiptSigner(PROVIDER_KEY, SEPARATOR)
    for channel_id, cumulative in amounts():
        request_hash = RNG.randbytes(32)
        data = RNG.randbytes(RNG.choice([0, 5, 23, 24, 255, 256, 3000]))
        ours = signer.receipt(channel_id, cumulative, request_hash, data)
        theirs = sign_receipt(PROVIDER_KEY, SEPARATOR, channel_id, cumulative, request_hash,
                              data)
        assert ours == theirs  # RFC 6979: deterministic signatures, byte for byte
        request_id = RNG.choice([0, 23, 24, 255, 65_536, (1 << 32) - 1])
        assert hotpath.encode_ok_response(request_id, data, ours) == \
            Response(request_id, ErrorCode.OK, data=data, receipt=theirs).encode()


def test_flat_map_encoding_matches_the_strict_encoder() -> None:
    for _ in range(200):
        mapping: dict[str, int | bool] = {}
        for _ in range(RNG.randint(0, 20)):
            key = "".join(RNG.choice("abcdefghij_") for _ in range(RNG.randint(1, 30)))
            mapping[key] = RNG.choice([True, False, 0, 23, 24, -1, -24, -25, 1 << 40,
                                       -(1 << 63), (1 << 64) - 1, RNG.randint(-10**6, 10**6)])
        assert hotpath.encode_flat_map(mapping) == cbor.dumps(mapping)
    with pytest.raises(TypeError):
        hotpath.encode_flat_map({"a": "text"})  # type: ignore[dict-item]


def test_flat_map_encoder_matches_the_strict_encoder_with_its_key_orders_remembered() -> None:
    encoder = hotpath.FlatMapEncoder(limit=4)
    shapes = [["".join(RNG.choice("abcdefghij_") for _ in range(RNG.randint(1, 30)))
               for _ in range(RNG.randint(0, 20))] for _ in range(8)]
    for _ in range(400):  # more shapes than the limit: some are worked out every time
        keys = RNG.choice(shapes)
        mapping: dict[str, int | bool] = {
            key: RNG.choice([True, False, 0, 23, 24, -1, -25, 1 << 40, -(1 << 63),
                             (1 << 64) - 1, RNG.randint(-10**6, 10**6)]) for key in keys}
        assert encoder.encode(mapping) == cbor.dumps(mapping)
    with pytest.raises(TypeError):
        encoder.encode({"a": "text"})  # type: ignore[dict-item]


def test_weather_served_bytes_are_unchanged() -> None:
    from nanotoll.gateway.providers.weather import WeatherProvider

    provider = WeatherProvider()
    params = {"lat": 52_520_008, "lon": 13_404_954, "alt": 120, "t": 1_764_000_000}
    data = provider.serve(params, 1_764_000_000, Device(1).key[:20])
    assert data == cbor.dumps(cbor.loads(data))  # canonical strict CBOR
    assert cbor.loads(data)["t"] == 1_764_000_000 - 1_764_000_000 % 600


def test_fast_request_reader_agrees_with_the_strict_decoder() -> None:
    from nanotoll.protocol.errors import ProtocolError
    from nanotoll.protocol.messages import decode_request

    device = Device(7)
    samples = []
    for _ in range(60):
        params: dict[str, object] = {"lat": RNG.randint(-90_000_000, 90_000_000),
                                     "lon": RNG.randint(-180_000_000, 180_000_000)}
        if RNG.random() < 0.5:
            params["alt"] = RNG.choice([0, 23, 24, -1, -25, 20_000, 1 << 40, -(1 << 63)])
        if RNG.random() < 0.2:
            params["note"] = "text"  # not an integer: the strict path takes it
        payload = device.request(params=params, price=RNG.choice([1, 23, 1500, 1 << 33]),
                                 seq=RNG.choice([0, 3, 300]))
        samples.append(payload)
        fast = hotpath.decode_request_fast(payload)
        if "note" not in params:
            assert fast == decode_request(payload)
        else:
            assert fast is None
    taken = 0
    for payload in samples:
        for _ in range(40):
            mutated = bytearray(payload)
            choice = RNG.random()
            if choice < 0.5:
                mutated[RNG.randrange(len(mutated))] = RNG.randrange(256)
            elif choice < 0.75:
                del mutated[RNG.randrange(len(mutated)):]
            else:
                mutated.insert(RNG.randrange(len(mutated) + 1), RNG.randrange(256))
            fast = hotpath.decode_request_fast(bytes(mutated))
            if fast is None:
                continue
            taken += 1
            try:
                strict = decode_request(bytes(mutated))
            except ProtocolError as exc:  # what the fast reader takes, the strict one must
                raise AssertionError(f"fast took {bytes(mutated).hex()}: {exc}") from exc
            assert fast == strict
    assert taken > 50  # mutations inside amounts and signatures still decode
