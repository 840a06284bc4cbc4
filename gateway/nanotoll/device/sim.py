"""The emulated board: QEMU mps2-an385 running the nanotoll board firmware.

UART0 is the REPL, on a pty that mpremote (and ``nanotoll device ...``) use like a USB
serial port; UART1 is the board's broker link, which QEMU connects to a
:class:`~nanotoll.device.bridge.UartBridge` on loopback, relaying to mosquitto. Its
file system (littlefs in RAM) starts empty at every boot: flash it, as a real board.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

from ..servers.process import LOOPBACK, stop_process
from ..servers.tools import REPO_ROOT
from .bridge import UartBridge
from .qemu import romfs_loader
from .repl import DeviceError

DEFAULT_FIRMWARE = REPO_ROOT / ".toolchain" / "qemu-nanotoll" / "firmware.elf"


def board_firmware() -> Path:
    path = Path(os.environ.get("NANOTOLL_QEMU_BOARD_FIRMWARE") or DEFAULT_FIRMWARE)
    if not path.exists():
        raise DeviceError(f"no emulated board firmware at {path}: run `make setup` "
                          "(step 'emulated board qemu_mps2')")
    return path


class BoardSim:
    """QEMU with the board firmware and its UART bridge (a context manager)."""

    def __init__(self, broker_host: str = LOOPBACK, broker_port: int = 1883,
                 firmware: Path | None = None, icount: bool = False,
                 log_path: Path | None = None, bridge_log: bool = False,
                 romfs: Path | None = None, ca_file: Path | None = None) -> None:
        self.firmware = firmware or board_firmware()
        self.icount = icount
        self.romfs = romfs  # a ROMFS image "flashed" into the board's ROMFS partition
        self.log_path = log_path
        # With the broker's CA, the bridge makes the TLS connection for the board.
        self.bridge = UartBridge(broker_host, broker_port, log=bridge_log,
                                 ca_file=str(ca_file) if ca_file is not None else None)
        self.process: subprocess.Popen[str] | None = None
        self.pty: str = ""
        self._reader: threading.Thread | None = None

    def __enter__(self) -> BoardSim:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def command(self) -> list[str]:
        qemu = shutil.which("qemu-system-arm")
        if qemu is None:
            raise DeviceError("qemu-system-arm is not installed: run `make setup`")
        command = [qemu, "-machine", "mps2-an385", "-nographic", "-monitor", "null",
                   "-semihosting", "-serial", "pty",
                   "-serial", f"tcp:{LOOPBACK}:{self.bridge.port}",
                   "-kernel", str(self.firmware)]
        if self.romfs is not None:
            command[-2:-2] = romfs_loader(self.romfs)
        if self.icount:
            command[1:1] = ["-icount", "shift=0"]
        return command

    def start(self) -> None:
        self.bridge.start()
        try:
            self.process = subprocess.Popen(
                self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True)
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            match = re.search(r"(/dev/pts/\d+)", line)
            if match is None:
                rest = line + self.process.stdout.read(2000) if self.process.poll() else line
                raise DeviceError(f"qemu did not report its REPL pty: {rest.strip()!r}")
            self.pty = match.group(1)
            self._reader = threading.Thread(target=self._drain, daemon=True)
            self._reader.start()
            self.bridge.wait_for_board()
        except BaseException:
            self.stop()
            raise

    def _drain(self) -> None:
        # QEMU's own messages (none expected after the pty line); kept in the log.
        assert self.process is not None and self.process.stdout is not None
        log = self.log_path.open("a") if self.log_path else None
        try:
            for line in self.process.stdout:
                if log:
                    log.write(line)
                    log.flush()
        finally:
            if log:
                log.close()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)  # type: ignore[arg-type]
            self.process = None
        self.bridge.stop()
