"""``nanotoll device flash``: the firmware and the board's files onto a board.

1. compile the firmware modules ``firmware/manifest.py`` gives the board, and the
   board's modules, with mpy-cross for the board's architecture (``main.py`` and the
   manifest stay source: the board runs the one and device.py reads the other);
2. ask the board who it is (platform, MicroPython version, .mpy arch, free space) and
   refuse one that could not load the files;
3. hash every target file on the board and copy only what differs, each to a temporary
   name first; check the temporary files' hashes; only then rename them into place (a
   rename is atomic on littlefs), so an interrupted or failed flash leaves the old set
   whole; a full file system is found before anything is written;
4. verify the installed files by hash, drop files an earlier flash installed that are no
   longer part of the set, and soft-reset the board.

A second run with nothing changed copies nothing and says so.

``--romfs`` (``flash_romfs_port``): the modules go into a ROMFS image instead, deployed
into the board's ROMFS partition with ``mpremote romfs deploy`` (MicroPython 1.25: ESP32
firmware with a romfs partition, rp2 with MICROPY_HW_ROMFS_BYTES, the emulated board).
The board mounts it at /rom and runs the .mpy files in place, so their bytecode and
constants stay in flash instead of the heap. Only main.py (and later config and state)
stays on the file system; the /lib modules of an earlier flash are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..servers.process import ServiceError
from .boards import MANIFEST_DEST, BoardSpec
from .image import COMB_TABLE_NAME, comb_table, mpy_cross, mpy_cross_command, romfs_image
from .repl import BoardExecError, DeviceError, Repl

INSTALLED_LIST = "/lib/.nanotoll-files"  # what the last flash installed, one JSON list
TMP_SUFFIX = ".nt-tmp"


@dataclass(frozen=True)
class Artifact:
    source: Path
    dest: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class FlashResult:
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reset: bool = False


def _mpy_cross_version(compiler: Path) -> str:
    out = subprocess.run([str(compiler), "--version"], capture_output=True, text=True,
                         check=False).stdout.strip()
    return out or "mpy-cross"


def build(spec: BoardSpec, say: Callable[[str], None] = print) -> list[Artifact]:
    """The files for ``spec``: modules as .mpy for its arch, main.py and the manifest
    as source."""
    compiler = mpy_cross()
    if compiler is None:
        raise DeviceError("mpy-cross is not installed: run `make setup` "
                          "(or set NANOTOLL_MPY_CROSS to an mpy-cross 1.25 binary)")
    sources = spec.sources()
    missing = [str(src) for src, _ in sources if not src.exists()]
    if missing:
        raise DeviceError("missing source files: " + ", ".join(missing))
    modules = [(src, dest) for src, dest in sources
               if dest.startswith("/lib/") and dest.endswith(".py") and dest != MANIFEST_DEST]
    say(f"flash: compiling {len(modules)} modules "
        f"for {spec.arch} ({_mpy_cross_version(compiler)})")
    artifacts = []
    with tempfile.TemporaryDirectory(prefix="nanotoll-flash-") as tmp:
        for src, dest in sources:
            if (src, dest) in modules:
                out = Path(tmp) / (src.stem + ".mpy")
                result = subprocess.run(mpy_cross_command(compiler, spec.arch, src, out),
                                        capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    raise DeviceError(f"mpy-cross failed on {src}:\n{result.stderr.strip()}")
                artifacts.append(Artifact(src, dest[:-3] + ".mpy", out.read_bytes()))
            else:
                artifacts.append(Artifact(src, dest, src.read_bytes()))
    return artifacts


# Board side: sha256 (hex) of each path, or None where there is no such file; the
# previous installed list; and leftovers of an interrupted flash.
_HASHES = """
import os, json, hashlib, binascii
def _h(p):
    try:
        h = hashlib.sha256()
        with open(p, 'rb') as f:
            while True:
                b = f.read(512)
                if not b:
                    break
                h.update(b)
        return binascii.hexlify(h.digest()).decode()
    except OSError:
        return None
def _ls(d):
    try:
        return [d + '/' + n for n in os.listdir(d)]
    except OSError:
        return []
_old = []
try:
    with open({installed!r}) as f:
        _old = json.load(f)
except (OSError, ValueError):
    pass
print(json.dumps({{"hashes": {{p: _h(p) for p in {paths!r}}}, "old": _old,
    "tmp": [p for p in _ls('') + _ls('/lib') if p.endswith({suffix!r})],
    "all": _ls('') + _ls('/lib')}}))
del _h, _ls, _old
"""

_REMOVE = """
import os
for _p in {paths!r}:
    try:
        os.remove(_p)
    except OSError:
        pass
"""

_RENAME = """
import os
for _a, _b in {pairs!r}:
    os.rename(_a, _b)
"""


def _board_hashes(repl: Repl, paths: list[str]) -> dict[str, object]:
    code = _HASHES.format(installed=INSTALLED_LIST, paths=paths, suffix=TMP_SUFFIX)
    return dict(repl.exec_json(code, timeout=120))


def _blocks(size: int, block_size: int) -> int:
    return -(-size // block_size) + 1  # data blocks plus about one for metadata


def _is_full(exc: BoardExecError) -> bool:
    return "28" in exc.board_error or "ENOSPC" in exc.board_error


def flash(repl: Repl, spec: BoardSpec, artifacts: list[Artifact],
          say: Callable[[str], None] = print, reset: bool = True) -> FlashResult:
    info = repl.info()
    info.check(spec)
    say(f"flash: board at {repl.port}: {info.describe()}, "
        f"{info.free_bytes // 1024} KiB free of {info.blocks * info.block_size // 1024} KiB")
    _refuse_romfs_shadow(repl, artifacts)
    result = FlashResult()
    targets = [a.dest for a in artifacts]
    state = _board_hashes(repl, targets)
    hashes = dict(state["hashes"])  # type: ignore[call-overload]
    leftovers = list(state["tmp"])  # type: ignore[call-overload]
    if leftovers:
        say(f"flash: removing {len(leftovers)} temporary files of an interrupted flash")
        repl.exec(_REMOVE.format(paths=leftovers))
    changed = [a for a in artifacts if hashes.get(a.dest) != a.sha256]
    result.unchanged = [a.dest for a in artifacts if a not in changed]
    on_board = set(state["all"])  # type: ignore[call-overload]
    # A stale source twin would shadow the .mpy (MicroPython imports .py first).
    twins = [a.dest[:-4] + ".py" for a in artifacts
             if a.dest.endswith(".mpy") and a.dest[:-4] + ".py" in on_board]
    stale = [p for p in state["old"] if p not in targets and p in on_board]  # type: ignore[attr-defined]

    if not changed and not twins and not stale:
        say(f"flash: nothing to copy: all {len(artifacts)} files on the board are up to "
            "date (same sha256); no reset needed")
        return result

    if changed:
        need = sum(_blocks(len(a.data), info.block_size) for a in changed) + 2
        if need > info.free_blocks:
            raise DeviceError(
                f"the board's file system is full: {len(changed)} files need about "
                f"{need * info.block_size // 1024} KiB, {info.free_bytes // 1024} KiB are "
                "free. Nothing was written. Remove files you no longer need (mpremote "
                "connect PORT rm :FILE) and flash again.")
        repl.exec("import os\ntry:\n    os.mkdir('/lib')\nexcept OSError:\n    pass")
        written: list[str] = []
        try:
            for index, artifact in enumerate(changed, 1):
                tmp = artifact.dest + TMP_SUFFIX
                written.append(tmp)
                say(f"flash: [{index}/{len(changed)}] {artifact.dest} "
                    f"({len(artifact.data):,} bytes)")
                repl.write_file(tmp, artifact.data)
            check = dict(_board_hashes(repl, written)["hashes"])  # type: ignore[call-overload]
            bad = [a.dest for a, tmp in zip(changed, written, strict=True)
                   if check.get(tmp) != a.sha256]
            if bad:
                raise DeviceError("the board holds different bytes than were sent for: "
                                  + ", ".join(bad) + ". Nothing was installed; flash again.")
        except BoardExecError as exc:
            repl.exec(_REMOVE.format(paths=written))
            if _is_full(exc):
                raise DeviceError(
                    "the board's file system filled up while copying; the temporary files "
                    "are removed and the installed files are unchanged. Free some space "
                    "(mpremote connect PORT rm :FILE) and flash again.") from exc
            raise
        except BaseException:
            with contextlib.suppress(DeviceError):
                repl.exec(_REMOVE.format(paths=written))
            raise
        # Everything is on the board under temporary names: install (atomic renames).
        repl.exec(_RENAME.format(pairs=[(tmp, a.dest) for a, tmp in
                                        zip(changed, written, strict=True)]))
        result.copied = [a.dest for a in changed]

    if twins or stale:
        repl.exec(_REMOVE.format(paths=twins + stale))
        result.removed = twins + stale
        say(f"flash: removed {', '.join(result.removed)}")
    installed = json.dumps(targets).encode()
    repl.write_file(INSTALLED_LIST + TMP_SUFFIX, installed)
    repl.exec(_RENAME.format(pairs=[(INSTALLED_LIST + TMP_SUFFIX, INSTALLED_LIST)]))

    final = dict(_board_hashes(repl, targets)["hashes"])  # type: ignore[call-overload]
    wrong = [a.dest for a in artifacts if final.get(a.dest) != a.sha256]
    if wrong:
        raise DeviceError("verification failed after install for: " + ", ".join(wrong))
    say(f"flash: copied {len(result.copied)} files, {len(result.unchanged)} unchanged; "
        f"all {len(artifacts)} verified by sha256")
    if reset:
        repl.soft_reset()
        result.reset = True
        say("flash: soft reset")
    return result


def _refuse_romfs_shadow(repl: Repl, artifacts: list[Artifact]) -> None:
    """/rom comes before /lib on sys.path: modules left in a ROMFS image by an earlier
    ``--romfs`` flash would be imported instead of the files about to be copied."""
    on_rom = set(repl.exec_json("import os, json\ntry:\n    print(json.dumps("
                                "os.listdir('/rom')))\nexcept OSError:\n    print('[]')"))
    shadowed = sorted(a.dest[len("/lib/"):] for a in artifacts
                      if a.dest.startswith("/lib/") and a.dest[len("/lib/"):] in on_rom)
    if shadowed:
        raise DeviceError(
            f"the board's ROMFS holds {len(shadowed)} of these modules ({', '.join(shadowed[:4])}"
            f"{', ...' if len(shadowed) > 4 else ''}), and /rom is imported before /lib, so the "
            "files this flash would copy would never run. Nothing was written. Flash with "
            "--romfs, or empty the partition first (mpremote connect PORT romfs deploy "
            "EMPTY_FOLDER).")


def flash_port(port: str, spec: BoardSpec, say: Callable[[str], None] = print,
               reset: bool = True) -> FlashResult:
    artifacts = build(spec, say)
    with Repl(port) as repl:
        return flash(repl, spec, artifacts, say, reset=reset)


# ---------------------------------------------------------------------------------
# --romfs: the modules in a ROMFS image in the board's ROMFS partition.

# Board side: ROMFS segments, the size of segment 0, and the sha256 of its first n bytes
# (None where the segment is no readable buffer, e.g. an ESP32 partition object).
_ROMFS_QUERY = """
import json, vfs
_r = {{"segments": -1, "size": 0, "sha256": None}}
if hasattr(vfs, "rom_ioctl"):
    _r["segments"] = vfs.rom_ioctl(1)
    _d = vfs.rom_ioctl(2, 0) if _r["segments"] > 0 else -1
    if not isinstance(_d, int):
        if hasattr(_d, "ioctl"):
            _r["size"] = _d.ioctl(4, 0) * _d.ioctl(5, 0)
        else:
            _r["size"] = len(_d)
        try:
            import hashlib, binascii
            _r["sha256"] = binascii.hexlify(
                hashlib.sha256(memoryview(_d)[:{n}]).digest()).decode()
        except Exception:
            pass
    del _d
print(json.dumps(_r))
del _r
"""


def split_romfs(artifacts: list[Artifact]) -> tuple[list[Artifact], list[Artifact]]:
    """(modules and the manifest for the ROMFS image, files that stay on the file
    system: main.py)."""
    modules = [a for a in artifacts if a.dest.startswith("/lib/")
               and (a.dest.endswith(".mpy") or a.dest == MANIFEST_DEST)]
    return modules, [a for a in artifacts if a not in modules]


def build_romfs(modules: list[Artifact]) -> bytes:
    """The ROMFS image: each module at the image's root, so /rom/<name>.mpy on the board."""
    return romfs_image({a.dest[len("/lib/"):]: a.data for a in modules})


def comb_table_artifact(say: Callable[[str], None] = print) -> Artifact | None:
    """G's flash comb table as the image's g.tbl (/rom/g.tbl on the board, which signs
    with it in place; wallet.use_tables checks it at boot). None, and said, when this
    host cannot make it (it takes MicroPython's unix port): the board then builds it in
    its comb_tables folder at first boot."""
    with tempfile.TemporaryDirectory(prefix="nanotoll-table-") as tmp:
        try:
            path = comb_table(Path(tmp))
        except (ServiceError, OSError, subprocess.SubprocessError) as exc:
            say(f"flash: G's comb table not made here ({exc}): the board builds it in its "
                "comb_tables folder at first boot")
            return None
        return Artifact(path, "/lib/" + COMB_TABLE_NAME, path.read_bytes())


def romfs_deploy_command(port: str, image: Path) -> list[str]:
    """mpremote 1.25's ROMFS deploy of a built image (a path ending in .img) to ROMFS
    partition 0 of the board at port; it unmounts /rom, writes and finishes the partition."""
    return [sys.executable, "-m", "mpremote", "connect", port, "romfs", "deploy", str(image)]


def flash_romfs(port: str, spec: BoardSpec, artifacts: list[Artifact],
                say: Callable[[str], None] = print, reset: bool = True,
                run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
                ) -> FlashResult:
    modules, rest = split_romfs(artifacts)
    table = comb_table_artifact(say)
    files = [*modules, table] if table is not None else modules
    image = build_romfs(files)
    with Repl(port) as repl:
        info = repl.info()
        info.check(spec)
        rom = repl.exec_json(_ROMFS_QUERY.format(n=len(image)))
    if rom["segments"] < 1:
        raise DeviceError(
            f"the board at {port} has no ROMFS partition (vfs.rom_ioctl): flash a MicroPython "
            "1.25 image built with one (ESP32: partitions-4MiB-romfs.csv; rp2: "
            "MICROPY_HW_ROMFS_BYTES) or flash without --romfs")
    if table is not None and len(image) > rom["size"]:
        # without the table the board builds it in its comb_tables folder at first boot
        files = modules
        image = build_romfs(files)
        if len(image) <= rom["size"]:
            say(f"flash: G's comb table ({len(table.data):,} bytes) does not fit in the "
                "ROMFS partition beside the modules: the board builds it in its comb_tables "
                "folder")
            with Repl(port) as repl:
                rom = repl.exec_json(_ROMFS_QUERY.format(n=len(image)))
    if len(image) > rom["size"]:
        raise DeviceError(f"the ROMFS image ({len(image):,} bytes) is larger than the "
                          f"board's ROMFS partition ({rom['size']:,} bytes). Nothing was "
                          "written.")
    digest = hashlib.sha256(image).hexdigest()
    held = f"{len(modules)} modules" + (" and G's comb table" if table in files else "")
    say(f"flash: ROMFS image of {held}, {len(image):,} bytes, for a "
        f"{rom['size'] // 1024} KiB partition")
    if rom["sha256"] == digest:
        say("flash: the ROMFS partition already holds this image (same sha256)")
    else:
        with tempfile.TemporaryDirectory(prefix="nanotoll-romfs-") as tmp:
            path = Path(tmp) / "nanotoll.img"
            path.write_bytes(image)
            command = romfs_deploy_command(port, path)
            say("flash: " + " ".join(command[2:]))
            done = run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or "ROMFS image deployed" not in done.stdout:
            raise DeviceError("mpremote romfs deploy failed:\n"
                              + (done.stdout + done.stderr).strip())
    with Repl(port) as repl:
        if rom["sha256"] != digest:
            check = repl.exec_json(_ROMFS_QUERY.format(n=len(image)))
            if check["sha256"] not in (None, digest):
                raise DeviceError("the ROMFS partition holds different bytes than were sent; "
                                  "flash again")
        result = flash(repl, spec, rest, say, reset=False)
        # A soft reset in the raw REPL (boot runs, main.py does not) mounts the new /rom.
        repl._transport.enter_raw_repl(soft_reset=True)
        names = set(repl.exec_json("import os, json\ntry:\n    print(json.dumps("
                                   "os.listdir('/rom')))\nexcept OSError:\n"
                                   "    print('[]')"))
        missing = [a.dest[len("/lib/"):] for a in files if a.dest[len("/lib/"):] not in names]
        if missing:
            raise DeviceError("after a soft reset the board does not show /rom/"
                              + ", /rom/".join(missing) + ": its ROMFS did not mount")
        say(f"flash: /rom holds the {held}")
        if reset:
            repl.soft_reset()
            result.reset = True
            say("flash: soft reset")
    return result


def flash_romfs_port(port: str, spec: BoardSpec, say: Callable[[str], None] = print,
                     reset: bool = True) -> FlashResult:
    return flash_romfs(port, spec, build(spec, say), say, reset=reset)
