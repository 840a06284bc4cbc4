"""The simulated devices: MicroPython processes, each running many agents.

Each process runs ``boards/unix/fleet.py`` on a plan file naming its devices (a folder
each, for the key and the state record). ``--init-keys`` lets every device make its own
key; ``--run`` builds the agents, connects them, reports ready, waits for the go file,
buys, and prints one JSON line per purchase and per device. Lines arrive on one queue.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..device.manifest import FIRMWARE_DIR
from ..servers.process import stop_process
from ..servers.tools import micropython_binary
from .options import FLEET_MAIN, FleetError

# Heap of one MicroPython process: the firmware's modules, then room per agent for its
# objects and the garbage of a purchase in flight.
HEAP_BASE = 4 * 1024 * 1024
HEAP_PER_AGENT = 96 * 1024
# The simulated devices run at a lower priority than the broker, the gateways and the
# chain. A real device has a CPU of its own; here a hundred device processes share the
# host's cores with the parts under test, and at equal priority the scheduler gives
# the one broker thread a hundredth of the CPU while they are busy (a thousand TLS
# handshakes at connect stalled the broker for 26 s, and every purchase waits behind
# device work). Devices still share the CPU fairly among themselves; emulated boards
# (QEMU) get the same.
DEVICE_NICE = 10


@dataclass
class DeviceSlot:
    index: int  # 0-based, fleet-wide
    folder: Path
    address: str = ""
    channel: int = 0
    username: str = ""  # its broker client, when the broker has per-device clients
    password: str = ""


def heap_bytes(agents: int) -> int:
    return HEAP_BASE + HEAP_PER_AGENT * agents


def deprioritise(pid: int) -> None:
    """Give a simulated device's process ``DEVICE_NICE`` (see there)."""
    with contextlib.suppress(OSError):  # already gone: its exit is reported elsewhere
        os.setpriority(os.PRIO_PROCESS, pid, DEVICE_NICE)


class DeviceProcess:
    """One MicroPython process and the devices it runs."""

    def __init__(self, number: int, slots: Sequence[DeviceSlot], workdir: Path) -> None:
        self.number = number
        self.slots = list(slots)
        self.workdir = workdir
        self.plan_path = workdir / f"plan-{number:02d}.json"
        self.log_path = workdir / f"mpy-{number:02d}.log"
        self.process: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None
        self.ready: dict[str, Any] | None = None
        self.done: dict[str, Any] | None = None

    def argv(self, mode: str) -> list[str]:
        return [micropython_binary(), "-X", f"heapsize={heap_bytes(len(self.slots))}",
                str(FLEET_MAIN), "--plan", str(self.plan_path), f"--{mode}"]

    def write_plan(self, common: dict[str, Any], **settings: Any) -> None:
        devices = [{"index": s.index, "dir": str(s.folder.resolve()),
                    **({"channel": s.channel} if s.channel else {}),
                    **({"login": [s.username, s.password]} if s.username else {})}
                   for s in self.slots]
        self.plan_path.write_text(json.dumps({"common": common, "devices": devices,
                                              **settings}, indent=1))

    def start(self, mode: str, lines: queue.SimpleQueue[tuple[int, dict[str, Any]]]) -> None:
        log = self.log_path.open("a")
        try:
            self.process = subprocess.Popen(
                self.argv(mode), stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                text=True, bufsize=1, start_new_session=True)
        finally:
            log.close()
        deprioritise(self.process.pid)
        self.reader = threading.Thread(target=self._read, args=(lines,), daemon=True,
                                       name=f"mpy-{self.number}")
        self.reader.start()

    def _read(self, lines: queue.SimpleQueue[tuple[int, dict[str, Any]]]) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            if not raw.startswith("{"):
                with self.log_path.open("a") as log:
                    log.write(raw)
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
        lines.put((self.number, {"exit": True}))

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def failure(self) -> str:
        code = self.process.returncode if self.process is not None else None
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() \
            else ""
        return f"MicroPython process {self.number} exited with code {code}:\n{tail}"

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace=3.0)  # type: ignore[arg-type]
            if self.process.stdout is not None:
                with contextlib.suppress(OSError):
                    self.process.stdout.close()

    def rss_kib(self) -> int | None:
        """Resident memory of the process (VmRSS), or None once it is gone."""
        if self.process is None:
            return None
        try:
            text = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None


class DeviceGroup:
    """Every MicroPython process of the fleet; stopped as a whole on exit."""

    def __init__(self, slots: Sequence[DeviceSlot], processes: int, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        per = -(-len(slots) // processes)
        self.processes = [DeviceProcess(n, slots[n * per:(n + 1) * per], workdir)
                          for n in range(processes) if slots[n * per:(n + 1) * per]]
        self.lines: queue.SimpleQueue[tuple[int, dict[str, Any]]] = queue.SimpleQueue()

    def __enter__(self) -> DeviceGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def comb_tables(self, provider: str, provider_key: str | None) -> Path:
        """The flash comb tables a provisioned device keeps: G's, and the provider
        key's when the devices are given that key. The firmware's own
        ``wallet.use_tables`` writes them once into one folder that every simulated
        device reads, as every board's flash holds the same bytes. Without them each
        device signs with the RAM comb and checks receipts without a table, which is
        not what a device in the field runs and costs the unix port about 2.5 ms more
        a purchase (docs/benchmarks.md)."""
        folder = (self.workdir / "tables").resolve()
        script = ("import wallet\n"
                  "from binascii import unhexlify\n"
                  f"wallet.use_tables({str(folder)!r}, unhexlify({provider[2:]!r}), "
                  f"{provider_key!r})\n")
        done = subprocess.run([micropython_binary(), "-c", script],
                              env={**os.environ, "MICROPYPATH": str(FIRMWARE_DIR)},
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise FleetError(f"the comb tables were not written: {done.stderr[-500:]}")
        return folder

    def init_keys(self, common: dict[str, Any], timeout: float) -> None:
        """Every device makes its own key (the firmware's init_key); fills slot.address."""
        for process in self.processes:
            for slot in process.slots:
                slot.folder.mkdir(parents=True, exist_ok=True)
            process.write_plan(common)
            process.start("init-keys", self.lines)
        by_index = {slot.index: slot for p in self.processes for slot in p.slots}
        exited = 0
        deadline = time.monotonic() + timeout
        while exited < len(self.processes):
            left = deadline - time.monotonic()
            if left <= 0:
                raise FleetError(f"the devices did not make their keys within {timeout:.0f} s")
            try:
                number, line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line.get("exit"):
                exited += 1
                process = self.processes[number]
                assert process.process is not None
                if process.process.wait(timeout=10) != 0:
                    raise FleetError(process.failure())
            elif "address" in line:
                by_index[int(line["index"])].address = str(line["address"])
        missing = [s.index for s in by_index.values() if not s.address]
        if missing:
            raise FleetError(f"{len(missing)} devices made no key (first: device {missing[0]})")

    def start_run(self, common: dict[str, Any], **settings: Any) -> None:
        for process in self.processes:
            process.write_plan(common, **settings)
            process.start("run", self.lines)

    def rss_kib(self) -> list[int | None]:
        return [p.rss_kib() for p in self.processes]

    def pids(self) -> list[int]:
        return [p.process.pid for p in self.processes if p.process is not None]
