"""Every error the pipeline answers is the provider's error receipt (docs/protocol.md 2.4,
3.2): signed over the channel, the hash of the request as received, the code and the
detail, so that a device can tell it from bytes anybody else put on its response topic.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.signing import SignatureError
from support.gateway_support import OTHER_KEY, PROVIDER_KEY, Device, hex_address
from support.pipeline_rig import Rig

PROVIDER = bytes.fromhex(hex_address(PROVIDER_KEY))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.ledger.close()


def _requests(device: Device) -> dict[str, tuple[bytes, ErrorCode, int]]:
    """name -> (payload, the code it gets, the channel its error receipt names)"""
    return {
        "undecodable": (b"\xff\x00", ErrorCode.MALFORMED, 0),
        "trailing byte": (device.request() + b"\x00", ErrorCode.MALFORMED, 0),
        "price": (device.request(price=1000), ErrorCode.PRICE_CHANGED, 1),
        "wrong signer": (device.request(key=OTHER_KEY), ErrorCode.BAD_SIGNATURE, 1),
        "unknown channel": (Device(99).request(), ErrorCode.UNKNOWN_CHANNEL, 99),
    }


@pytest.mark.parametrize("case", list(_requests(Device(1))))
def test_every_error_is_signed_by_the_provider_for_its_request(rig: Rig, case: str) -> None:
    device = Device(1)
    payload, code, channel = _requests(device)[case]
    _, response = rig.send(device, payload)
    assert response.code == code
    assert response.request_hash == keccak(payload) and response.channel_id == channel
    response.verify_error(device.separator, PROVIDER)
    with pytest.raises(SignatureError):
        response.verify_error(device.separator, bytes.fromhex(hex_address(OTHER_KEY)))


def test_the_stale_voucher_detail_is_signed(rig: Rig) -> None:
    device = Device(1)
    rig.send(device, device.request())
    rig.send(device, device.request())
    lost = Device(1)  # its first request is not the one the gateway holds: stale
    payload = lost.request()
    _, response = rig.send(lost, payload)
    assert response.code == ErrorCode.STALE_VOUCHER and isinstance(response.detail, bytes)
    response.verify_error(device.separator, PROVIDER)
    # the same signature over another detail (an attacker's voucher) does not verify
    forged = type(response)(response.request_id, response.code, message=response.message,
                            detail=bytes(76), channel_id=response.channel_id,
                            request_hash=response.request_hash, signature=response.signature)
    with pytest.raises(SignatureError):
        forged.verify_error(device.separator, PROVIDER)
