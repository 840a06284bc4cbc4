"""Bad input to the firmware under MicroPython: a clear exception, never a signature."""

from __future__ import annotations

from support.firmware_support import MPY_TESTS, run_micropython

GOOD = {
    "good voucher",
    "good max voucher",
    "own voucher",
    "own packed voucher",
    "packed is wire[2:]",
}


def test_bad_keys_channels_and_amounts_are_refused() -> None:
    result = run_micropython(MPY_TESTS / "bad_input.py")
    assert result.returncode == 0, result.stderr
    outcomes = {}
    for line in result.stdout.splitlines():
        assert line.startswith("CASE ")
        name, _, outcome = line[5:].rpartition(" refused ")
        if not name:
            name, _, outcome = line[5:].rpartition(" returned ")
            outcomes[name] = "returned " + outcome
        else:
            outcomes[name] = "refused " + outcome
    assert len(outcomes) >= 40
    for name, outcome in outcomes.items():
        if name in GOOD:
            assert outcome.startswith("returned"), (name, outcome)
        else:
            assert outcome.startswith("refused"), (name, outcome)
    assert outcomes["key zero"].startswith("refused InvalidKey")
    assert outcomes["key n"].startswith("refused InvalidKey")
    assert outcomes["channel 2^32"].startswith("refused ValueError channel_id")
    assert outcomes["amount 2^64"].startswith("refused ValueError cumulative_amount")
    assert outcomes["recover high s"].startswith("refused InvalidSignature")
    assert outcomes["good voucher"] == "returned 78"
    assert outcomes["own voucher"] == outcomes["own packed voucher"] == "returned (3, 9)"
    assert outcomes["packed is wire[2:]"] == "returned True"
