"""State the two keyword libraries share within one robot run: the board's REPL port
and, under QEMU, the emulated board whose terminal must let go of the port while
mpremote uses it."""

from __future__ import annotations

from typing import Any

board: dict[str, Any] = {"port": None, "terminal": None, "sim": None, "broker": None}
