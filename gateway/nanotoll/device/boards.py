"""What each supported board needs: the .mpy architecture, how its MicroPython says
who it is, and which files go where on its file system (the firmware modules the
manifest gives it, the manifest itself, and the board's own files)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .manifest import BOARDS_DIR, MANIFEST_PATH, read_manifest

# device.py reads its boot order from the manifest, so it goes along as text.
MANIFEST_DEST = "/lib/manifest.py"

# sys.implementation._mpy: bits 0-7 .mpy version, 8-9 sub-version, 10+ native arch.
MPY_VERSION = 6
MPY_SUB_VERSION = 3
ARCH_CODES = {"armv6m": 4, "armv7m": 5, "armv7em": 6, "armv7emsp": 7, "armv7emdp": 8,
              "xtensa": 9, "xtensawin": 10}
ARCH_NAMES = {code: name for name, code in ARCH_CODES.items()}
ARCH_NAMES.update({0: "none", 1: "x86", 2: "x64", 3: "armv6", 11: "rv32imc"})


@dataclass(frozen=True)
class BoardSpec:
    name: str
    arch: str  # mpy-cross -march
    platform: str  # sys.platform on the board
    board_files: tuple[tuple[str, str], ...]  # (file under boards/, path on the board)
    wifi: bool
    description: str

    def arch_ok(self, device_arch: int) -> bool:
        """Whether a board reporting ``device_arch`` loads .mpy files made for ours."""
        want = ARCH_CODES[self.arch]
        if self.arch.startswith("arm"):
            # Thumb boards run native code of any Thumb arch from armv6m up to their own.
            return ARCH_CODES["armv6m"] <= want <= device_arch <= ARCH_CODES["armv7emdp"]
        return device_arch == want

    def sources(self) -> list[tuple[Path, str]]:
        """(source file, path on the board) for everything flash installs."""
        files = [(module.path, f"/lib/{module.path.name}")
                 for module in read_manifest().for_board(self.name)]
        files.append((MANIFEST_PATH, MANIFEST_DEST))
        files += [(BOARDS_DIR / src, dest) for src, dest in self.board_files]
        return files


BOARDS: dict[str, BoardSpec] = {
    "esp32": BoardSpec(
        "esp32", "xtensawin", "esp32",
        (("esp32/board.py", "/lib/board.py"), ("esp32/main.py", "/main.py")),
        wifi=True, description="ESP32 (Xtensa LX6, stock MicroPython, Wi-Fi)"),
    "rp2040_picow": BoardSpec(
        "rp2040_picow", "armv6m", "rp2",
        (("rp2040_picow/board.py", "/lib/board.py"), ("rp2040_picow/main.py", "/main.py")),
        wifi=True, description="Raspberry Pi Pico W (RP2040, stock MicroPython, Wi-Fi)"),
    "qemu_mps2": BoardSpec(
        "qemu_mps2", "armv7m", "qemu",
        (("qemu_mps2/native/board.py", "/lib/board.py"),
         ("qemu_mps2/native/main.py", "/main.py")),
        wifi=False,
        description="emulated mps2-an385 (Cortex-M3) with the boards/qemu_mps2 firmware"),
}


def board_spec(name: str) -> BoardSpec:
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r} (known: {', '.join(BOARDS)})") from None
