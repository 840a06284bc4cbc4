"""The payment agent end to end: boards/unix/main.py under the real MicroPython unix port,
a real mosquitto, and a small provider on the CPython protocol reference (agent_helpers).

Each test states what may be signed and what may be charged, and checks it on both sides.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from eth_utils import keccak
from support.agent_helpers import POLICY, PROVIDER_KEY, Device, FakeGateway

PRICE = 1500


@pytest.fixture
def gateway(mosquitto):
    with FakeGateway(mosquitto.port) as gw:
        yield gw


@pytest.fixture
def device(tmp_path: Path, mosquitto) -> Device:
    return Device(tmp_path / "dev", mosquitto.port)


def purchases(lines: list[dict]) -> list[dict]:
    return [x for x in lines if "i" in x]


def test_purchases_with_verified_receipts(gateway: FakeGateway, device: Device) -> None:
    rc, lines, err = device.buy(5)
    assert rc == 0, err
    rows = purchases(lines)
    assert [x["ok"] for x in rows] == [True] * 5
    assert [x["cumulative"] for x in rows] == [PRICE * i for i in range(1, 6)]
    assert all(x["receipt_verified"] and x["receipt_cumulative"] == x["cumulative"] for x in rows)
    summary = lines[-1]
    assert summary["summary"] and summary["ok"] == 5 and summary["paid"] == 5 * PRICE
    assert summary["acked"] == summary["cumulative"] == summary["spent"] == 5 * PRICE
    assert gateway.book.charged == 5 * PRICE and gateway.book.accepted == 5


def test_budget_is_never_exceeded(gateway: FakeGateway, tmp_path: Path, mosquitto) -> None:
    dev = Device(tmp_path / "dev", mosquitto.port, policy={**POLICY, "budget": 4000})
    rc, lines, _ = dev.buy(4)
    assert rc == 1
    assert [x["error"] for x in purchases(lines)] == [None, None, "BudgetExhausted",
                                                     "BudgetExhausted"]
    assert lines[-1]["spent"] == 3000 <= 4000
    assert len(gateway.received) == 2 and gateway.book.charged == 3000


def test_price_above_max_price_signs_nothing(gateway: FakeGateway, device: Device) -> None:
    rc, lines, _ = device.buy(1, "weather", "--max-price", str(PRICE - 1))
    assert rc == 1 and purchases(lines)[0]["error"] == "PriceTooHigh"
    assert gateway.received == [] and lines[-1]["cumulative"] == 0


def test_price_change_refreshes_the_catalog(gateway: FakeGateway, device: Device) -> None:
    assert device.buy(1)[0] == 0
    gateway.set_price("weather", 2000, publish=False)  # the device still holds seq 1
    rc, lines, err = device.buy(1)
    assert rc == 0, err
    assert purchases(lines)[0]["price"] == 2000 and lines[-1]["cumulative"] == PRICE + 2000
    codes = [code for _, _, code in gateway.log]
    assert codes == [0, 17, 0]
    assert gateway.book.charged == PRICE + 2000


def test_device_that_lost_its_state_resyncs(gateway: FakeGateway, device: Device) -> None:
    assert device.buy(3)[0] == 0
    shutil.rmtree(device.folder / "state")  # the flash was wiped
    rc, lines, err = device.buy(2)
    assert rc == 0, err
    assert [x["cumulative"] for x in purchases(lines)] == [4 * PRICE, 5 * PRICE]
    assert [code for _, _, code in gateway.log] == [0, 0, 0, 16, 0, 0]
    assert gateway.book.charged == 5 * PRICE


def test_corrupt_record_refuses_to_sign_until_verified_resync(
        gateway: FakeGateway, device: Device) -> None:
    assert device.buy(2)[0] == 0
    raw = bytearray(device.state_file.read_bytes())
    raw[10] ^= 0x20
    device.state_file.write_bytes(bytes(raw))
    seen = len(gateway.received)
    rc, lines, _ = device.buy(1)
    assert rc == 1 and purchases(lines)[0]["error"] == "StateError"
    assert len(gateway.received) == seen  # nothing signed, nothing sent
    rc, lines, err = device.run("--resync")
    assert rc == 0, err
    assert lines[0]["resync"] and lines[0]["cumulative"] == 2 * PRICE
    rc, lines, err = device.buy(1)
    assert rc == 0, err
    assert lines[-1]["cumulative"] == 3 * PRICE and gateway.book.charged == 3 * PRICE


def test_unanswered_request_is_resent_unchanged_and_charged_once(
        gateway: FakeGateway, device: Device) -> None:
    gateway.drop_first = 2  # as if the gateway died twice before answering
    rc, lines, err = device.buy(2)
    assert rc == 0, err
    assert gateway.received[0] == gateway.received[1] == gateway.received[2]
    assert gateway.book.charged == 2 * PRICE and gateway.book.accepted == 2


def test_busy_then_served(gateway: FakeGateway, device: Device) -> None:
    gateway.busy_first = 2
    rc, lines, err = device.buy(1)
    assert rc == 0, err
    assert len(set(gateway.received)) == 1 and len(gateway.received) == 3
    assert gateway.book.charged == PRICE


def test_provider_error_charges_nothing(gateway: FakeGateway, device: Device) -> None:
    gateway.provider_error_first = 1
    rc, lines, _ = device.buy(2)
    rows = purchases(lines)
    assert [x["error"] for x in rows] == ["ProviderError", None]
    # the refused voucher is never signed below: the next one re-uses its amount
    assert rows[1]["cumulative"] == PRICE and gateway.book.charged == PRICE


def test_bad_receipt_is_reported(gateway: FakeGateway, device: Device) -> None:
    gateway.bad_receipt = True
    rc, lines, _ = device.buy(1)
    row = purchases(lines)[0]
    assert row["error"] == "ProviderError" and "receipt" in row["message"]
    assert not row["receipt_verified"]


def test_malformed_and_oversized_responses_sign_nothing_new(
        gateway: FakeGateway, tmp_path: Path, mosquitto) -> None:
    gateway.overrides = [lambda rid: b"\xff\x00", lambda rid: b"\x40" * 9000] * 50
    dev = Device(tmp_path / "dev", mosquitto.port, timeout_ms=2500, resend_ms=500)
    rc, lines, _ = dev.buy(1)
    assert purchases(lines)[0]["error"] == "MALFORMED"
    assert len(gateway.received) >= 2 and len(set(gateway.received)) == 1  # same bytes
    gateway.overrides = []
    rc, lines, err = dev.buy(1)
    assert rc == 0, err
    assert gateway.received[-2] == gateway.received[0]  # the pending one went first
    assert gateway.book.charged == 2 * PRICE


def test_unknown_error_code_charges_nothing(gateway: FakeGateway, device: Device) -> None:
    gateway.overrides = [lambda rid: gateway.error_bytes(rid, 99, "from the future")]
    rc, lines, _ = device.buy(2)
    rows = purchases(lines)
    assert rows[0]["error"] == "UNKNOWN_99" and rows[1]["ok"]
    assert rows[1]["cumulative"] == PRICE and gateway.book.charged == PRICE


def test_error_codes_map_to_clear_errors(gateway: FakeGateway, device: Device) -> None:
    def reply(code: int):
        return lambda rid: gateway.error_bytes(rid, code, f"code {code}")

    codes = [15, 31, 11, 13, 14, 4, 3, 10]
    gateway.overrides = [reply(code) for code in codes]
    rc, lines, _ = device.buy(len(codes) + 1)
    errors = [x["error"] for x in purchases(lines)]
    assert errors == ["BudgetExhausted", "ProviderError", "CHANNEL_EXPIRING", "BAD_SIGNATURE",
                      "UNDERPAID", "UNKNOWN_PRODUCT", "UNSUPPORTED_VERSION", "UNKNOWN_CHANNEL",
                      None]
    # after UNDERPAID / UNKNOWN_PRODUCT the catalog was read again; nothing was charged
    # for the refused vouchers and no voucher went below one already signed
    assert gateway.book.charged == PRICE and lines[-1]["cumulative"] == PRICE


def test_catalog_with_bad_signature_signs_nothing(
        gateway: FakeGateway, tmp_path: Path, mosquitto) -> None:
    gateway.publish_catalog(gateway.catalog_bytes(seq=5, key=bytes.fromhex("33" * 32)))
    dev = Device(tmp_path / "dev", mosquitto.port, timeout_ms=1500)
    rc, lines, _ = dev.buy(1)
    assert purchases(lines)[0]["error"] == "ProviderError"
    assert gateway.received == []


def test_power_cut_while_waiting_resends_at_boot(gateway: FakeGateway, device: Device) -> None:
    gateway.drop_first = 10 ** 6
    proc = device.popen("--buy", "weather", "--count", "1")
    deadline = time.monotonic() + 20
    while not gateway.received and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()  # power cut with the request unanswered
    proc.communicate(timeout=10)
    gateway.drop_first = 0
    first = gateway.received[0]
    rc, lines, err = device.buy(1)
    assert rc == 0, err
    assert gateway.received[-2] == first  # re-sent byte for byte at boot
    assert lines[-1]["cumulative"] == 2 * PRICE and gateway.book.charged == 2 * PRICE
    assert gateway.book.request_hash != keccak(first)  # the second purchase is its own


def test_broker_restart_mid_flight(gateway: FakeGateway, device: Device, mosquitto) -> None:
    proc = device.popen("--buy", "weather", "--count", "8", "--interval-ms", "150")
    lines = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        lines.append(json.loads(raw))
        if len(lines) == 3:
            mosquitto.restart()
        if lines[-1].get("summary"):
            break
    proc.wait(30)
    rows = purchases(lines)
    assert [x["ok"] for x in rows] == [True] * 8, rows
    assert lines[-1]["mqtt_connects"] >= 2
    assert gateway.book.accepted == 8 and gateway.book.charged == 8 * PRICE
    assert lines[-1]["cumulative"] == 8 * PRICE


def test_init_key_makes_the_key_once(tmp_path: Path) -> None:
    dev = Device(tmp_path / "dev", 1)
    (dev.folder / "device.key").unlink()
    rc, lines, _ = dev.run("--init-key")
    assert rc == 0 and lines[0]["created"] and lines[0]["address"].startswith("0x")
    key = (dev.folder / "device.key").read_text()
    rc, again, _ = dev.run("--init-key")
    assert not again[0]["created"] and again[0]["address"] == lines[0]["address"]
    assert (dev.folder / "device.key").read_text() == key
    from nanotoll.protocol.signing import address_of
    assert address_of(bytes.fromhex(key)) == lines[0]["address"]
    assert address_of(PROVIDER_KEY) != lines[0]["address"]


def test_example_drone_app_flies_its_plan(gateway: FakeGateway, device: Device) -> None:
    rc, lines, err = device.run("--app", "flight")
    assert rc == 0, err
    steps = [x.get("step") for x in lines if "step" in x]
    assert steps == ["route", "leg", "leg", "leg"]
    summary = lines[-1]
    assert summary["purchases"] == 7
    assert summary["cumulative"] == 25000 + 3 * (4000 + PRICE) == gateway.book.charged
    assert [x["weather"] for x in lines if x.get("step") == "leg"][0] == ["product", "seq"]


def test_bad_or_oversized_params_sign_nothing(gateway: FakeGateway, device: Device) -> None:
    rc, lines, _ = device.buy(1, "weather", "--params", '{"lat": 52.52}')
    assert purchases(lines)[0]["error"] == "BAD_PARAMS"
    big = device.folder / "big.json"
    big.write_text(json.dumps({"note": "x" * 600}))
    rc, lines, _ = device.buy(1, "weather", "--params", f"@{big}")
    assert purchases(lines)[0]["error"] == "TOO_LARGE"
    assert gateway.received == [] and lines[-1]["cumulative"] == 0


def test_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    from nanotoll.servers.process import free_port

    dev = Device(tmp_path / "dev", free_port(), timeout_ms=1500)
    rc, lines, err = dev.buy(2)
    assert rc == 1 and "Traceback" not in err
    assert lines[-1]["summary"] and lines[-1]["error"] == "Timeout" and lines[-1]["failed"] == 2
