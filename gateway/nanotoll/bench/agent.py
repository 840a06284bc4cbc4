"""The payment agent on the emulated Cortex-M3 board (QEMU mps2-an385).

MicroPython runs in QEMU with UART0 as its REPL (a pty, driven with mpremote) and
UART1 as the agent's MQTT link: QEMU's second ``-serial tcp:`` connects to a
:class:`~nanotoll.device.bridge.UartBridge` that carries the bytes to a real broker.
The board has no network, no clock and no file system; ``boards/qemu_mps2`` supplies
``time``, ``select`` (for asyncio), a UART driver and a RAM file system for the state
record.

Used by tests/board/test_agent_qemu.py (purchases on the emulated board) and by
``run_agent_bench()`` (instructions and least free heap of one purchase, on the
boards/qemu_mps2 firmware: the headline figures with the .mpy modules in a ROMFS image
run in place from the board's ROMFS partition, ``deployment: "romfs"``; the
``*_filesystem`` figures with the same .mpy files on littlefs, loaded into the heap).
``latency_ms_p50_unix`` comes from the unix port against the real gateway over TLS with
each party's login, ``latency_ms_p50_unix_plain`` on the plain listener (bench/latency.py),
the ``*_heap_bytes_unix`` figures (what TLS holds of the heap) from bench/tls_heap.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..device.image import mpy_cross, mpy_cross_command
from ..device.manifest import imported_names, read_manifest
from ..device.qemu import BoardError, QemuBoard
from .device import comb_table
from .latency import run_unix_latency
from .tls_heap import measure_tls_heap

ROOT = Path(__file__).resolve().parents[3]
BOARD_DIR = ROOT / "boards" / "qemu_mps2"
# The board's own modules, board.py aside: what the firmware runs on (board.py registers
# aiotask before anything imports asyncio).
BOARD_MODULES = ("time", "select", "aiotask", "uart", "ramfs")
RAMFS_SOURCE = BOARD_DIR / "ramfs.py"
MANIFEST_NAME = "manifest.py"  # device.py reads its boot order from it when imported
# micropython.qstr_info()'s first line: "qstr pool: n_pool=5, n_qstr=600, ..."
_QSTR_INFO = re.compile(r"n_pool=(\d+), n_qstr=(\d+)")


def agent_modules() -> tuple[str, ...]:
    """The firmware modules the emulated board takes, in the manifest's import order."""
    return read_manifest().names("qemu_mps2")


def import_order() -> tuple[str, ...]:
    """The board's modules, then the firmware's with board.py as soon as the firmware
    modules it imports are in: the order a booting board imports them."""
    firmware = agent_modules()
    needs = imported_names(BOARD_DIR / "board.py") & set(firmware)
    last = max(firmware.index(name) for name in needs) if needs else -1
    return (*BOARD_MODULES, *firmware[:last + 1], "board", *firmware[last + 1:])


class AgentBoard(QemuBoard):
    """QEMU mps2-an385 with the REPL on a pty and UART1 on a bridge's TCP port."""

    def __init__(self, uart_port: int, icount: bool = False, timeout: float = 120) -> None:
        super().__init__(timeout=timeout, icount=icount, uart_port=uart_port)

    @property
    def transport(self) -> Any:
        return self._transport

    def stop(self) -> None:
        if self._transport is not None:
            with contextlib.suppress(Exception):
                if getattr(self._transport, "mounted", False):
                    self._transport.umount_local()
        super().stop()

    def exec(self, code: str, timeout: float | None = None) -> str:
        out, err = self._transport.exec_raw(code, timeout=timeout or self.timeout)
        if err:
            raise BoardError((out + err).decode(errors="replace").strip())
        return str(out.decode(errors="replace"))

    def deploy_folder(self, folder: Path) -> None:
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
        their files. main.py and config.json stay; the manifest is there while device.py,
        which reads its boot order from it, is imported. Modules the firmware imports on
        demand and drops after each use keep their files and are not imported here."""
        import base64

        manifest = f"firmware/{MANIFEST_NAME}"
        on_demand = {m.name for m in read_manifest().modules if m.on_demand}
        for name in import_order():
            if name == "device":
                data = base64.b64encode((folder / manifest).read_bytes()).decode()
                self.exec(f"_dfs.files[{manifest!r}] = "
                          f"__import__('binascii').a2b_base64({data!r})")
            for rel in (f"boards/qemu_mps2/{name}", f"firmware/{name}"):
                path = next((p for p in (folder / f"{rel}.mpy", folder / f"{rel}.py")
                             if p.exists()), None)
                if path is None:
                    continue
                key = path.relative_to(folder).as_posix()
                data = base64.b64encode(path.read_bytes()).decode()
                if name in on_demand:
                    self.exec(f"_dfs.files[{key!r}] = __import__('binascii').a2b_base64({data!r})")
                    break
                self.exec(f"_dfs.files[{key!r}] = __import__('binascii').a2b_base64({data!r})\n"
                          f"import {name}\ndel _dfs.files[{key!r}]\n"
                          "__import__('gc').collect()")
                if name == "aiotask":  # what board.py does, before asyncio is imported
                    self.exec("import sys\nsys.modules['asyncio.task'] = aiotask")
                if name == "device":
                    self.exec(f"del _dfs.files[{manifest!r}]\n__import__('gc').collect()")
                break


def stage(folder: Path, config: dict[str, Any], compiled: bool = True) -> str:
    """Lay out what the board imports: firmware/, boards/qemu_mps2/, examples/drone/ and
    config.json. Modules go as .mpy for armv7m when mpy-cross is there (as a drone
    gets them with mpremote), else as source. Returns how they were deployed."""
    compiler = mpy_cross() if compiled else None
    layout = [(ROOT / "firmware", folder / "firmware", agent_modules()),
              (BOARD_DIR, folder / "boards" / "qemu_mps2", (*BOARD_MODULES, "board", "main")),
              (ROOT / "examples" / "drone", folder / "examples" / "drone", ("flight",))]
    for source, target, names in layout:
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            path = source / f"{name}.py"
            # main.py is run as a file, so it stays source
            if compiler is None or name == "main":
                shutil.copy(path, target / path.name)
            else:
                subprocess.run(mpy_cross_command(compiler, "armv7m", path,
                                                 target / f"{name}.mpy"),
                               check=True, capture_output=True)
    shutil.copy(ROOT / "firmware" / MANIFEST_NAME, folder / "firmware" / MANIFEST_NAME)
    (folder / "config.json").write_text(json.dumps(config))
    return "source" if compiler is None else ".mpy from mpy-cross -march=armv7m -O3"


def run_console(board: AgentBoard, args: list[str], timeout: float = 300) -> list[dict[str, Any]]:
    """Run boards/qemu_mps2/main.py with the console ARGS; its JSON lines."""
    out = board.exec(f"ARGS = {args!r}\nexec(open('boards/qemu_mps2/main.py').read())",
                     timeout=timeout)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def temp_stage(config: dict[str, Any], compiled: bool = True) -> tuple[Path, str]:
    folder = Path(tempfile.mkdtemp(prefix="nanotoll-qemu-agent-"))
    return folder, stage(folder, config, compiled)


# ---------------------------------------------------------------------------------
# `nanotoll bench agent`: one purchase on the emulated board, as a flashed device.

TICK_INSTRUCTIONS = 40  # CMSDK timer at 25 MHz against -icount shift=0 (1 GHz)

# Board side. Timer 0 counts down at 25 MHz of virtual time; with -icount shift=0 one
# tick is 40 instructions. Waiting is what the asyncio loop spends in the poller
# (select.poll.ipoll: idle until the UART or a timeout wakes it); a wrapper around the
# loop's poller adds it up, and it is taken out of each purchase.
_BENCH_PRELUDE = """
import gc, json, machine
_T = const(0x40000000)
_m32 = machine.mem32
_m32[_T] = 0
_m32[_T + 8] = 0xFFFFFFFF
_m32[_T + 4] = 0xFFFFFFFF
_m32[_T] = 1
def _now():
    return _m32[_T + 4] & 0xFFFFFFFF
def _ticks(before, after):
    return (before - after) & 0xFFFFFFFF
"""

_BENCH_START = """
import asyncio, board, device
class _TimedPoll:
    def __init__(self, poller):
        self.p = poller
        self.waited = 0
    def register(self, *a):
        return self.p.register(*a)
    def modify(self, *a):
        return self.p.modify(*a)
    def unregister(self, *a):
        return self.p.unregister(*a)
    def ipoll(self, *a):
        t0 = _now()
        r = self.p.ipoll(*a)
        self.waited += _ticks(t0, _now())
        return r
_poll = _TimedPoll(asyncio.core._io_queue.poller)
asyncio.core._io_queue.poller = _poll
_cfg = device.load_config(%(config)r)
_agent = device.make_agent(_cfg, board)
_PARAMS = {"lat": 52520008, "lon": 13404954, "alt": 120}
async def _buy():
    w0 = _poll.waited
    t0 = _now()
    await _agent.buy("weather", _PARAMS)
    t1 = _now()
    return _ticks(t0, t1), _poll.waited - w0
"""

_BENCH_MEASURE = """
async def _main():
    await _agent.start(30000)
    out = []
    for i in range(%(rounds)d + 1):
        total, waited = await _buy()
        out.append([total, waited])
    await _agent.stop()
    return out
print(json.dumps(asyncio.run(_main())))
"""

_HEAP_TRIAL = """
import gc
gc.collect()
_free0 = gc.mem_free()
_ballast = bytearray(max(0, _free0 - %(free)d - 16))
gc.collect()
_left = gc.mem_free()
try:
%(body)s
    async def _main():
        await _agent.start(30000)
        await _buy()
        await _agent.stop()
    asyncio.run(_main())
    # the dynamic qstrs in their pools (a line the bench reads before the JSON): each
    # new pool is twice the last, so a few names more can cost kilobytes at once
    import micropython
    micropython.qstr_info()
    print(json.dumps({"ok": True, "free": _left}))
except Exception as _exc:
    # Short of heap, a purchase fails with MemoryError, also when the heap ran out in
    # the agent's pump or its MQTT link (the bench counts any other failure). The
    # ballast goes first: reporting needs a little heap too.
    _ballast = None
    gc.collect()
    print(json.dumps({"ok": False, "free": _left, "error": repr(_exc)}))
"""


# After a failed heap trial, with the whole heap: the agent starts (which re-sends the
# request the trial left pending and takes its answer) and stops, so that the next trial
# starts from the same state as the first, with nothing pending. Without it, a trial
# after a failure also finished its predecessor's purchase, and the search's figure
# depended on the order of its failures (49,107 and 50,129 from the same commit).
_HEAP_TRIAL_CLEANUP = """
async def _main():
    await _agent.start(30000)
    await _agent.stop()
    return _agent.state.pending
print(json.dumps({"pending": len(asyncio.run(_main()))}))
"""


# Before anything is measured: the state record as a device in steady use has it, with
# the rate-limit history full (64 entries in the last hour, what store.py keeps). A
# fresh record has none, and 64 entries are kilobytes of heap on a 32-bit board.
_FULL_HISTORY = """
import board, device
from store import Store, record_purchase
_cfg = device.load_config("/bench.json")
_store = Store(board.storage(_cfg), _cfg["channel"])
_st = _store.load()
_now = board.now()
for _i in range(%(entries)d):
    record_purchase(_st.history, _now - 640 + 10 * _i, 1500)
_store.save(_st)
print(len(_st.history) // 2)  # [t, amount, t, amount, ...]
"""
HISTORY_ENTRIES = 64


def _indent(code: str) -> str:
    return "\n".join("    " + line if line.strip() else line for line in code.splitlines())


def _bench_flashed(repl: Any, setup: str, start: str, rounds: int,
                   heap_step: int) -> dict[str, int]:
    """Instructions of one purchase and the least free heap that completes one, on a
    board already flashed and holding /bench.json."""
    repl.exec("import sys\nsys.modules.pop('main', None)", timeout=60)
    entries = repl.exec(_FULL_HISTORY % {"entries": HISTORY_ENTRIES}, timeout=120).strip()
    if entries.splitlines()[-1:] != [str(HISTORY_ENTRIES)]:
        raise BoardError(f"the rate-limit history was not filled: {entries!r}")
    repl._transport.enter_raw_repl(soft_reset=True)  # the modules it imported out of the heap
    # instructions: one warm-up purchase (connect, catalog, comb table), then rounds
    out = repl.exec(setup + _BENCH_MEASURE % {"rounds": rounds}, timeout=900)
    samples = json.loads(out.strip().splitlines()[-1])[1:]
    work = sorted(total - waited for total, waited in samples)
    instructions = work[len(work) // 2] * TICK_INSTRUCTIONS
    print("bench agent: samples (ticks, waited)", samples, file=sys.stderr)

    qstrs: dict[str, int] = {}
    failures: list[str] = []

    def trial(free: int) -> tuple[bool, int]:
        repl._transport.enter_raw_repl(soft_reset=True)  # a fresh heap
        lines = repl.exec(
            _BENCH_PRELUDE + _HEAP_TRIAL % {"free": free, "body": _indent(start)},
            timeout=900).strip().splitlines()
        result = json.loads(lines[-1])
        print(f"bench agent: heap trial {free} B free -> {result}", file=sys.stderr)
        for line in lines[:-1]:
            pools = _QSTR_INFO.search(line)
            if pools:
                qstrs.update(pools=int(pools[1]), qstrs=int(pools[2]))
        if not result["ok"]:
            failures.append(str(result["error"]))
            repl._transport.enter_raw_repl(soft_reset=True)
            left = json.loads(repl.exec(setup + _HEAP_TRIAL_CLEANUP,
                                        timeout=900).strip().splitlines()[-1])
            if left["pending"]:
                raise BoardError(f"after the heap trial with {free} B, a request stayed "
                                 "pending with the whole heap")
        return bool(result["ok"]), int(result["free"])

    repl._transport.enter_raw_repl(soft_reset=True)
    total_free = json.loads(repl.exec("import gc\ngc.collect()\nprint(gc.mem_free())"))
    low, high = 8192, int(total_free)
    ok, _ = trial(high)
    if not ok:
        raise BoardError(f"a purchase does not fit the board's whole free heap ({high} B)")
    if not qstrs:
        raise BoardError("the heap trial printed no qstr_info line")
    while high - low > heap_step:
        middle = (low + high) // 2
        ok, _ = trial(middle)
        if ok:
            high = middle
        else:
            low = middle
    return {"instructions": instructions, "min_heap": high, "total_free": int(total_free),
            "qstr_pools": qstrs["pools"], "dynamic_qstrs": qstrs["qstrs"],
            "trials_failed": len(failures),
            "trials_failed_not_memory": sum(not f.startswith("MemoryError(") for f in failures)}


def run_agent_bench(rounds: int = 5, heap_step: int = 512) -> dict[str, Any]:
    """Instructions of one purchase and the least free heap that completes one, on the
    emulated board flashed as a device is, buying from the reference provider through
    UART1 -> bridge -> mosquitto. Measured twice:

    - ``romfs`` (the headline figures): the .mpy modules in a ROMFS image in the board's
      ROMFS partition (what ``nanotoll device flash --romfs`` deploys; here QEMU loads
      the image at 0x21000000 at start), mounted at /rom and run in place: bytecode and
      constants stay in flash; main.py and the config on littlefs;
    - ``filesystem``: the same .mpy files on littlefs (``nanotoll device flash``), which
      the board copies into the heap as it imports them.

    The heap figure is the least free heap, measured after a soft reset before anything
    of the agent is imported, with which the board imports the agent, connects and
    completes one purchase: a ballast taken before the imports shrinks the free heap
    to the trial's figure (binary search to heap_step bytes). Both figures are taken
    with the state record's rate-limit history full, as a device in steady use has it."""
    from coincurve import PrivateKey

    from ..device.boards import BOARDS
    from ..device.flash import Artifact, build, build_romfs, flash, split_romfs
    from ..device.repl import Repl
    from ..device.sim import BoardSim
    from ..servers.mosquitto import Mosquitto
    from .provider import (
        CHAIN_ID,
        DEVICE_KEY,
        ESCROW,
        PROVIDER_KEY,
        ReferenceProvider,
        addr_hex,
    )

    spec = BOARDS["qemu_mps2"]
    quiet = lambda message: None  # noqa: E731
    config = {
        "key": DEVICE_KEY.hex(), "chain_id": CHAIN_ID, "escrow": "0x" + ESCROW.hex(),
        "channel": 1, "provider": "0x" + addr_hex(PROVIDER_KEY),
        "policy": {"deposit": 10**12, "budget": 10**12},
        "state_dir": "/bench-state", "keepalive": 60, "timeout_ms": 60000,
        "resend_ms": 20000,
        # receipts verified against the provider's key, with the comb tables in flash:
        # G's in the ROMFS image (the filesystem deployment builds it in /tables at
        # its first boot), the key's built in /tables at the first boot
        "provider_key": "0x" + PrivateKey(PROVIDER_KEY).public_key.format(False)[1:].hex(),
        "comb_tables": "/tables",
    }
    start = _BENCH_START % {"config": "/bench.json"}
    setup = _BENCH_PRELUDE + start
    artifacts = build(spec, quiet)
    modules, rest = split_romfs(artifacts)
    figures: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="nanotoll-bench-romfs-") as tmp:
        image = Path(tmp) / "romfs.img"
        table = comb_table(Path(tmp))
        image.write_bytes(build_romfs([*modules, Artifact(table, "/lib/g.tbl",
                                                          table.read_bytes())]))
        for deployment in ("romfs", "filesystem"):
            romfs = image if deployment == "romfs" else None
            with Mosquitto(secure=False) as broker, \
                    ReferenceProvider(broker.port, deposit=10**12), \
                    BoardSim(broker.host, broker.port, icount=True, romfs=romfs) as sim, \
                    Repl(sim.pty) as repl:
                flash(repl, spec, rest if romfs else artifacts, quiet, reset=False)
                repl.write_file("/bench.json", json.dumps(config).encode())
                where = repl.exec("import agent\nprint(agent.__file__)", timeout=60).strip()
                want = "/rom/agent.mpy" if romfs else "/lib/agent.mpy"
                if where != want:
                    raise BoardError(f"{deployment}: the agent came from {where}, not {want}")
                print(f"bench agent: {deployment} deployment", file=sys.stderr)
                figures[deployment] = _bench_flashed(repl, setup, start, rounds, heap_step)
    rom, fs = figures["romfs"], figures["filesystem"]
    # Over TLS with each party's own login, as users run it; plain beside it.
    latency = {**run_unix_latency(), **run_unix_latency(secure=False)}
    # The emulated board has no ssl (its bridge makes the TLS connection): what TLS
    # holds of the heap is measured on the unix port.
    tls = measure_tls_heap()
    return {
        **latency,
        **tls,
        "instructions_per_purchase": rom["instructions"],
        "instructions_per_purchase_filesystem": fs["instructions"],
        "min_heap_bytes_purchase": rom["min_heap"],
        "min_heap_bytes_purchase_filesystem": fs["min_heap"],
        "deployment": "romfs",
        # every figure above with the rate-limit history full, as in steady use
        "history_entries": HISTORY_ENTRIES,
        "board_free_heap_bytes": rom["total_free"],
        # after one purchase in the heap trial; the sixth pool (4.75 K) comes at 621
        "dynamic_qstrs_purchase": rom["dynamic_qstrs"],
        "qstr_pools_purchase": rom["qstr_pools"],
        "dynamic_qstrs_purchase_filesystem": fs["dynamic_qstrs"],
        # heap trials that failed, and those whose error was not a MemoryError (a
        # device short of heap should say so, not time out or blame the gateway)
        "heap_trials_failed": rom["trials_failed"] + fs["trials_failed"],
        "heap_trials_failed_not_memory": (rom["trials_failed_not_memory"]
                                          + fs["trials_failed_not_memory"]),
        "runtime": "MicroPython 1.25 on QEMU mps2-an385 (Cortex-M3), boards/qemu_mps2 "
                   "firmware, agent as .mpy (mpy-cross -O3 armv7m) in a ROMFS image run in "
                   "place (the filesystem figures: the same .mpy on littlefs), "
                   "-icount shift=0",
    }
