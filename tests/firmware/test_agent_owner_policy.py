"""The agent applying the owner's signed policies (tests/mpy/agent_owner_policy_mp.py on the unix
port): applied in order, each refusal logged with its reason and nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

from support.firmware_support import MPY_TESTS, run_micropython


def test_policies_applied_or_refused_with_a_log_line(tmp_path: Path) -> None:
    result = run_micropython(MPY_TESTS / "agent_owner_policy_mp.py", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    cases = {case["case"]: case for case in report["cases"]}
    first = cases["first"]
    assert first["changed"] and first["seq"] == 1 and first["budget"] == 8000
    assert not first["flash_same"] and first["log"] == "agent: policy seq 1 applied"
    same = cases["the same again (retained, on reconnect)"]
    assert not same["changed"] and same["flash_same"] and same["log"] == ""
    raised = cases["raised"]
    assert raised["changed"] and (raised["seq"], raised["budget"]) == (3, 10000)
    reasons = {
        "older seq": "seq", "replayed seq": "seq", "another owner": "signature",
        "another channel": "channel", "another escrow": "signature",
        "another chain": "signature", "budget above deposit": "limits",
        "deposit below what was signed": "deposit", "not CBOR": "malformed",
    }
    for name, reason in reasons.items():
        case = cases[name]
        assert not case["changed"] and case["flash_same"], case
        assert (case["seq"], case["budget"], case["deposit"]) == (3, 10000, 12000), case
        assert case["log"].startswith(f"agent: policy refused ({reason}): "), case
        assert case["log"].endswith("; seq 3 stays"), case
    assert report["refusals"] == len(reasons)
    assert report["after_reboot"] == [3, 10000]
