"""The owner-signed policy on the unix port: the shared vectors (hashes, digest, signer,
every device verdict, invalid policies) and a changed vector that must fail."""

from __future__ import annotations

import json
from pathlib import Path

from support.firmware_support import MPY_TESTS, VECTORS, run_micropython

SCRIPT = MPY_TESTS / "policy_vectors_mp.py"


def test_policy_vectors_hold_on_the_unix_port(tmp_path: Path) -> None:
    result = run_micropython(SCRIPT, str(VECTORS / "policies.json"), str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((VECTORS / "policies.json").read_text())
    assert result.stdout.strip().splitlines()[-1] == (
        f"checked {len(data['policies'])} policies, {len(data['verdicts'])} verdicts, "
        f"{len(data['invalid'])} invalid - 0 problems")
    assert (tmp_path / "policy.rec").exists()


def test_a_changed_verdict_or_digest_fails(tmp_path: Path) -> None:
    data = json.loads((VECTORS / "policies.json").read_text())
    data["verdicts"][2]["outcome"] = "applied"  # a replayed seq must be refused
    data["policies"][1]["digest"] = data["policies"][1]["digest"][:-1] + "0"
    if data["policies"][1]["digest"] == json.loads(
            (VECTORS / "policies.json").read_text())["policies"][1]["digest"]:
        data["policies"][1]["digest"] = data["policies"][1]["digest"][:-1] + "1"
    mutated = tmp_path / "policies.json"
    mutated.write_text(json.dumps(data))
    work = tmp_path / "work"
    work.mkdir()
    result = run_micropython(SCRIPT, str(mutated), str(work))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MISMATCH no lists, defaults: verdict seq, expected applied" in result.stdout
    assert "MISMATCH every limit and list: digest" in result.stdout
