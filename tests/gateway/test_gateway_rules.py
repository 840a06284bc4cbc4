"""The request pipeline, rule by rule (docs/protocol.md §4.4), on a real SQLite ledger.

Channel state comes from an in-memory reader here: these tests are about rule logic. The
same pipeline runs behind mosquitto in test_gateway_mqtt.py and against anvil in
tests/chain/test_chain_settlement.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nanotoll.gateway.serve import verify_grant
from nanotoll.protocol import cbor
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import peek_request_id
from nanotoll.protocol.signing import HALF_N, SECP256K1_N, address_of
from nanotoll.protocol.topics import response_topic
from nanotoll.protocol.voucher import pack
from support.gateway_support import (
    DEVICE_KEY,
    OTHER_KEY,
    PROVIDER_KEY,
    Device,
    hex_address,
)
from support.pipeline_rig import NOW, Rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.ledger.close()


def test_purchase_returns_data_and_a_receipt_signed_by_the_provider(rig: Rig) -> None:
    device = Device(1)
    payload = device.request()
    outcome, response = rig.send(device, payload)
    assert response.code == ErrorCode.OK and outcome.increment == 1500
    assert response.receipt is not None
    assert response.receipt.signer(device.separator) == address_of(PROVIDER_KEY)
    assert response.receipt.cumulative == 1500
    weather = cbor.loads(response.data)
    assert weather["lat"] == 52_520_008 and isinstance(weather["temp"], int)
    record = rig.ledger.lookup(1)
    assert record is not None and record.cumulative == 1500 and record.response == outcome.response
    assert outcome.topic == device.response_topic


def test_replay_answers_the_same_bytes_and_charges_once(rig: Rig) -> None:
    device = Device(1)
    payload = device.request()
    first, _ = rig.send(device, payload)
    again, response = rig.send(device, payload)
    assert again.response == first.response and again.replay and again.increment == 0
    assert rig.ledger.totals()["purchases"] == 1


def test_stale_voucher_carries_the_highest_voucher_for_fast_forward(rig: Rig) -> None:
    device = Device(1)
    rig.send(device, device.request())
    rig.send(device, device.request())
    lost = Device(1)  # a device that lost its state starts again from zero
    _, response = rig.send(lost, lost.request())
    assert response.code == ErrorCode.STALE_VOUCHER
    highest = response.detail
    assert isinstance(highest, bytes) and len(highest) == 76
    assert int.from_bytes(highest[4:12], "big") == 3000
    # The device checks its own signature on it and fast-forwards.
    from nanotoll.protocol.voucher import unpack
    assert unpack(highest).signer(device.separator) == address_of(DEVICE_KEY)
    lost.cumulative = 3000
    _, response = rig.send(lost, lost.request())
    assert response.code == ErrorCode.OK


def test_same_amount_with_another_request_is_stale_not_a_replay(rig: Rig) -> None:
    device = Device(1)
    rig.send(device, device.request())
    _, response = rig.send(device, device.request(cumulative=1500, params={"lat": 1, "lon": 2}))
    assert response.code == ErrorCode.STALE_VOUCHER


def test_last_accepted_starts_at_on_chain_paid(rig: Rig) -> None:
    device = Device(5)
    _, response = rig.send(device, device.request(cumulative=9_000))
    assert response.code == ErrorCode.STALE_VOUCHER and response.detail is None
    _, response = rig.send(device, device.request(cumulative=10_500))
    assert response.code == ErrorCode.OK


@pytest.mark.parametrize("case", [
    "malformed", "trailing", "too_large", "version", "unknown_product", "price", "seq",
    "bad_params", "unknown_channel", "wrong_payee", "expiring", "wrong_signer", "high_s",
    "underpaid", "overdraft", "topic_not_hex", "topic_other_device",
])
def test_every_bad_input_gets_its_code_and_is_not_charged(rig: Rig, case: str) -> None:
    device = Device(1)
    topic = None
    expected = {
        "malformed": ErrorCode.MALFORMED, "trailing": ErrorCode.MALFORMED,
        "too_large": ErrorCode.TOO_LARGE, "version": ErrorCode.UNSUPPORTED_VERSION,
        "unknown_product": ErrorCode.UNKNOWN_PRODUCT, "price": ErrorCode.PRICE_CHANGED,
        "seq": ErrorCode.PRICE_CHANGED, "bad_params": ErrorCode.BAD_PARAMS,
        "unknown_channel": ErrorCode.UNKNOWN_CHANNEL, "wrong_payee": ErrorCode.WRONG_PAYEE,
        "expiring": ErrorCode.CHANNEL_EXPIRING, "wrong_signer": ErrorCode.BAD_SIGNATURE,
        "high_s": ErrorCode.BAD_SIGNATURE, "underpaid": ErrorCode.UNDERPAID,
        "overdraft": ErrorCode.OVERDRAFT, "topic_not_hex": ErrorCode.WRONG_TOPIC,
        "topic_other_device": ErrorCode.WRONG_TOPIC,
    }[case]
    if case == "malformed":
        payload = b"\xff\x00"
    elif case == "trailing":
        payload = device.request() + b"\x00"
    elif case == "too_large":
        payload = device.request(params={"pad": "x" * 600, "lat": 1, "lon": 1})
    elif case == "version":
        fields = cbor.loads(device.request())
        payload = cbor.dumps([2, *fields[1:]])
    elif case == "unknown_product":
        payload = device.request(product="lottery")
    elif case == "price":
        payload = device.request(price=1000)
    elif case == "seq":
        payload = device.request(seq=2)
    elif case == "bad_params":
        payload = device.request(params={"lat": 91_000_000, "lon": 0})
    elif case == "unknown_channel":
        device = Device(99)
        payload = device.request()
    elif case == "wrong_payee":
        device = Device(2)
        payload = device.request()
    elif case == "expiring":
        device = Device(3)
        payload = device.request()
    elif case == "wrong_signer":
        payload = device.request(key=OTHER_KEY)
    elif case == "high_s":
        fields = cbor.loads(device.request())
        raw = fields[6]
        r, vs = raw[12:44], int.from_bytes(raw[44:76], "big")
        parity, s = vs >> 255, vs & ((1 << 255) - 1)
        high = ((1 - parity) << 255 | (SECP256K1_N - s)).to_bytes(32, "big")  # same point
        assert SECP256K1_N - s > HALF_N
        fields[6] = raw[:12] + r + high
        payload = cbor.dumps(fields)
    elif case == "underpaid":
        payload = device.request(pay=1000)
    elif case == "overdraft":
        device = Device(4)
        payload = device.request(cumulative=6_000)
    elif case == "topic_not_hex":
        payload = device.request()
        topic = device.topic.rsplit("/", 1)[0] + "/NOT-A-DEVICE"
    else:
        payload = device.request()
        topic = device.topic.rsplit("/", 1)[0] + "/" + hex_address(OTHER_KEY)
    outcome, response = rig.send(device, payload, topic)
    assert response.code == expected, response.message
    assert outcome.increment == 0
    assert rig.ledger.totals()["purchases"] == 0
    if case == "price":
        assert response.detail == 3
    # Even an undecodable or oversized request is answered with its own request id, read
    # from its first bytes; only bytes that do not start like a request get 0.
    assert response.request_id == (0 if case == "malformed" else 1)
    if case == "topic_not_hex":
        assert outcome.topic.endswith("/resp/NOT-A-DEVICE")


@pytest.mark.parametrize(("segment", "answered"), [
    ("NOT-A-DEVICE", True), ("ABCDEF" * 6 + "ABCD", True), ("x" * 64, True),
    ("x" * 65, False), ("caf\u00e9", False), ("a.b", False), ("", False), (" ", False),
])
def test_wrong_topic_is_answered_only_on_a_plausible_device_level(rig: Rig, segment: str,
                                                                   answered: bool) -> None:
    device = Device(1)
    topic = device.topic.rsplit("/", 1)[0] + "/" + segment
    outcome = rig.pipeline.handle(topic, device.request())
    assert outcome.code == ErrorCode.WRONG_TOPIC and outcome.increment == 0
    if answered:
        assert outcome.topic == response_topic(hex_address(PROVIDER_KEY), segment)
    else:
        assert outcome.topic == ""  # logged and acknowledged, published nowhere
    assert rig.ledger.totals()["purchases"] == 0


def test_request_id_is_read_from_the_first_bytes() -> None:
    device = Device(1)
    fields = cbor.loads(device.request())
    for request_id in (0, 23, 24, 255, 256, 65_535, 65_536, (1 << 32) - 1):
        encoded = cbor.dumps([1, request_id, *fields[2:]])
        assert peek_request_id(encoded) == request_id
        assert peek_request_id(encoded[:12] + b"\xff" * 600) == request_id  # junk after it


def test_navigation_and_route_grant_verifiable_by_anyone(rig: Rig) -> None:
    device = Device(1)
    box = [52_400_000, 13_200_000, 52_600_000, 13_600_000]
    _, response = rig.send(device, device.request("nav", {"box": box}, price=4000))
    assert response.code == ErrorCode.OK
    nav = cbor.loads(response.data)
    assert nav["box"] == box and set(nav) >= {"airspaces", "geofences", "waypoints"}
    # The grant's window from the clock now, not from when the module was imported: the
    # suite may run for longer than the grant lasts.
    now = int(time.time())
    params = {"corridor": "BER-N7", "from": now, "until": now + 900}
    _, response = rig.send(device, device.request("route", params, price=25000))
    assert response.code == ErrorCode.OK
    corridor, holder, start, end = verify_grant(response.data, device.separator,
                                                address_of(PROVIDER_KEY), now=now + 1)
    assert (corridor, holder, start, end) == ("BER-N7", bytes.fromhex(hex_address(DEVICE_KEY)),
                                             now, now + 900)
    with pytest.raises(ValueError):
        verify_grant(response.data, device.separator, address_of(OTHER_KEY))
    # Bad parameters are refused before any charge.
    _, response = rig.send(device, device.request("nav", {"box": [0, 0, 5_000_000, 1]},
                                                  price=4000))
    assert response.code == ErrorCode.BAD_PARAMS


def test_weather_is_deterministic(rig: Rig) -> None:
    provider = rig.rules.providers["weather"]
    params = {"lat": 48_000_000, "lon": 11_000_000, "alt": 500, "t": NOW}
    assert provider.serve(params, NOW, b"\x01" * 20) == provider.serve(params, NOW, b"\x02" * 20)


def test_wire_voucher_bytes_are_stored_unchanged(rig: Rig) -> None:
    device = Device(1)
    payload = device.request()
    rig.send(device, payload)
    record = rig.ledger.lookup(1)
    assert record is not None
    assert cbor.loads(payload)[6] == record.voucher
    assert pack(1, 1500, record.voucher[12:]) == record.voucher
