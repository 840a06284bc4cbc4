"""MicroPython on QEMU's mps2-an385 (Cortex-M3), driven through its raw REPL: the board
the benches and the board tests run. With ``-icount shift=0`` every guest instruction
advances virtual time by 1 ns, so counts taken with the board's timer do not drift."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

from ..servers.tools import REPO_ROOT
from .manifest import read_manifest

# The board firmware's ROMFS partition (boards/qemu_mps2/board.h): mps2-an385's PSRAM,
# outside the 4 MB RAM that holds the firmware and its heap. Its _boot.py mounts a valid
# image there at /rom (ahead of /lib on sys.path), and .mpy files run in place.
ROMFS_ADDR = 0x21000000
ROMFS_BYTES = 256 * 1024


class BoardError(RuntimeError):
    """The emulated board could not be started or did not answer as expected."""


def qemu_firmware() -> Path:
    path = Path(os.environ.get("NANOTOLL_QEMU_FIRMWARE")
                or REPO_ROOT / ".toolchain" / "qemu" / "firmware.elf")
    if not path.exists():
        raise BoardError(f"no MicroPython qemu firmware at {path}: run `make setup`")
    return path


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
        """Import modules from files, then drop the files so only the modules stay.
        Modules the firmware imports on demand and drops after each use (the manifest's
        on_demand) are not imported here and keep their files, as they do in flash."""
        on_demand = {m.name for m in read_manifest().modules if m.on_demand}
        kept = sorted(name for name in files if name.rsplit(".", 1)[0] in on_demand)
        self.deploy(files)
        imported = [name for name in modules if name not in on_demand]
        self.exec("\n".join(f"import {name}" for name in imported), timeout=300)
        if not kept:
            self.exec(_UNMOUNT)
            return
        self.exec(f"for _name in [n for n in _fs.files if n not in {kept!r}]:\n"
                  "    del _fs.files[_name]\n"
                  "__import__('gc').collect()")
