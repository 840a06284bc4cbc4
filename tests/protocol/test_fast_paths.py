"""The protocol's fast paths give exactly what its generic paths give.

Each narrow path inside ``nanotoll.protocol`` (the common-request reader behind
``decode_request``, the OK-response writer, the flat-map encoder, the request-id peek,
raw-address recovery and the kept Signer) is compared here with the generic code it
stands in for, on random and on mutated inputs.
"""

from __future__ import annotations

import random

import pytest
from eth_utils import keccak, to_checksum_address
from nanotoll.protocol import PROTOCOL_VERSION, cbor
from nanotoll.protocol.eip712 import domain_separator
from nanotoll.protocol.errors import ErrorCode, ProtocolError
from nanotoll.protocol.keccak import keccak256
from nanotoll.protocol.messages import (
    Response,
    _decode_request_strictly,
    _read_common_request,
    decode_request,
    peek_request_id,
    sign_receipt,
)
from nanotoll.protocol.signing import (
    HALF_N,
    SECP256K1_N,
    SignatureError,
    Signer,
    address_of,
    recover_address,
    recover_signer,
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


def test_keccak_matches_eth_utils() -> None:
    for size in (0, 1, 31, 32, 135, 136, 137, 500):
        data = RNG.randbytes(size)
        assert keccak256(data) == keccak(data)


def test_recover_signer_is_the_raw_address_and_refuses_what_it_must() -> None:
    for _ in range(20):
        key = RNG.randbytes(32)
        voucher = sign(key, SEPARATOR, RNG.randint(1, 1000), RNG.randint(1, 10**12))
        digest = voucher.digest(SEPARATOR)
        raw = recover_signer(digest, voucher.signature)
        assert recover_address(digest, voucher.signature) == to_checksum_address(raw)
        assert recover_address(digest, voucher.signature) == address_of(key)
    digest = RNG.randbytes(32)
    good = sign_compact(PROVIDER_KEY, digest)
    high = good[:32] + (HALF_N + 1).to_bytes(32, "big")  # s above n/2: refused
    zero_r = bytes(32) + good[32:]
    big_r = SECP256K1_N.to_bytes(32, "big") + good[32:]
    for bad in (high, zero_r, big_r, bytes(64), good[:63]):
        with pytest.raises(SignatureError):
            recover_signer(digest, bad)


def test_a_kept_signer_signs_as_a_key_used_once() -> None:
    signer = Signer(PROVIDER_KEY)
    assert signer.checksum_address == address_of(PROVIDER_KEY)
    for _ in range(20):
        digest = RNG.randbytes(32)
        assert signer.sign(digest) == sign_compact(PROVIDER_KEY, digest)  # RFC 6979
        assert recover_signer(digest, signer.sign(digest)) == signer.address
    with pytest.raises(ValueError):
        Signer(bytes(32))


def test_ok_response_matches_the_generic_encoder() -> None:
    signer = Signer(PROVIDER_KEY)
    for channel_id, cumulative in amounts():
        request_hash = RNG.randbytes(32)
        data = RNG.randbytes(RNG.choice([0, 5, 23, 24, 255, 256, 3000]))
        receipt = sign_receipt(signer, SEPARATOR, channel_id, cumulative, request_hash, data)
        assert receipt == sign_receipt(PROVIDER_KEY, SEPARATOR, channel_id, cumulative,
                                       request_hash, data)
        request_id = RNG.choice([0, 23, 24, 255, 65_536, (1 << 32) - 1])
        response = Response(request_id, ErrorCode.OK, data=data, receipt=receipt)
        generic = cbor.dumps([PROTOCOL_VERSION, request_id, 0, [data, receipt.as_array()]])
        assert response.encode() == generic


def flat_maps(count: int, shapes: list[list[str]] | None = None
              ) -> list[dict[str, int | bool]]:
    values = [True, False, 0, 23, 24, 255, 256, 65_535, 65_536, -1, -24, -25, 1 << 40,
              -(1 << 63), -(1 << 64), (1 << 64) - 1]
    maps = []
    for _ in range(count):
        keys = RNG.choice(shapes) if shapes else [
            "".join(RNG.choice("abcdefghij_") for _ in range(RNG.randint(1, 30)))
            for _ in range(RNG.randint(0, 20))]
        maps.append({key: RNG.choice(values + [RNG.randint(-10**6, 10**6)]) for key in keys})
    return maps


def test_flat_map_encoder_matches_the_generic_encoder() -> None:
    encoder = cbor.FlatMapEncoder()
    for mapping in flat_maps(200):
        assert encoder.encode(mapping) == cbor.dumps(mapping)
    with pytest.raises(TypeError):
        encoder.encode({"a": "text"})  # type: ignore[dict-item]
    with pytest.raises(cbor.CBORError):
        encoder.encode({"a": 1 << 64})


def test_flat_map_encoder_matches_with_more_key_orders_than_it_remembers() -> None:
    encoder = cbor.FlatMapEncoder(limit=4)
    shapes = [["".join(RNG.choice("abcdefghij_") for _ in range(RNG.randint(1, 30)))
               for _ in range(RNG.randint(0, 20))] for _ in range(8)]
    for mapping in flat_maps(400, shapes):
        assert encoder.encode(mapping) == cbor.dumps(mapping)


def test_weather_served_bytes_are_canonical() -> None:
    from nanotoll.gateway.serve.weather import WeatherProvider

    provider = WeatherProvider()
    params = {"lat": 52_520_008, "lon": 13_404_954, "alt": 120, "t": 1_764_000_000}
    data = provider.serve(params, 1_764_000_000, Device(1).key[:20])
    assert data == cbor.dumps(cbor.loads(data))  # canonical strict CBOR
    assert cbor.loads(data)["t"] == 1_764_000_000 - 1_764_000_000 % 600


def request_samples(device: Device) -> list[tuple[bytes, bool]]:
    """(encoded request, whether its params are all integers)."""
    samples = []
    for _ in range(60):
        params: dict[str, object] = {"lat": RNG.randint(-90_000_000, 90_000_000),
                                     "lon": RNG.randint(-180_000_000, 180_000_000)}
        if RNG.random() < 0.5:
            params["alt"] = RNG.choice([0, 23, 24, -1, -25, 20_000, 1 << 40, -(1 << 63)])
        integers = RNG.random() >= 0.2
        if not integers:
            params["note"] = "text"  # not an integer: the strict path takes it
        payload = device.request(params=params, price=RNG.choice([1, 23, 1500, 1 << 33]),
                                 seq=RNG.choice([0, 3, 300]))
        samples.append((payload, integers))
    return samples


def mutations(payload: bytes, count: int) -> list[bytes]:
    mutated_all = []
    for _ in range(count):
        mutated = bytearray(payload)
        choice = RNG.random()
        if choice < 0.5:
            mutated[RNG.randrange(len(mutated))] = RNG.randrange(256)
        elif choice < 0.75:
            del mutated[RNG.randrange(len(mutated)):]
        else:
            mutated.insert(RNG.randrange(len(mutated) + 1), RNG.randrange(256))
        mutated_all.append(bytes(mutated))
    return mutated_all


def test_common_request_reader_agrees_with_the_strict_decoder() -> None:
    for payload, integers in request_samples(Device(7)):
        fast = _read_common_request(payload)
        if integers:
            assert fast == _decode_request_strictly(payload)
        else:
            assert fast is None
        assert decode_request(payload) == _decode_request_strictly(payload)


def test_on_mutated_requests_decode_request_is_the_strict_decoder() -> None:
    taken = 0
    for payload, _ in request_samples(Device(8)):
        for mutated in mutations(payload, 40):
            fast = _read_common_request(mutated)
            try:
                strict = _decode_request_strictly(mutated)
            except ProtocolError as exc:  # what the fast reader takes, the strict one must
                assert fast is None, f"fast took {mutated.hex()}: {exc}"
                with pytest.raises(ProtocolError) as info:
                    decode_request(mutated)
                assert info.value.code == exc.code
                continue
            assert decode_request(mutated) == strict
            if fast is not None:
                taken += 1
                assert fast == strict
    assert taken > 50  # mutations inside amounts and signatures still decode


def test_request_id_peek_reads_what_the_decoder_reads() -> None:
    for payload, _ in request_samples(Device(9)):
        request_id = decode_request(payload).request_id
        assert peek_request_id(payload) == request_id
        assert peek_request_id(payload[:12] + b"\xff" * 600) == request_id  # junk after it
        for mutated in mutations(payload, 10):
            peeked = peek_request_id(mutated)
            try:
                decoded = decode_request(mutated).request_id
            except ProtocolError:
                continue
            assert peeked == decoded
    assert peek_request_id(b"") == 0
    assert peek_request_id(b"\x87") == 0  # truncated
    assert peek_request_id(b"\x87\x01\x19\x01") == 0  # truncated two-byte id
    assert peek_request_id(b"\x87\x01\x18\x05") == 0  # non-canonical head: not trusted
    assert peek_request_id(b"\x87\x01\x1b" + bytes(8)) == 0  # 64-bit: above the id range
    assert peek_request_id(b"\x87\x01\x1a\x00\x01\x00\x00") == 0x10000
    assert peek_request_id(b"\xa1\x01\x02") == 0  # a map
    assert peek_request_id(b"\x87\x61\x61\x01") == 0  # version is not an integer
