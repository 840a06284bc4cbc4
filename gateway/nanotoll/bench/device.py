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
  k*G by the comb, two inversions)
- ``instructions_per_cbor``: CBOR encoding of the 76-byte voucher
- ``instructions_per_voucher``: ``VoucherSigner.sign_voucher``, all of the above
- ``voucher_bytes``: length of the wire form
- ``min_heap_bytes``: the least free heap, measured after the modules are
  imported and the comb work buffer released, with which the board can build a
  ``VoucherSigner`` and its comb table (buffer included) and sign a voucher (a
  ballast shrinks the free heap to one free run of that size; binary search to 128
  bytes)
- ``import_heap_bytes``: heap the imported modules themselves keep (code, constants,
  and secp256k1's 4.5 KB comb work buffer, which it allocates at import)
- ``instructions_table_build``: the one-off comb table build on first use
- ``runtime``: what ran where

Instruction figures are medians over several vouchers with different amounts,
after one warm-up voucher, with the timer-read overhead subtracted.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[3]
FIRMWARE = ROOT / "firmware"
# What the voucher path imports; _field_plain and keccak's fallback stay off the board.
VOUCHER_MODULES = (
    "_keccak_viper", "keccak", "_field_viper", "secp256k1", "eip712", "cbor", "voucher",
)  # fmt: skip
TICK_INSTRUCTIONS = 40  # 25 MHz timer against 1 GHz of -icount shift=0 virtual time
# The board firmware's ROMFS partition (boards/qemu_mps2/board.h): mps2-an385's PSRAM,
# outside the 4 MB RAM that holds the firmware and its heap. Its _boot.py mounts a valid
# image there at /rom (ahead of /lib on sys.path), and .mpy files run in place.
ROMFS_ADDR = 0x21000000
ROMFS_BYTES = 256 * 1024


class BoardError(RuntimeError):
    """The emulated board could not be started or did not answer as expected."""


def _tool(env: str, default: Path | str) -> Path:
    return Path(os.environ.get(env) or default)


def qemu_firmware() -> Path:
    path = _tool("NANOTOLL_QEMU_FIRMWARE", ROOT / ".toolchain" / "qemu" / "firmware.elf")
    if not path.exists():
        raise BoardError(f"no MicroPython qemu firmware at {path}: run `make setup`")
    return path


def mpy_cross() -> Path | None:
    path = _tool("NANOTOLL_MPY_CROSS", ROOT / ".toolchain" / "bin" / "mpy-cross")
    return path if path.exists() else None


def mpy_cross_command(compiler: Path, arch: str, source: Path, out: Path) -> list[str]:
    """How every .mpy that goes to a board is made. -O3: no line-number tables and no
    asserts in the bytecode (a board keeps the loaded code in RAM; tracebacks still
    name file and function); -s: the file's own name, not the build machine's path,
    as the module's source name (it is a string the board keeps)."""
    return [str(compiler), f"-march={arch}", "-O3", "-s", source.name, "-o", str(out),
            str(source)]


# Board side: a read-only filesystem held in a dict, enough for `import`.
_RAMFS = """
import io, sys, vfs
class _RamFS:
    def __init__(self):
        self.files = {}
    def mount(self, readonly, mkfs):
        pass
    def umount(self):
        pass
    def chdir(self, path):
        pass
    def getcwd(self):
        return "/"
    def ilistdir(self, path):
        for name in self.files:
            yield (name, 0x8000, 0, len(self.files[name]))
    def stat(self, path):
        name = path.strip("/")
        if not name:
            return (0x4000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        if name in self.files:
            return (0x8000, 0, 0, 0, 0, 0, len(self.files[name]), 0, 0, 0)
        raise OSError(2)
    def open(self, path, mode):
        if "w" in mode or "a" in mode:
            raise OSError(30)
        return io.BytesIO(self.files[path.strip("/")])
_fs = _RamFS()
vfs.mount(_fs, "/fw")
sys.path.insert(0, "/fw")
"""

_UNMOUNT = """
import gc, sys, vfs
vfs.umount("/fw")
sys.path.remove("/fw")
del _fs, _RamFS
gc.collect()
"""


def romfs_image(files: dict[str, bytes]) -> bytes:
    """A ROMFS image (mpremote's make_romfs, as `mpremote romfs build|deploy` makes it)
    holding files, {path in the image: bytes}; .mpy files in it run in place."""
    import io

    from mpremote.romfs import make_romfs

    with tempfile.TemporaryDirectory(prefix="nanotoll-romfs-") as tmp:
        for name, data in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        with contextlib.redirect_stdout(io.StringIO()):  # it lists what it adds
            return bytes(make_romfs(tmp, mpy_cross=False))


def romfs_loader(image: Path, addr: int = ROMFS_ADDR) -> list[str]:
    """QEMU arguments that put a ROMFS image into the board's ROMFS partition at start:
    the emulated board's flashed content."""
    return ["-device", f"loader,file={image},addr={addr:#x},force-raw=on"]


class QemuBoard:
    """MicroPython on QEMU's mps2-an385 (Cortex-M3), driven through its raw REPL.
    romfs: an image for the ROMFS partition (the nanotoll board firmware mounts it at
    /rom; the stock firmware ignores it)."""

    def __init__(self, firmware: Path | None = None, timeout: float = 120, icount: bool = True,
                 uart_port: int | None = None, romfs: Path | None = None) -> None:
        self.firmware = firmware or qemu_firmware()
        self.timeout = timeout
        self.icount = icount  # 1 ns of virtual time per instruction: counts that do not drift
        self.uart_port = uart_port  # UART1 connects to this loopback TCP port when given
        self.romfs = romfs
        self._process: subprocess.Popen[str] | None = None
        self._transport: Any = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from mpremote.transport_serial import SerialTransport

        qemu = shutil.which("qemu-system-arm")
        if qemu is None:
            raise BoardError("qemu-system-arm is not installed: run `make setup`")
        command = [qemu, "-machine", "mps2-an385", "-nographic", "-monitor", "null",
                   "-semihosting", "-serial", "pty"]
        if self.uart_port is not None:
            command += ["-serial", f"tcp:127.0.0.1:{self.uart_port}"]
        if self.icount:
            command += ["-icount", "shift=0"]
        if self.romfs is not None:
            if self.romfs.stat().st_size > ROMFS_BYTES:
                raise BoardError(f"ROMFS image {self.romfs} is larger than the board's "
                                 f"{ROMFS_BYTES} B partition")
            command += romfs_loader(self.romfs)
        command += ["-kernel", str(self.firmware)]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        match = re.search(r"(/dev/pts/\d+)", line)
        if match is None:
            self.stop()
            raise BoardError(f"qemu did not report its serial pty: {line.strip()!r}")
        # keep reading QEMU's output so that it never blocks on a full pipe
        threading.Thread(target=self._process.stdout.read, daemon=True).start()
        self._transport = SerialTransport(match.group(1), baudrate=115200)
        self._transport.enter_raw_repl(soft_reset=False)

    def stop(self) -> None:
        if self._transport is not None:
            with contextlib.suppress(OSError):
                self._transport.close()
            self._transport = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._process.stdout.close()
            self._process = None

    def exec(self, code: str, timeout: float | None = None) -> str:
        """Run code on the board; its output, or BoardError with the board's traceback."""
        out, err = self._transport.exec_raw(code, timeout=timeout or self.timeout)
        if err:
            raise BoardError(err.decode(errors="replace").strip())
        return out.decode(errors="replace")

    def soft_reset(self) -> None:
        """A fresh interpreter and heap (what a reboot gives, without re-booting QEMU)."""
        self._transport.enter_raw_repl(soft_reset=True)

    def deploy(self, files: dict[str, bytes], keep_mounted: bool = False) -> None:
        """Serve files from a RAM filesystem and import nothing; see load()."""
        self.exec(_RAMFS)
        for name, data in files.items():
            encoded = base64.b64encode(data).decode()
            self.exec(f"_fs.files[{name!r}] = __import__('binascii').a2b_base64({encoded!r})")

    def load(self, files: dict[str, bytes], modules: Iterable[str]) -> None:
        """Import modules from files, then drop the files so only the modules stay."""
        self.deploy(files)
        self.exec("\n".join(f"import {name}" for name in modules), timeout=300)
        self.exec(_UNMOUNT)


def firmware_files(extra: Iterable[Path] = (), modules: Iterable[str] = VOUCHER_MODULES,
                   compiled: bool = True) -> tuple[dict[str, bytes], str]:
    """The firmware modules as .mpy for armv7m when mpy-cross is there, else as source."""
    sources = [FIRMWARE / f"{name}.py" for name in modules] + list(extra)
    compiler = mpy_cross() if compiled else None
    if compiler is None:
        return {path.name: path.read_bytes() for path in sources}, "source compiled on the board"
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in sources:
            out = Path(tmp) / (path.stem + ".mpy")
            subprocess.run(mpy_cross_command(compiler, "armv7m", path, out),
                           check=True, capture_output=True)
            files[out.name] = out.read_bytes()
    return files, ".mpy from mpy-cross -march=armv7m -O3"


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
    before = _m32[_T + 4]
    result = call(*args)
    after = _m32[_T + 4]
    return _ticks(before, after), result

def _nothing(*args):
    return None

_key = bytes(range(1, 33))
_contract = "0x95C62b7BCa32875bad1194Eb8c6A158277366Fd9"
gc.collect()
_table, _ = _measure(secp256k1.precompute)
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


def _heap_trial(board: QemuBoard, files: dict[str, bytes], free: int) -> tuple[bool, int]:
    board.soft_reset()
    board.load(files, VOUCHER_MODULES)
    out = board.exec(_BALLAST.format(free=free), timeout=300)
    word, measured = out.split()[:2]
    return word == "OK", int(measured)


def measure_min_heap(board: QemuBoard, files: dict[str, bytes], step: int = 128) -> int:
    """The least free heap (after import) that signs a voucher, to within step bytes."""
    low, high = 0, 64 * 1024  # low fails (nothing fits in 0 bytes), high must pass
    ok, measured = _heap_trial(board, files, high)
    if not ok:
        raise BoardError(f"the voucher path fails even with {measured} bytes free")
    best = measured
    while high - low > step:
        middle = (low + high) // 2
        ok, measured = _heap_trial(board, files, middle)
        if ok:
            high, best = middle, measured
        else:
            low = middle
    return best


def run_device_bench(rounds: int = 5) -> dict[str, Any]:
    files, how = firmware_files()
    with QemuBoard() as board:
        board.soft_reset()
        before = int(board.exec("import gc; gc.collect(); print(gc.mem_free())"))
        board.load(files, VOUCHER_MODULES)
        after = int(board.exec("import gc; gc.collect(); print(gc.mem_free())"))
        backend = board.exec("import secp256k1; print(secp256k1._fe.__name__)").strip()
        started = time.monotonic()
        out = board.exec(_MEASURE.format(rounds=rounds), timeout=600)
        seconds = time.monotonic() - started
        figures = dict(line.split(" ", 1) for line in out.strip().splitlines())
        rows = eval(figures["ROWS"], {"__builtins__": {}})  # a list of int tuples we printed
        columns = list(zip(*rows, strict=True))
        empty = _median(list(columns[0]))

        def instructions(column: int) -> int:
            return (_median(list(columns[column])) - empty) * TICK_INSTRUCTIONS

        min_heap = measure_min_heap(board, files)
        implementation = board.exec(
            "import sys; print('.'.join(str(v) for v in sys.implementation.version[:3]))"
        ).strip()
    return {
        "instructions_per_digest": instructions(1),
        "instructions_per_sign": instructions(2),
        "instructions_per_cbor": instructions(3),
        "instructions_per_voucher": instructions(4),
        "instructions_table_build": int(figures["TABLE"]) * TICK_INSTRUCTIONS,
        "voucher_bytes": int(figures["BYTES"]),
        "min_heap_bytes": min_heap,
        "import_heap_bytes": before - after,
        "runtime": (
            f"MicroPython {implementation} on QEMU mps2-an385 (-icount shift=0, CMSDK timer), "
            f"{how}, field {backend}, medians of {rounds} vouchers, "
            f"{seconds:.1f} s wall for them"
        ),
    }
