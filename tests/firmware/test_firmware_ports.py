"""The firmware compiles for every board family it targets, native code included.

mpy-cross emits the viper functions for each architecture; a function too big
for an architecture's branches (armv6m on the RP2040) or a type error fails
here rather than on a drone. The qemu and unix-port tests run the code itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.firmware_support import FIRMWARE, ROOT

MODULES = ["keccak", "_keccak_viper", "secp256k1", "_field_viper", "_field_plain",
           "eip712", "cbor", "voucher"]  # fmt: skip
# armv6m: RP2040; armv7m: the emulated Cortex-M3 and STM32; xtensawin: ESP32;
# x64: the unix port; rv32imc: ESP32-C3/C6
ARCHES = ["armv6m", "armv7m", "xtensawin", "x64", "rv32imc"]


def _mpy_cross() -> Path:
    path = Path(os.environ.get("NANOTOLL_MPY_CROSS", ROOT / ".toolchain" / "bin" / "mpy-cross"))
    if not path.exists():
        pytest.fail(f"mpy-cross not found at {path}: run `make setup`")
    return path


@pytest.mark.parametrize("arch", ARCHES)
def test_crypto_core_compiles_for(arch: str, tmp_path: Path) -> None:
    for name in MODULES:
        out = tmp_path / f"{name}.mpy"
        result = subprocess.run(
            [str(_mpy_cross()), f"-march={arch}", "-o", str(out), str(FIRMWARE / f"{name}.py")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, f"{name} for {arch}: {result.stderr}"
        assert out.stat().st_size > 0
