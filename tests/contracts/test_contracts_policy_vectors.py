"""The forge policy vector test (contracts/test/PolicyVectors.t.sol) against the shared policy
vectors and against copies with one byte or one field changed, which it must reject."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from nanotoll.chain.artifacts import CONTRACTS_DIR
from nanotoll.servers.tools import forge_binary

VECTORS = CONTRACTS_DIR.parent / "tests" / "vectors" / "policies.json"


def forge_policy_vectors(path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FOUNDRY_PROFILE": "default"}
    if path is not None:
        env["NANOTOLL_POLICY_VECTORS"] = str(path)  # foundry.toml lets forge read /tmp
    return subprocess.run([forge_binary(), "test", "--mc", "PolicyVectorsTest", "-vv"],
                          cwd=CONTRACTS_DIR, capture_output=True, text=True, env=env,
                          timeout=900, check=False)


def test_forge_accepts_the_policy_vectors() -> None:
    result = forge_policy_vectors()
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


@pytest.mark.parametrize("change", ["digest", "signature", "domain_separator", "caps_hash",
                                    "budget"])
def test_forge_rejects_a_changed_policy(tmp_path: Path, change: str) -> None:
    document = json.loads(VECTORS.read_text())
    policy = document["policies"][1]
    if change == "budget":
        policy["fields"]["budget"] = str(int(policy["fields"]["budget"]) - 1)
    else:
        raw = bytearray.fromhex(policy[change][2:])
        raw[len(raw) // 2] ^= 0x01
        policy[change] = "0x" + raw.hex()
    mutated = tmp_path / "policies.json"
    mutated.write_text(json.dumps(document))
    result = forge_policy_vectors(mutated)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert policy["name"] in output, output[-3000:]
