"""The emulated boards of ``fleet run --board qemu_mps2``: one QEMU mps2-an385 per device.

Every board boots the nanotoll board firmware with the same flashed ROMFS image: the
firmware modules the manifest gives the board, its board layer, G's comb table and
``boards/unix/fleet.py`` (the fleet's purchase schedule), compiled for armv7m. Its UART1
goes through its own :class:`~nanotoll.device.bridge.UartBridge` (TLS offloaded, as a
modem would) to the broker. Over the REPL on UART0 the board makes its own key, then
runs the schedule with one agent; it prints the same JSON lines as a unix-port device
process, and waits for a byte on its REPL as the go signal (it cannot see the host's go
file). :class:`BoardGroup` offers what the runner asks of a
:class:`~nanotoll.fleet.devices.DeviceGroup`.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..device.boards import BOARDS
from ..device.flash import Artifact, build, build_romfs, comb_table_artifact, split_romfs
from ..device.image import mpy_cross, mpy_cross_command
from ..device.qemu import ROMFS_BYTES
from ..device.repl import DeviceError
from .devices import DeviceSlot, deprioritise
from .options import FLEET_MAIN, FleetError

BOARD = "qemu_mps2"
# What one board costs the host, with a margin over what fleet runs here measured
# (their summary.json: memory, cpu): QEMU's resident memory, the CPU it spends idle
# (the firmware sleeps in WFI between 1 ms ticks) and per purchase on a quiet machine.
BOARD_RSS_KIB = 64 * 1024
BOARD_IDLE_CORES = 0.05
BOARD_CPU_S_PER_PURCHASE = 0.08
# What the rest of the run (gateways, broker, anvil, the runner) is left of the cores.
SPARE_CORES = 0.5
DEVICE_DIR = "/d"  # the device's folder on the board's file system (key, state record)
GO_BYTE = b"g"

# Board side: the device makes its key in its folder (once).
_MAKE_KEY = """
import os, json, board, device
try:
    os.mkdir({dir!r})
except OSError:
    pass
_a, _m = device.init_key({{"key_file": {dir!r} + "/device.key"}}, board)
print(json.dumps({{"index": {index}, "address": _a, "created": _m}}))
del _a, _m
"""

# Board side: the fleet schedule with this board's plan; go is a byte on the REPL.
_RUN = """
import sys, json, asyncio, time, fleet
async def _go(path):
    sys.stdin.read(1)
    return time.ticks_ms()
fleet.wait_go = _go
asyncio.run(fleet.run(json.loads({plan!r})))
"""


def available_kib() -> int:
    """MemAvailable of /proc/meminfo: what new processes can take without swapping."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise FleetError("/proc/meminfo has no MemAvailable line")


def capacity_problems(devices: int, rate: float, cores: int) -> list[str]:
    """Why this machine cannot hold ``devices`` emulated boards buying at ``rate`` each
    (memory, then CPU), and missing tools; empty when it can. Starts nothing."""
    import shutil

    from ..device.sim import board_firmware

    problems = []
    if shutil.which("qemu-system-arm") is None:
        problems.append("qemu-system-arm is not installed: run `make setup`")
    try:
        board_firmware()
    except DeviceError as exc:
        problems.append(str(exc))
    need_kib = devices * BOARD_RSS_KIB
    free_kib = available_kib()
    if need_kib > free_kib:
        problems.append(
            f"{devices} emulated boards need about {need_kib // 1024:,} MiB "
            f"({BOARD_RSS_KIB // 1024} MiB resident per board), the machine has "
            f"{free_kib // 1024:,} MiB available: at most {free_kib // BOARD_RSS_KIB} boards")
    need_cores = devices * (BOARD_IDLE_CORES + rate * BOARD_CPU_S_PER_PURCHASE)
    usable = cores - SPARE_CORES
    if need_cores > usable:
        per_board = BOARD_IDLE_CORES + rate * BOARD_CPU_S_PER_PURCHASE
        problems.append(
            f"{devices} emulated boards at {rate}/s need about {need_cores:.2f} cores "
            f"({BOARD_CPU_S_PER_PURCHASE * 1000:.0f} ms of CPU a purchase, "
            f"{BOARD_IDLE_CORES:.2f} cores idle per board), {usable:.1f} of the {cores} "
            f"cores are left beside the gateways and broker: at most "
            f"{int(usable / per_board)} boards at this rate")
    return problems


def board_image(folder: Path) -> Path:
    """The ROMFS image every board of the fleet is flashed with; written into folder."""
    spec = BOARDS[BOARD]
    artifacts = build(spec, say=lambda _text: None)
    modules, _rest = split_romfs(artifacts)
    compiler = mpy_cross()
    assert compiler is not None  # build() refused without one
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "fleet.mpy"
    done = subprocess.run(mpy_cross_command(compiler, spec.arch, FLEET_MAIN, out),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise FleetError(f"mpy-cross failed on {FLEET_MAIN}:\n{done.stderr.strip()}")
    files = [*modules, Artifact(FLEET_MAIN, "/lib/fleet.mpy", out.read_bytes())]
    table = comb_table_artifact()
    image = build_romfs([*files, table] if table is not None else files)
    if len(image) > ROMFS_BYTES:
        image = build_romfs(files)  # the boards build G's table at their first purchase
    if len(image) > ROMFS_BYTES:
        raise FleetError(f"the fleet's ROMFS image ({len(image):,} bytes) is larger than "
                         f"the board's {ROMFS_BYTES:,} B partition")
    path = folder / "fleet-romfs.img"
    path.write_bytes(image)
    return path


class ScriptRun:
    """The board's fleet script as the runner sees a device process: an id (QEMU's, for
    the CPU meter) and an exit code (0 once the script ended without a traceback)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = threading.Event()

    def end(self, code: int) -> None:
        self.returncode = code
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise FleetError(f"the board's script did not end within {timeout} s")
        assert self.returncode is not None
        return self.returncode


class BoardProcess:
    """One emulated board (QEMU, its UART bridge, its REPL) and its one device."""

    def __init__(self, number: int, slot: DeviceSlot, workdir: Path, image: Path,
                 broker: tuple[str, int], ca_file: Path | None) -> None:
        from ..device.sim import BoardSim

        self.number = number
        self.slots = [slot]
        self.log_path = workdir / f"board-{number:03d}.log"
        self.sim = BoardSim(broker[0], broker[1], romfs=image, log_path=self.log_path,
                            ca_file=ca_file)
        self.process: ScriptRun | None = None
        self.ready: dict[str, Any] | None = None
        self.done: dict[str, Any] | None = None
        self._transport: Any = None
        self._errors: list[str] = []

    def boot(self) -> None:
        from mpremote.transport_serial import SerialTransport

        try:
            self.sim.start()
            if self.sim.process is not None:
                deprioritise(self.sim.process.pid)  # a device, beside the parts under test
            self._transport = SerialTransport(self.sim.pty, baudrate=115200)
            self._transport.enter_raw_repl(soft_reset=False)
        except (DeviceError, OSError) as exc:
            raise FleetError(f"board {self.number} did not boot: {exc}") from None
        except Exception as exc:  # mpremote's TransportError: no raw REPL
            raise FleetError(f"board {self.number}: no raw REPL ({exc})") from None

    def make_key(self) -> str:
        slot = self.slots[0]
        out, err = self._transport.exec_raw(_MAKE_KEY.format(dir=DEVICE_DIR, index=slot.index),
                                            timeout=120)
        if err:
            raise FleetError(f"board {self.number} could not make its key: "
                             f"{err.decode(errors='replace').strip()}")
        line = json.loads(out.decode().strip().splitlines()[-1])
        slot.address = str(line["address"])
        return slot.address

    def start(self, plan: dict[str, Any],
              lines: queue.SimpleQueue[tuple[int, dict[str, Any]]]) -> None:
        assert self.sim.process is not None
        self.process = ScriptRun(self.sim.process.pid)
        self._transport.exec_raw_no_follow(_RUN.format(plan=json.dumps(plan)))
        threading.Thread(target=self._read, args=(lines,), daemon=True,
                         name=f"board-{self.number}").start()

    def _read(self, lines: queue.SimpleQueue[tuple[int, dict[str, Any]]]) -> None:
        """The script's stdout a line at a time until the raw REPL's end markers."""
        assert self.process is not None
        serial = self._transport.serial
        buffer = bytearray()
        code = 1
        with self.log_path.open("a") as log:
            try:
                while True:
                    chunk = serial.read(max(1, serial.in_waiting))
                    if not chunk:
                        if self.sim.process is None or self.sim.process.poll() is not None:
                            break
                        continue
                    buffer += chunk
                    end = buffer.find(b"\x04")
                    if end >= 0:  # stdout ends; stderr follows up to a second \x04
                        rest = buffer[end + 1:]
                        while rest.count(b"\x04") < 1:
                            more = serial.read(max(1, serial.in_waiting))
                            if not more and (self.sim.process is None
                                             or self.sim.process.poll() is not None):
                                break
                            rest += more
                        error = bytes(rest.split(b"\x04")[0]).decode(errors="replace").strip()
                        self._lines(bytes(buffer[:end]), lines, log)
                        if error:
                            self._errors.append(error)
                            log.write(error + "\n")
                        code = 1 if error else 0
                        break
                    cut = buffer.rfind(b"\n")
                    if cut >= 0:
                        self._lines(bytes(buffer[:cut + 1]), lines, log)
                        del buffer[:cut + 1]
            except OSError as exc:
                self._errors.append(f"serial: {exc}")
        self.process.end(code)
        lines.put((self.number, {"exit": True}))

    def _lines(self, data: bytes, lines: queue.SimpleQueue[tuple[int, dict[str, Any]]],
               log: Any) -> None:
        for raw in data.decode(errors="replace").splitlines():
            raw = raw.strip().lstrip("OK")  # the raw REPL's acknowledgement
            if not raw.startswith("{"):
                if raw:
                    log.write(raw + "\n")
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if "ready" in line:
                self.ready = line
            elif "done" in line:
                self.done = line
            lines.put((self.number, line))

    def go(self) -> None:
        self._transport.serial.write(GO_BYTE)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def failure(self) -> str:
        code = self.process.returncode if self.process is not None else None
        tail = "\n".join(self._errors)[-2000:]
        return f"board {self.number} (QEMU) ended its fleet script with code {code}:\n{tail}"

    def stop(self) -> None:
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
            self._transport = None
        self.sim.stop()

    def rss_kib(self) -> int | None:
        process = self.sim.process
        if process is None:
            return None
        try:
            text = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None


class BoardGroup:
    """Every emulated board of the fleet; stopped as a whole on exit."""

    def __init__(self, slots: Sequence[DeviceSlot], workdir: Path, broker: tuple[str, int],
                 ca_file: Path | None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.image = board_image(workdir)
        self.processes = [BoardProcess(n, slot, workdir, self.image, broker, ca_file)
                          for n, slot in enumerate(slots)]
        self.lines: queue.SimpleQueue[tuple[int, dict[str, Any]]] = queue.SimpleQueue()
        self._go_watch: threading.Thread | None = None
        self._stopping = threading.Event()

    def __enter__(self) -> BoardGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        for board in self.processes:
            board.stop()

    def init_keys(self, common: dict[str, Any], timeout: float) -> None:
        """Boot every board (a few at a time: both cores stay usable), then each makes its
        own key on the board; fills slot.address."""
        deadline = time.monotonic() + timeout
        for board in self.processes:
            if time.monotonic() > deadline:
                raise FleetError(f"the boards did not boot within {timeout:.0f} s")
            board.boot()
        for board in self.processes:
            board.make_key()

    def start_run(self, common: dict[str, Any], **settings: Any) -> None:
        broker = {k: v for k, v in common["broker"].items() if k != "ca"}  # the bridge's
        go_file = Path(settings.pop("go"))
        for board in self.processes:
            slot = board.slots[0]
            device: dict[str, Any] = {"index": slot.index, "dir": DEVICE_DIR,
                                      "channel": slot.channel}
            if slot.username:
                device["login"] = [slot.username, slot.password]
            board.start({"common": {**common, "broker": broker}, "devices": [device],
                         "go": "", **settings}, self.lines)
        self._go_watch = threading.Thread(target=self._watch_go, args=(go_file,),
                                          daemon=True, name="boards-go")
        self._go_watch.start()

    def _watch_go(self, go_file: Path) -> None:
        while not self._stopping.is_set():
            if go_file.exists():
                for board in self.processes:
                    with contextlib.suppress(OSError, AttributeError):
                        board.go()
                return
            time.sleep(0.01)

    def rss_kib(self) -> list[int | None]:
        return [board.rss_kib() for board in self.processes]

    def pids(self) -> list[int]:
        return [board.sim.process.pid for board in self.processes
                if board.sim.process is not None]
