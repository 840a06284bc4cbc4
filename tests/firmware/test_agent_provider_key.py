"""Receipts and catalogs verified against the provider's provisioned public key, with
the flash comb tables, on the unix port (boards/unix/main.py, a real mosquitto and the
CPython reference provider)."""

from __future__ import annotations

from pathlib import Path

import pytest
from coincurve import PrivateKey
from support.agent_helpers import PROVIDER_KEY, Device, FakeGateway

PRICE = 1500


def _public_hex(secret: bytes) -> str:
    return "0x" + PrivateKey(secret).public_key.format(compressed=False)[1:].hex()


@pytest.fixture
def gateway(mosquitto):
    with FakeGateway(mosquitto.port) as gw:
        yield gw


def _purchases(lines: list[dict]) -> list[dict]:
    return [x for x in lines if "i" in x]


def test_purchases_verify_receipts_against_the_key_with_tables(
        gateway: FakeGateway, tmp_path: Path, mosquitto) -> None:
    device = Device(tmp_path / "dev", mosquitto.port, provider_key=_public_hex(PROVIDER_KEY),
                    comb_tables="tables")
    rc, lines, err = device.buy(3, "weather", "--verbose")
    assert rc == 0, err
    assert [x["ok"] and x["receipt_verified"] for x in _purchases(lines)] == [True] * 3
    assert gateway.book.charged == 3 * PRICE
    tables = sorted(p.name for p in (tmp_path / "dev" / "tables").iterdir())
    assert tables[0] != "g.tbl" and tables[0].endswith(".tbl") and tables[1] == "g.tbl"
    assert "crypto: comb table" in err and "rebuilt (" in err
    # the next boot finds both tables good
    rc, lines, err = device.buy(1, "weather", "--verbose")
    assert rc == 0 and _purchases(lines)[0]["ok"], err
    assert "g.tbl ok" in err and "provider key table" in err and "rebuilt" not in err


def test_a_corrupt_table_is_rebuilt_at_boot_and_said(
        gateway: FakeGateway, tmp_path: Path, mosquitto) -> None:
    device = Device(tmp_path / "dev", mosquitto.port, provider_key=_public_hex(PROVIDER_KEY),
                    comb_tables="tables")
    assert device.buy(1)[0] == 0
    for table in (tmp_path / "dev" / "tables").iterdir():
        data = bytearray(table.read_bytes())
        data[30000] ^= 0x01
        table.write_bytes(bytes(data))
    rc, lines, err = device.buy(1, "weather", "--verbose")
    assert rc == 0 and _purchases(lines)[0]["ok"], err
    assert err.count("rebuilt (comb table") == 2 and "checksum does not match" in err


def test_a_bad_receipt_fails_verification_against_the_key(
        gateway: FakeGateway, tmp_path: Path, mosquitto) -> None:
    gateway.bad_receipt = True
    device = Device(tmp_path / "dev", mosquitto.port, provider_key=_public_hex(PROVIDER_KEY))
    rc, lines, _ = device.buy(1)
    row = _purchases(lines)[0]
    assert row["error"] == "ProviderError" and "receipt" in row["message"]
    assert not row["receipt_verified"]


def test_key_without_tables_still_buys(gateway: FakeGateway, tmp_path: Path, mosquitto) -> None:
    device = Device(tmp_path / "dev", mosquitto.port, provider_key=_public_hex(PROVIDER_KEY))
    rc, lines, err = device.buy(2)
    assert rc == 0, err
    assert [x["ok"] and x["receipt_verified"] for x in _purchases(lines)] == [True, True]


def test_a_key_that_is_not_the_providers_is_refused_at_boot(
        gateway: FakeGateway, tmp_path: Path, mosquitto) -> None:
    device = Device(tmp_path / "dev", mosquitto.port, provider_key=_public_hex(b"\x22" * 32))
    rc, lines, err = device.buy(1)
    assert rc != 0
    assert "does not hash to its address" in err
    assert gateway.book.charged == 0 and not (tmp_path / "dev" / "state" / "state.rec").exists()


def test_provisioning_refuses_a_key_that_is_not_the_providers() -> None:
    from nanotoll.bench.provider import addr_hex
    from nanotoll.device.provision import check_provider_key
    from nanotoll.device.repl import DeviceError

    address = "0x" + addr_hex(PROVIDER_KEY)
    public = _public_hex(PROVIDER_KEY)
    assert check_provider_key(address, public) == public
    assert check_provider_key(address.upper().replace("0X", "0x"), "04" + public[2:]) == public
    for wrong, why in [(_public_hex(b"\x22" * 32), "does not hash"), (public[:-2], "64 bytes"),
                       ("0xzz", "not hex")]:
        with pytest.raises(DeviceError, match=why):
            check_provider_key(address, wrong)
