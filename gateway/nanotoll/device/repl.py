"""A board's MicroPython REPL through mpremote's serial transport.

:class:`Repl` opens the port, interrupts whatever runs (Ctrl-C), enters the raw REPL
and runs code on the board. Every failure is a :class:`DeviceError` whose message
says what is wrong and what to do; nothing here prints a traceback at the user.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from typing import Any

from .boards import ARCH_NAMES, MPY_SUB_VERSION, MPY_VERSION, BoardSpec


class DeviceError(RuntimeError):
    """A problem with the board or the port; the message says how to fix it."""


class BoardExecError(DeviceError):
    """Code run on the board raised; ``board_error`` holds its traceback text."""

    def __init__(self, message: str, board_error: str) -> None:
        super().__init__(message)
        self.board_error = board_error


# Board side: who are you, and how much room is there.
_INFO = """
import sys, os, json
_i = sys.implementation
try:
    _s = os.statvfs('/')
    _fs = [_s[0], _s[2], _s[3]]
except Exception:
    _fs = None
try:
    import mps2
    _b = mps2.BOARD
except ImportError:
    _b = None
print(json.dumps({"platform": sys.platform, "version": list(_i.version[:3]),
    "mpy": getattr(_i, "_mpy", 0), "machine": getattr(_i, "_machine", ""),
    "build": getattr(_i, "_build", ""), "fs": _fs, "nanotoll_board": _b}))
del _i, _s, _fs, _b
"""


class BoardInfo:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.platform: str = raw["platform"]
        self.version: tuple[int, ...] = tuple(raw["version"])
        self.mpy: int = int(raw["mpy"])
        self.machine: str = raw["machine"]
        self.build: str = raw["build"]
        self.nanotoll_board: str | None = raw["nanotoll_board"]
        fs = raw["fs"]
        self.block_size = int(fs[0]) if fs else 0
        self.blocks = int(fs[1]) if fs else 0
        self.free_blocks = int(fs[2]) if fs else 0

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)

    @property
    def arch(self) -> int:
        return self.mpy >> 10

    @property
    def arch_text(self) -> str:
        return ARCH_NAMES.get(self.arch, f"arch {self.arch}")

    @property
    def free_bytes(self) -> int:
        return self.block_size * self.free_blocks

    def describe(self) -> str:
        return (f"MicroPython {self.version_text} on {self.platform} ({self.machine}), "
                f".mpy {self.mpy & 0xFF}.{(self.mpy >> 8) & 3} {self.arch_text}")

    def check(self, spec: BoardSpec) -> None:
        """Refuse a board that cannot load what we compile for ``spec``."""
        if self.platform != spec.platform:
            raise DeviceError(
                f"this is not the {spec.name} board: it runs {self.describe()}. "
                f"Pick the --board that matches ({spec.name} reports sys.platform "
                f"{spec.platform!r}).")
        version, sub = self.mpy & 0xFF, (self.mpy >> 8) & 3
        if version != MPY_VERSION or sub != MPY_SUB_VERSION:
            raise DeviceError(
                f"wrong MicroPython version: the board runs {self.describe()}, but the "
                f"firmware is compiled to .mpy {MPY_VERSION}.{MPY_SUB_VERSION} "
                "(MicroPython 1.23 to 1.25). Install a stock MicroPython 1.25 image first.")
        if not spec.arch_ok(self.arch):
            raise DeviceError(
                f"wrong architecture: the board runs {self.describe()}, but {spec.name} "
                f"code is compiled for {spec.arch}. Pick the --board that matches.")
        if spec.name == "qemu_mps2" and self.nanotoll_board is None:
            raise DeviceError(
                "this emulated board runs the stock qemu firmware (no file system). Start "
                "the nanotoll board instead: `nanotoll sim board` (firmware "
                ".toolchain/qemu-nanotoll/firmware.elf, built by `make setup`).")
        if not self.blocks:
            raise DeviceError(f"the board has no file system mounted at '/': {self.describe()}")


class Repl:
    """The raw REPL of the board at ``port`` (a context manager)."""

    def __init__(self, port: str, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self._transport: Any = None
        self._raw = False

    def __enter__(self) -> Repl:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        if self.port.startswith("/dev/") and not os.path.exists(self.port):
            raise DeviceError(f"no board at {self.port}: that port does not exist. Plug the "
                              "board in, or see `ls /dev/ttyUSB* /dev/ttyACM*` "
                              "(`nanotoll sim board` prints the emulated board's port).")
        try:
            self._transport = SerialTransport(self.port, baudrate=115200)
        except TransportError as exc:
            raise DeviceError(f"no board at {self.port}: {exc}") from exc
        try:
            self._transport.enter_raw_repl(soft_reset=False, timeout_overall=self.timeout)
            self._raw = True
        except (TransportError, OSError) as exc:
            self.close()
            raise DeviceError(
                f"no MicroPython REPL answers at {self.port} ({exc}). Is it a MicroPython "
                "board, and is no other program (a terminal, mpremote) using the port?"
            ) from exc

    def close(self) -> None:
        if self._transport is not None:
            if self._raw:
                with contextlib.suppress(Exception):
                    self._transport.exit_raw_repl()
            with contextlib.suppress(Exception):
                self._transport.close()
            self._transport = None

    def exec(self, code: str, timeout: float = 60.0) -> str:
        """Run code on the board; its output, or BoardExecError with its traceback."""
        from mpremote.transport import TransportError

        try:
            out, err = self._transport.exec_raw(code, timeout=timeout)
        except TransportError as exc:
            raise DeviceError(f"the board at {self.port} stopped answering: {exc}") from exc
        if err:
            text = err.decode(errors="replace").strip()
            last = text.splitlines()[-1] if text else "error"
            raise BoardExecError(f"on the board: {last}", text)
        return str(out.decode(errors="replace"))

    def exec_json(self, code: str, timeout: float = 60.0) -> Any:
        """Run code that prints one JSON line last; that value."""
        out = self.exec(code, timeout=timeout)
        lines = [line for line in out.splitlines() if line.strip()]
        if not lines:
            raise DeviceError(f"the board printed nothing for:\n{code}")
        return json.loads(lines[-1])

    def info(self) -> BoardInfo:
        return BoardInfo(self.exec_json(_INFO))

    def write_file(self, path: str, data: bytes, chunk: int = 2048) -> None:
        """Write ``data`` to ``path`` on the board (creating or truncating it)."""
        self.exec(f"_f = open({path!r}, 'wb')\nfrom binascii import a2b_base64 as _a")
        try:
            for start in range(0, len(data), chunk):
                encoded = base64.b64encode(data[start:start + chunk]).decode()
                self.exec(f"_f.write(_a({encoded!r}))")
        finally:
            self.exec("_f.close()\ndel _f, _a")

    def read_file(self, path: str) -> bytes:
        out = self.exec(
            "from binascii import b2a_base64 as _b\n"
            f"with open({path!r}, 'rb') as _f:\n"
            "    while True:\n"
            "        _d = _f.read(1536)\n"
            "        if not _d:\n"
            "            break\n"
            "        print(_b(_d).decode().strip())\n"
            "del _b")
        return b"".join(base64.b64decode(line) for line in out.split())

    def soft_reset(self) -> None:
        """Leave the raw REPL and soft-reset as a user would (Ctrl-D at the prompt): the
        board runs boot.py and main.py again."""
        transport = self._transport
        transport.exit_raw_repl()
        self._raw = False
        transport.serial.write(b"\r\x04")
        with contextlib.suppress(Exception):
            transport.read_until(1, b"soft reboot", timeout=10)
