"""The firmware on the emulated Cortex-M3 board (QEMU mps2-an385), through mpremote.

The modules go to the board as .mpy for armv7m (as source where mpy-cross is
missing) and every vector of tests/vectors/ is checked there by
tests/mpy/vector_check.py, the same checks the unix-port test runs.
qemu-system-arm comes with `make setup`: under CI a missing part fails the test.
"""

from __future__ import annotations

import json

import pytest
from nanotoll.device.image import firmware_files
from nanotoll.device.manifest import imported_names, read_manifest
from nanotoll.device.qemu import QemuBoard
from support.firmware_support import MPY_TESTS, VECTORS
from support.tools import require


@pytest.fixture(scope="module")
def board():
    require("qemu")
    manifest = read_manifest()
    checker = MPY_TESTS / "vector_check.py"
    needed = imported_names(checker) & set(manifest.names("qemu_mps2"))
    modules = manifest.with_imports(needed, "qemu_mps2")
    files, _ = firmware_files(modules, extra=[checker])
    with QemuBoard(timeout=120) as qemu:
        qemu.soft_reset()
        qemu.load(files, (*modules, "vector_check"))
        qemu.exec("import json, vector_check")
        yield qemu


def _check(board: QemuBoard, call: str, item: dict) -> list[str]:
    text = json.dumps(json.dumps(item))
    out = board.exec(f"print(json.dumps(vector_check.{call}(json.loads({text}))))", timeout=120)
    return json.loads(out)


def test_board_is_the_emulated_cortex_m3(board: QemuBoard) -> None:
    machine = board.exec("import sys; print(sys.implementation._machine)")
    assert "Cortex-M3" in machine
    assert board.exec("import secp256k1; print(secp256k1._fe.__name__)").strip() == "_field_thumb2"


def test_voucher_vectors_on_the_board(board: QemuBoard) -> None:
    vectors = json.loads((VECTORS / "vouchers.json").read_text())["vouchers"]
    assert len(vectors) >= 50
    problems = []
    for vector in vectors:
        problems += _check(board, "check_voucher", vector)
    assert problems == []


def test_message_and_invalid_cbor_vectors_on_the_board(board: QemuBoard) -> None:
    messages = json.loads((VECTORS / "messages.json").read_text())
    board.exec(
        f"separator = vector_check.unhex({messages['domain_separator']!r})\n"
        "def check_message(vector):\n"
        "    return vector_check.check_message(separator, vector)\n"
        "vector_check.check_message_here = check_message"
    )
    problems = []
    for vector in messages["messages"]:
        problems += _check(board, "check_message_here", vector)
    for case in json.loads((VECTORS / "cbor_invalid.json").read_text())["cases"]:
        problems += _check(board, "check_invalid", case)
    assert problems == []


def test_a_changed_vector_fails_on_the_board(board: QemuBoard) -> None:
    vector = json.loads((VECTORS / "vouchers.json").read_text())["vouchers"][3]
    vector["digest"] = vector["digest"][:-2] + ("00" if vector["digest"][-2:] != "00" else "01")
    assert _check(board, "check_voucher", vector) == [vector["name"] + ": digest differs"]
