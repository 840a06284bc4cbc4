"""``nanotoll bench device``: the firmware's voucher path on an emulated Cortex-M3.

QEMU runs MicroPython's ``mps2-an385`` board with ``-icount shift=0``, so every
guest instruction advances virtual time by 1 ns; the board's CMSDK timer counts
down at 25 MHz of that time, one tick per 40 instructions. The firmware modules
are cross-compiled to .mpy for armv7m (the way a drone gets them with mpremote,
not frozen) and served to the board from a RAM filesystem over the REPL pty.

Figures (``run_device_bench() -> dict``):

- ``instructions_per_digest``: EIP-712 voucher digest (two keccak-256; the domain
  separator is already cached, as it is per channel)
- ``instructions_per_sign``: secp256k1 signature of that digest (RFC 6979 nonce,
  k*G by the comb, two inversions), the comb's table (8 teeth, 65 KB) read in place
  from flash: the board's PSRAM at 0x21000000, where a ROMFS image lies, filled by
  QEMU with the table the firmware's own ``write_table`` makes under the unix port
- ``instructions_per_cbor``: CBOR encoding of the 76-byte voucher
- ``instructions_per_voucher``: ``VoucherSigner.sign_voucher``, all of the above
- ``voucher_bytes``: length of the wire form
- ``min_heap_bytes``: the least free heap, measured after the modules are
  imported and the comb work buffer released, with which the board can take the
  flash table into use, build a ``VoucherSigner`` and sign a voucher (a ballast
  shrinks the free heap to one free run of that size; binary search to 128 bytes)
- ``instructions_per_sign_ram_comb``, ``instructions_per_voucher_ram_comb``,
  ``min_heap_bytes_ram_comb``: the same without a table in flash, with the small
  comb (5 teeth, 3,968 B) secp256k1 builds in RAM on first use
- ``import_heap_bytes``: heap the imported modules themselves keep (code, constants,
  and secp256k1's comb work buffer, which it allocates at import)
- ``instructions_table_build``: the one-off build of the RAM comb on first use
- ``instructions_table_check``: taking the flash table into use (its SHA-256 checked)
- ``runtime``: what ran where

Instruction figures are medians over several vouchers with different amounts,
after one warm-up voucher, with the timer-read overhead subtracted; the heap is
collected before each measured call, so that a collection falls in a call only when
the call's own allocations cause it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ..device.image import comb_table, firmware_files
from ..device.manifest import read_manifest
from ..device.qemu import ROMFS_ADDR, BoardError, QemuBoard

TICK_INSTRUCTIONS = 40  # 25 MHz timer against 1 GHz of -icount shift=0 virtual time
# What the measured calls need: the voucher signer and the CBOR encoder.
MEASURED_MODULES = ("voucher", "cbor")


def voucher_modules() -> tuple[str, ...]:
    """The firmware modules the voucher path imports on the emulated board (no plain
    field code, no keccak fallback there), in the manifest's import order."""
    return read_manifest().with_imports(MEASURED_MODULES, "qemu_mps2")


# Board side: the CMSDK timer and the measured calls.
_MEASURE = """
import gc, machine, micropython, secp256k1, voucher, cbor
_T = const(0x40000000)
_m32 = machine.mem32
_m32[_T] = 0
_m32[_T + 8] = 0xFFFFFFFF
_m32[_T + 4] = 0xFFFFFFFF
_m32[_T] = 1

def _ticks(before, after):
    return (before - after) & 0xFFFFFFFF

def _measure(call, *args):
    gc.collect()  # a collection the call did not cause is not counted in it
    before = _m32[_T + 4]
    result = call(*args)
    after = _m32[_T + 4]
    return _ticks(before, after), result

def _nothing(*args):
    return None

_key = bytes(range(1, 33))
_contract = "0x95C62b7BCa32875bad1194Eb8c6A158277366Fd9"
gc.collect()
{table}
_signer = voucher.VoucherSigner(_key, 31337, _contract)
_signer.sign_voucher(7, 1)
_rows = []
for _i in range({rounds}):
    gc.collect()
    _amount = 1000003 * (_i + 2)
    _empty, _ = _measure(_nothing, 7, _amount)
    _digest_ticks, _digest = _measure(_signer.digest, 7, _amount)
    _sign_ticks, _sig = _measure(secp256k1.sign, _key, _digest)
    _packed = _signer.sign_voucher_packed(7, _amount)
    _cbor_ticks, _wire1 = _measure(cbor.dumps, _packed)
    _voucher_ticks, _wire = _measure(_signer.sign_voucher, 7, _amount)
    assert _wire == _wire1 and _wire[14:] == _sig
    _rows.append((_empty, _digest_ticks, _sign_ticks, _cbor_ticks, _voucher_ticks))
print("ROWS", _rows)
print("TABLE", _table)
print("BYTES", len(_wire))
"""

# Board side: the comb's table, in flash (QEMU's loader put it in PSRAM) or in RAM.
_FLASH_TABLE = f"""
import uctypes
_table, _ = _measure(secp256k1.use_table, uctypes.bytearray_at({ROMFS_ADDR:#x},
                     secp256k1.TABLE_BYTES), False)
"""
_RAM_TABLE = "_table, _ = _measure(secp256k1.precompute)"
_FLASH_TABLE_IN_USE = (f"import uctypes; secp256k1.use_table(uctypes.bytearray_at("
                       f"{ROMFS_ADDR:#x}, secp256k1.TABLE_BYTES), False)")

# Board side: leave about {free} bytes of free heap, in one piece, then run the
# voucher path. Loading the modules leaves the free heap in pieces, so first
# every piece is filled (largest chunks first); then the first, largest chunk
# is given back except for its first part, which leaves one free run of
# {free} bytes (or the whole chunk when it is smaller). mem_free() after that
# is the figure reported.
_BALLAST = """
import gc, secp256k1
secp256k1.release()  # its work buffer (made at import) is made again under the ballast
gc.collect()
_ballast = [None] * 256
_chunk = 65536
_i = 0
while _i < 256 and _chunk >= 16:
    try:
        _ballast[_i] = bytearray(_chunk)
        _i += 1
    except MemoryError:
        _chunk //= 2
_first = len(_ballast[0])
_ballast[0] = None
gc.collect()
if {free} < _first - 64:
    _ballast[0] = bytearray(_first - {free})
gc.collect()
_free = gc.mem_free()
try:
    {table}
    import voucher
    _signer = voucher.VoucherSigner(bytes(range(1, 33)), 31337, b"\\x11" * 20)
    _wire = _signer.sign_voucher(7, 123456789)
    print("OK", _free, len(_wire))
except MemoryError:
    print("NOMEM", _free)
"""


def _median(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _heap_trial(board: QemuBoard, files: dict[str, bytes], modules: tuple[str, ...],
                free: int, table: str) -> tuple[bool, int]:
    board.soft_reset()
    board.load(files, modules)
    out = board.exec(_BALLAST.format(free=free, table=table), timeout=300)
    word, measured = out.split()[:2]
    return word == "OK", int(measured)


def measure_min_heap(board: QemuBoard, files: dict[str, bytes], modules: tuple[str, ...],
                     step: int = 128, table: str = "pass") -> int:
    """The least free heap (after import) that signs a voucher, to within step bytes;
    table: board code run first under the ballast (taking a flash table into use)."""
    low, high = 0, 64 * 1024  # low fails (nothing fits in 0 bytes), high must pass
    ok, measured = _heap_trial(board, files, modules, high, table)
    if not ok:
        raise BoardError(f"the voucher path fails even with {measured} bytes free")
    best = measured
    while high - low > step:
        middle = (low + high) // 2
        ok, measured = _heap_trial(board, files, modules, middle, table)
        if ok:
            high, best = middle, measured
        else:
            low = middle
    return best


def _measure_vouchers(board: QemuBoard, rounds: int, table: str) -> tuple[dict[str, int], float]:
    started = time.monotonic()
    out = board.exec(_MEASURE.format(rounds=rounds, table=table), timeout=600)
    seconds = time.monotonic() - started
    figures = dict(line.split(" ", 1) for line in out.strip().splitlines())
    rows = eval(figures["ROWS"], {"__builtins__": {}})  # a list of int tuples we printed
    columns = list(zip(*rows, strict=True))
    empty = _median(list(columns[0]))

    def instructions(column: int) -> int:
        return (_median(list(columns[column])) - empty) * TICK_INSTRUCTIONS

    return {
        "digest": instructions(1), "sign": instructions(2), "cbor": instructions(3),
        "voucher": instructions(4), "table": int(figures["TABLE"]) * TICK_INSTRUCTIONS,
        "bytes": int(figures["BYTES"]),
    }, seconds


def run_device_bench(rounds: int = 5) -> dict[str, Any]:
    modules = voucher_modules()
    files, how = firmware_files(modules)
    with tempfile.TemporaryDirectory(prefix="nanotoll-bench-comb-") as tmp, \
            QemuBoard(romfs=comb_table(Path(tmp))) as board:
        board.soft_reset()
        before = int(board.exec("import gc; gc.collect(); print(gc.mem_free())"))
        board.load(files, modules)
        after = int(board.exec("import gc; gc.collect(); print(gc.mem_free())"))
        backend = board.exec("import secp256k1; print(secp256k1._fe.__name__)").strip()
        ram, _ = _measure_vouchers(board, rounds, _RAM_TABLE)
        board.soft_reset()
        board.load(files, modules)
        flash, seconds = _measure_vouchers(board, rounds, _FLASH_TABLE)
        min_heap = measure_min_heap(board, files, modules, table=_FLASH_TABLE_IN_USE)
        min_heap_ram = measure_min_heap(board, files, modules)
        implementation = board.exec(
            "import sys; print('.'.join(str(v) for v in sys.implementation.version[:3]))"
        ).strip()
    return {
        "instructions_per_digest": flash["digest"],
        "instructions_per_sign": flash["sign"],
        "instructions_per_cbor": flash["cbor"],
        "instructions_per_voucher": flash["voucher"],
        "instructions_per_sign_ram_comb": ram["sign"],
        "instructions_per_voucher_ram_comb": ram["voucher"],
        "instructions_table_build": ram["table"],
        "instructions_table_check": flash["table"],
        "voucher_bytes": flash["bytes"],
        "min_heap_bytes": min_heap,
        "min_heap_bytes_ram_comb": min_heap_ram,
        "import_heap_bytes": before - after,
        "runtime": (
            f"MicroPython {implementation} on QEMU mps2-an385 (-icount shift=0, CMSDK timer), "
            f"{how}, field {backend}, medians of {rounds} vouchers, "
            f"{seconds:.1f} s wall for them"
        ),
    }
