"""The firmware compiles for every board family it targets, native code included.

mpy-cross emits the viper functions for each architecture; a function too big
for an architecture's branches (armv6m on the RP2040) or a type error fails
here rather than on a drone. The qemu and unix-port tests run the code itself.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from nanotoll.device.boards import BOARDS
from nanotoll.device.manifest import FirmwareModule, read_manifest
from support.tools import require

MODULES = read_manifest().modules  # every board takes its modules from this list
# armv6m: RP2040; armv7m: the emulated Cortex-M3 and STM32; xtensawin: ESP32;
# x64: the unix port; rv32imc: ESP32-C3/C6
ARCHES = ["armv6m", "armv7m", "xtensawin", "x64", "rv32imc"]
BOARD_ARCHES = {name: spec.arch for name, spec in BOARDS.items()} | {"unix": "x64"}


def _made_for(module: FirmwareModule, arch: str) -> bool:
    # a module the manifest gives some boards only is compiled for their architectures
    # (the Thumb-2 field's instructions do not exist on armv6m, Xtensa or x64)
    return module.boards is None or arch in {BOARD_ARCHES[board] for board in module.boards}


@pytest.mark.parametrize("arch", ARCHES)
def test_firmware_compiles_for(arch: str, tmp_path: Path) -> None:
    compiler = require("mpy-cross")
    for module in (m for m in MODULES if _made_for(m, arch)):
        out = tmp_path / f"{module.name}.mpy"
        result = subprocess.run(
            [compiler, f"-march={arch}", "-o", str(out), str(module.path)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, f"{module.name} for {arch}: {result.stderr}"
        assert out.stat().st_size > 0
