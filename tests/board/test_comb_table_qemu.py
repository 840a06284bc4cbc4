"""Signing and verifying with the flash comb tables on the emulated Cortex-M3: the
tables read in place from the board's ROMFS partition memory (PSRAM at 0x21000000,
where QEMU's loader puts them), the voucher vectors' signatures byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from coincurve import PrivateKey
from nanotoll.bench.device import comb_table
from nanotoll.device.image import firmware_files
from nanotoll.device.manifest import FIRMWARE_DIR, read_manifest
from nanotoll.device.qemu import ROMFS_ADDR, QemuBoard
from nanotoll.protocol.signing import sign_compact
from nanotoll.servers.tools import micropython_binary
from support.firmware_support import VECTORS
from support.tools import require

VECTOR_COUNT = 12


KEY = PrivateKey(bytes(range(3, 35)))
PUBLIC = KEY.public_key.format(compressed=False)[1:]


def _key_table(folder: Path) -> bytes:
    """The key's comb table, by the firmware's write_table under the unix port."""
    path = folder / "q.tbl"
    code = (f"import secp256k1; secp256k1.write_table({str(path)!r}, "
            f"bytes.fromhex({PUBLIC.hex()!r}))")
    subprocess.run([micropython_binary(), "-c", code], check=True, timeout=120,
                   env=dict(os.environ, MICROPYPATH=str(FIRMWARE_DIR)))
    return path.read_bytes()


@pytest.fixture(scope="module")
def board():
    require("qemu")
    require("micropython")
    modules = read_manifest().with_imports({"secp256k1"}, "qemu_mps2")
    files, _ = firmware_files(modules)
    with tempfile.TemporaryDirectory(prefix="nanotoll-comb-") as tmp:
        folder = Path(tmp)
        # G's table, then the key's, one after the other in the partition's memory
        both = folder / "tables.bin"
        both.write_bytes(comb_table(folder).read_bytes() + _key_table(folder))
        with QemuBoard(timeout=120, romfs=both) as qemu:
            qemu.soft_reset()
            qemu.load(files, modules)
            qemu.exec("import secp256k1, uctypes\nfrom binascii import hexlify, unhexlify\n"
                      f"G = uctypes.bytearray_at({ROMFS_ADDR:#x}, secp256k1.TABLE_BYTES)\n"
                      f"Q = uctypes.bytearray_at({ROMFS_ADDR:#x} + secp256k1.TABLE_BYTES, "
                      "secp256k1.TABLE_BYTES)")
            yield qemu


def test_vector_signatures_with_the_table_in_flash(board: QemuBoard) -> None:
    assert board.exec("print(secp256k1.use_table(G, False))").strip() == "ok"
    vectors = json.loads((VECTORS / "vouchers.json").read_text())["vouchers"][:VECTOR_COUNT]
    for vector in vectors:
        got = board.exec(f"print(hexlify(secp256k1.sign(unhexlify({vector['private_key'][2:]!r}),"
                         f" unhexlify({vector['digest'][2:]!r}))).decode())").strip()
        assert "0x" + got == vector["signature"], vector["name"]


@pytest.mark.parametrize("key_table", [False, True], ids=["no-key-table", "both-tables"])
def test_verify_against_the_key_on_the_board(board: QemuBoard, key_table: bool) -> None:
    digest = bytes(range(32))
    good = sign_compact(KEY.secret, digest)
    other = sign_compact(bytes(range(4, 36)), digest)
    comb = f"secp256k1.open_table(Q, unhexlify({PUBLIC.hex()!r}))" if key_table else "None"
    out = board.exec(
        "secp256k1.use_table(G, False)\n"
        f"key = secp256k1.PublicKey(unhexlify({PUBLIC.hex()!r}), {comb})\n"
        f"print(key.verify(unhexlify({digest.hex()!r}), unhexlify({good.hex()!r})),"
        f" key.verify(unhexlify({digest.hex()!r}), unhexlify({other.hex()!r})))",
        timeout=300)
    assert out.split() == ["True", "False"]
