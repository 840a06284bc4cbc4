"""The forge vector test (contracts/test/Vectors.t.sol) against the shared vectors and against
copies with one byte changed, which it must reject, naming the vector."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from nanotoll.chain.artifacts import CONTRACTS_DIR
from nanotoll.servers.tools import forge_binary

VECTORS = CONTRACTS_DIR.parent / "tests" / "vectors" / "vouchers.json"


def forge_vectors(path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FOUNDRY_PROFILE": "default"}
    if path is not None:
        env["NANOTOLL_VECTORS"] = str(path)  # forge may read it: foundry.toml allows /tmp
    return subprocess.run([forge_binary(), "test", "--mc", "VectorsTest", "-vv"],
                          cwd=CONTRACTS_DIR, capture_output=True, text=True, env=env,
                          timeout=900, check=False)


def test_forge_accepts_the_shared_vectors() -> None:
    result = forge_vectors()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    count = len(json.loads(VECTORS.read_text())["vouchers"])
    assert f"vectors checked: {count}" in output, output[-3000:]


@pytest.mark.parametrize("field", ["wire", "digest", "domain_separator", "signature",
                                   "struct_hash"])
def test_forge_rejects_a_vector_with_one_byte_changed(tmp_path: Path, field: str) -> None:
    document = json.loads(VECTORS.read_text())
    vector = document["vouchers"][len(document["vouchers"]) // 2]
    raw = bytearray.fromhex(vector[field][2:])
    raw[len(raw) // 2] ^= 0x01
    vector[field] = "0x" + raw.hex()
    mutated = tmp_path / "vouchers.json"
    mutated.write_text(json.dumps(document))
    result = forge_vectors(mutated)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert vector["name"] in output, output[-3000:]
