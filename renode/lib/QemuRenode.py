"""Renode's test keywords, carried out on nanotoll's emulated board in QEMU.

The suites in renode/tests are written for `renode-test`, with Renode's keywords
(`Execute Command`, `Create Terminal Tester`, `Start Emulation`, `Wait For Line On
Uart`, `Wait For Prompt On Uart`, `Write Line To Uart`, `Setup`, `Teardown`,
`Test Teardown`, ...). Renode cannot be installed on the project's machines, so this
library gives those keywords the same meaning on QEMU's mps2-an385 running the
boards/qemu_mps2 firmware: the terminal tester reads and writes the board's UART0
(the REPL) through QEMU's pty. Monitor commands (`Execute Command`, `Execute Script`)
set up a Renode machine; here the machine is fixed, so they are logged and skipped.

Use: robot --variable RENODEKEYWORDS:renode/lib/qemu.resource renode/tests
"""

from __future__ import annotations

import os
import re
import select
import sys
import time
from pathlib import Path

from robot.api import logger

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gateway"))

import contextlib

import _shared  # noqa: E402


class Terminal:
    """UART0 of the emulated board through its pty, line by line."""

    def __init__(self, port: str) -> None:
        self.port = port
        self.fd: int | None = None
        self.buffer = b""

    def open(self) -> None:
        if self.fd is None:
            self.fd = os.open(self.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            import termios
            import tty

            tty.setraw(self.fd, termios.TCSANOW)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            self.buffer = b""

    def write(self, data: bytes) -> None:
        self.open()
        assert self.fd is not None
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self.fd, view)
            except BlockingIOError:
                select.select([], [self.fd], [], 1.0)
                continue
            view = view[sent:]

    def _fill(self, until: float) -> bool:
        self.open()
        assert self.fd is not None
        left = until - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
        if ready:
            with contextlib.suppress(BlockingIOError):
                self.buffer += os.read(self.fd, 4096)
        return True

    def wait_line(self, pattern: str, regex: bool, timeout: float,
                  unfinished: bool = False) -> str:
        until = time.monotonic() + timeout
        matcher = re.compile(pattern) if regex else None
        while True:
            while b"\n" in self.buffer or (unfinished and self.buffer):
                if b"\n" in self.buffer:
                    raw, self.buffer = self.buffer.split(b"\n", 1)
                else:
                    raw, self.buffer = self.buffer, b""
                line = raw.decode(errors="replace").rstrip("\r")
                logger.debug(f"uart: {line}")
                if (matcher.search(line) if matcher else pattern in line):
                    return line
            if not self._fill(until):
                raise AssertionError(f"no line with {pattern!r} on the UART within "
                                     f"{timeout} s")

    def wait_prompt(self, prompt: str, timeout: float) -> None:
        until = time.monotonic() + timeout
        while True:
            text = self.buffer.decode(errors="replace")
            index = text.find(prompt)
            if index >= 0:
                self.buffer = self.buffer[len(text[:index + len(prompt)].encode()):]
                return
            if not self._fill(until):
                raise AssertionError(f"no prompt {prompt!r} on the UART within {timeout} s")


class TesterResult:
    """What Renode's Wait For ... keywords return: `${result.line}` is the matched line."""

    def __init__(self, line: str) -> None:
        self.line = line

    def __str__(self) -> str:
        return self.line


class QemuRenode:
    """Renode's Robot keywords on QEMU (see the module text)."""

    ROBOT_LIBRARY_SCOPE = "GLOBAL"

    def __init__(self) -> None:
        self.timeout = 20.0
        self.terminal: Terminal | None = None

    # Renode's suite/test fixtures -----------------------------------------------

    def setup(self) -> None:
        logger.info("emulator: QEMU mps2-an385 with the boards/qemu_mps2 firmware")

    def teardown(self) -> None:
        self.reset_emulation()

    def test_teardown(self) -> None:
        self.reset_emulation()

    # Machine set-up: Renode monitor commands -------------------------------------

    def execute_command(self, command: str, machine: str | None = None) -> str:
        logger.info(f"Renode monitor command, not needed under QEMU: {command}")
        return ""

    def execute_script(self, path: str) -> str:
        logger.info(f"Renode script, not needed under QEMU: {path}")
        return ""

    def create_terminal_tester(self, uart: str, timeout: float = 20, machine: str | None = None,
                               endLineOption: str | None = None,  # noqa: N803 - Renode's name
                               defaultPauseEmulation: bool = False) -> int:  # noqa: N803
        """Renode attaches a tester to `uart`; here it is always the REPL's UART0."""
        self.timeout = float(timeout)
        logger.info(f"terminal tester on {uart} -> the board's UART0 (REPL pty)")
        return 0

    def start_emulation(self) -> None:
        from nanotoll.device.sim import BoardSim

        broker = _shared.board["broker"]
        if broker is None:
            # No payment stack (boot, voucher): the board makes no broker connection.
            sim = BoardSim()
        else:
            host, port, ca_file = broker  # the secure broker: the bridge makes the TLS
            sim = BoardSim(host, port, ca_file=ca_file)
        sim.start()
        _shared.board["sim"] = sim
        _shared.board["port"] = sim.pty
        self.terminal = Terminal(sim.pty)
        _shared.board["terminal"] = self.terminal
        logger.info(f"QEMU started; REPL on {sim.pty}")

    def reset_emulation(self) -> None:
        if self.terminal is not None:
            self.terminal.close()
            self.terminal = None
        sim = _shared.board.get("sim")
        if sim is not None:
            sim.stop()
        _shared.board.update({"sim": None, "port": None, "terminal": None})

    quit_emulation = reset_emulation

    # UART ----------------------------------------------------------------------

    def _term(self) -> Terminal:
        if self.terminal is None:
            raise AssertionError("no emulation: call Start Emulation first")
        return self.terminal

    def write_line_to_uart(self, content: str = "", testerId: int | None = None,  # noqa: N803
                           waitForEcho: bool = False) -> None:  # noqa: N803
        self._term().write(content.encode() + b"\r")

    def write_char_on_uart(self, char: str, testerId: int | None = None) -> None:  # noqa: N803
        self._term().write(char.encode())

    def wait_for_line_on_uart(self, content: str, timeout: float | None = None,
                              testerId: int | None = None,  # noqa: N803
                              treatAsRegex: bool = False,  # noqa: N803
                              includeUnfinishedLine: bool = False,  # noqa: N803
                              pauseEmulation: bool = False) -> TesterResult:  # noqa: N803
        line = self._term().wait_line(content, bool(treatAsRegex),
                                      float(timeout or self.timeout),
                                      bool(includeUnfinishedLine))
        return TesterResult(line)

    def wait_for_prompt_on_uart(self, prompt: str, timeout: float | None = None,
                                testerId: int | None = None,  # noqa: N803
                                treatAsRegex: bool = False,  # noqa: N803
                                pauseEmulation: bool = False) -> None:  # noqa: N803
        self._term().wait_prompt(prompt, float(timeout or self.timeout))

    def should_not_be_on_uart(self, content: str, timeout: float | None = None,
                              testerId: int | None = None,  # noqa: N803
                              treatAsRegex: bool = False) -> None:  # noqa: N803
        try:
            line = self._term().wait_line(content, bool(treatAsRegex), float(timeout or 1))
        except AssertionError:
            return
        raise AssertionError(f"unexpected line on the UART: {line}")
