"""The payment agent on the emulated Cortex-M3 board (QEMU mps2-an385).

MicroPython runs in QEMU with UART0 as its REPL (a pty, driven with mpremote) and
UART1 as the agent's MQTT link: QEMU's second ``-serial tcp:`` connects to a relay
here that carries the bytes to a real broker. The board has no network, no clock
and no file system; ``boards/qemu_mps2`` supplies ``time``, ``select`` (for asyncio),
a UART driver and a RAM file system for the state record.

Used by tests/test_agent_qemu.py (purchases on the emulated board) and by
``run_agent_bench()`` (instructions and least free heap of one purchase).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from .device import BoardError, mpy_cross, qemu_firmware

ROOT = Path(__file__).resolve().parents[3]
BOARD_DIR = ROOT / "boards" / "qemu_mps2"
# The agent's modules on the board (the viper keccak and field code included);
# _field_plain is the fallback for ports without the native emitter.
AGENT_MODULES = (
    "_keccak_viper", "keccak", "_field_viper", "secp256k1", "eip712", "cbor", "voucher",
    "errors", "mqtt", "store", "policy", "wallet", "agent", "device", "console",
)  # fmt: skip
BOARD_MODULES = ("time", "select", "aiotask", "uart", "ramfs", "board", "main")
RAMFS_SOURCE = BOARD_DIR / "ramfs.py"
# Dependencies first; board registers aiotask before anything imports asyncio.
IMPORT_ORDER = (
    "time", "select", "aiotask", "uart", "ramfs", "errors", "_keccak_viper", "keccak", "cbor",
    "eip712", "_field_viper", "secp256k1", "voucher", "wallet", "mqtt", "board", "store",
    "policy", "agent", "device", "console",
)  # fmt: skip


class UartRelay:
    """Carries UART1's bytes to the broker: QEMU connects here; each broker connection
    is opened on the first byte the board sends and dropped when the broker closes it
    (the board then reconnects over the same serial line)."""

    def __init__(self, broker_host: str, broker_port: int) -> None:
        self.broker = (broker_host, broker_port)
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(1)
        self.port = int(self._server.getsockname()[1])
        self._uart: socket.socket | None = None
        self._upstream: socket.socket | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.broker_connections = 0

    def start(self) -> UartRelay:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            self._uart = conn
            self._from_board(conn)
            return

    def _open_upstream(self) -> socket.socket:
        with self._lock:
            if self._upstream is None:
                upstream = socket.create_connection(self.broker, timeout=5)
                upstream.settimeout(None)
                self._upstream = upstream
                self.broker_connections += 1
                thread = threading.Thread(target=self._from_broker, args=(upstream,),
                                          daemon=True)
                thread.start()
                self._threads.append(thread)
            return self._upstream

    def _drop_upstream(self, upstream: socket.socket) -> None:
        with self._lock:
            if self._upstream is upstream:
                self._upstream = None
        with contextlib.suppress(OSError):
            upstream.close()

    def _from_board(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            try:
                upstream = self._open_upstream()
                upstream.sendall(data)
            except OSError:
                if self._upstream is not None:
                    self._drop_upstream(self._upstream)

    def _from_broker(self, upstream: socket.socket) -> None:
        while True:
            try:
                data = upstream.recv(4096)
            except OSError:
                data = b""
            if not data:
                self._drop_upstream(upstream)
                return
            try:
                if self._uart is not None:
                    self._uart.sendall(data)
            except OSError:
                return

    def drop_broker(self) -> None:
        """Cut the broker side now (what a broker crash looks like to the board)."""
        if self._upstream is not None:
            self._drop_upstream(self._upstream)

    def close(self) -> None:
        self._stop.set()
        for sock in (self._server, self._uart, self._upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def __enter__(self) -> UartRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class AgentBoard:
    """QEMU mps2-an385 with the REPL on a pty and UART1 on the relay's TCP port."""

    def __init__(self, uart_port: int, icount: bool = False, timeout: float = 120) -> None:
        self.uart_port = uart_port
        self.icount = icount
        self.timeout = timeout
        self.firmware = qemu_firmware()
        self._process: subprocess.Popen[str] | None = None
        self.transport: Any = None

    def __enter__(self) -> AgentBoard:
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
                   "-semihosting", "-serial", "pty",
                   "-serial", f"tcp:127.0.0.1:{self.uart_port}",
                   "-kernel", str(self.firmware)]
        if self.icount:
            command[1:1] = ["-icount", "shift=0"]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        match = re.search(r"(/dev/pts/\d+)", line)
        if match is None:
            self.stop()
            raise BoardError(f"qemu did not report its serial pty: {line.strip()!r}")
        self.transport = SerialTransport(match.group(1), baudrate=115200)
        self.transport.enter_raw_repl(soft_reset=False)

    def stop(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):
                if getattr(self.transport, "mounted", False):
                    self.transport.umount_local()
            with contextlib.suppress(OSError):
                self.transport.close()
            self.transport = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def exec(self, code: str, timeout: float | None = None) -> str:
        out, err = self.transport.exec_raw(code, timeout=timeout or self.timeout)
        if err:
            raise BoardError((out + err).decode(errors="replace").strip())
        return str(out.decode(errors="replace"))

    def deploy(self, folder: Path) -> None:
        """A RAM file system on the board (this port has none, and mpremote's mount needs
        `select`) as the working folder, holding the staged folder's non-module files;
        modules come with import_modules()."""
        import base64

        self.exec(RAMFS_SOURCE.read_text() + "\n_dfs = RamFS()\nvfs.mount(_dfs, '/fw')\n"
                  "import os, sys\nos.chdir('/fw')\n"
                  "sys.path[:0] = ['firmware', 'boards/qemu_mps2', 'examples/drone']\n")
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_dir():
                self.exec(f"_dfs.dirs.add({rel!r})")
            elif path.suffix != ".mpy" and not (path.suffix == ".py" and path.name != "main.py"):
                data = base64.b64encode(path.read_bytes()).decode()
                self.exec(f"_dfs.files[{rel!r}] = __import__('binascii').a2b_base64({data!r})")
        self.exec("__import__('gc').collect()")

    def import_modules(self, folder: Path) -> None:
        """Import every staged module one at a time, forgetting each file once imported:
        the board keeps the modules (as a board with its .mpy files in flash would), not
        their files. main.py and config.json stay."""
        import base64

        for name in IMPORT_ORDER:
            for rel in (f"boards/qemu_mps2/{name}", f"firmware/{name}"):
                path = next((p for p in (folder / f"{rel}.mpy", folder / f"{rel}.py")
                             if p.exists()), None)
                if path is None:
                    continue
                key = path.relative_to(folder).as_posix()
                data = base64.b64encode(path.read_bytes()).decode()
                self.exec(f"_dfs.files[{key!r}] = __import__('binascii').a2b_base64({data!r})\n"
                          f"import {name}\ndel _dfs.files[{key!r}]\n"
                          "__import__('gc').collect()")
                if name == "aiotask":  # what board.py does, before asyncio is imported
                    self.exec("import sys\nsys.modules['asyncio.task'] = aiotask")
                break


def stage(folder: Path, config: dict[str, Any], compiled: bool = True) -> str:
    """Lay out what the board imports: firmware/, boards/qemu_mps2/, examples/drone/ and
    config.json. Modules go as .mpy for armv7m when mpy-cross is there (as a drone
    gets them with mpremote), else as source. Returns how they were deployed."""
    compiler = mpy_cross() if compiled else None
    layout = [(ROOT / "firmware", folder / "firmware", AGENT_MODULES),
              (BOARD_DIR, folder / "boards" / "qemu_mps2", BOARD_MODULES),
              (ROOT / "examples" / "drone", folder / "examples" / "drone", ("flight",))]
    for source, target, names in layout:
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            path = source / f"{name}.py"
            # main.py is run as a file, so it stays source
            if compiler is None or name == "main":
                shutil.copy(path, target / path.name)
            else:
                subprocess.run([str(compiler), "-march=armv7m", "-o",
                                str(target / f"{name}.mpy"), str(path)],
                               check=True, capture_output=True)
    (folder / "config.json").write_text(json.dumps(config))
    return "source" if compiler is None else ".mpy from mpy-cross -march=armv7m"


def run_console(board: AgentBoard, args: list[str], timeout: float = 300) -> list[dict[str, Any]]:
    """Run boards/qemu_mps2/main.py with the console ARGS; its JSON lines."""
    out = board.exec(f"ARGS = {args!r}\nexec(open('boards/qemu_mps2/main.py').read())",
                     timeout=timeout)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def temp_stage(config: dict[str, Any], compiled: bool = True) -> tuple[Path, str]:
    folder = Path(tempfile.mkdtemp(prefix="nanotoll-qemu-agent-"))
    return folder, stage(folder, config, compiled)
