"""Firmware images for a board, built on the host: modules compiled with mpy-cross and
ROMFS images of them. Used by flash and by the benches and tests alike, so a bench
measures the bytes a board is flashed with."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..servers.tools import REPO_ROOT, micropython_binary
from .manifest import FIRMWARE_DIR


def mpy_cross() -> Path | None:
    path = Path(os.environ.get("NANOTOLL_MPY_CROSS")
                or REPO_ROOT / ".toolchain" / "bin" / "mpy-cross")
    return path if path.exists() else None


def mpy_cross_command(compiler: Path, arch: str, source: Path, out: Path) -> list[str]:
    """How every .mpy that goes to a board is made. -O3: no line-number tables and no
    asserts in the bytecode (a board keeps the loaded code in RAM; tracebacks still
    name file and function); -s: the file's own name, not the build machine's path,
    as the module's source name (it is a string the board keeps)."""
    return [str(compiler), f"-march={arch}", "-O3", "-s", source.name, "-o", str(out),
            str(source)]


def romfs_image(files: dict[str, bytes]) -> bytes:
    """A ROMFS image (mpremote's make_romfs, as `mpremote romfs build|deploy` makes it)
    holding files, {path in the image: bytes}; .mpy files in it run in place."""
    import io

    from mpremote.romfs import make_romfs

    with tempfile.TemporaryDirectory(prefix="nanotoll-romfs-") as tmp:
        for name, data in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        with contextlib.redirect_stdout(io.StringIO()):  # it lists what it adds
            return bytes(make_romfs(tmp, mpy_cross=False))


def firmware_files(modules: Iterable[str], extra: Iterable[Path] = (),
                   compiled: bool = True) -> tuple[dict[str, bytes], str]:
    """The firmware modules as .mpy for armv7m when mpy-cross is there, else as source."""
    sources = [FIRMWARE_DIR / f"{name}.py" for name in modules] + list(extra)
    compiler = mpy_cross() if compiled else None
    if compiler is None:
        return {path.name: path.read_bytes() for path in sources}, "source compiled on the board"
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in sources:
            out = Path(tmp) / (path.stem + ".mpy")
            subprocess.run(mpy_cross_command(compiler, "armv7m", path, out),
                           check=True, capture_output=True)
            files[out.name] = out.read_bytes()
    return files, ".mpy from mpy-cross -march=armv7m -O3"


COMB_TABLE_NAME = "g.tbl"  # where the firmware looks for it: /rom/g.tbl (wallet.use_tables)


def comb_table(folder: Path) -> Path:
    """The flash comb table for G (folder/g.tbl), written by the firmware's own
    secp256k1.write_table under the unix port: the same bytes on every board."""
    path = folder / COMB_TABLE_NAME
    env = dict(os.environ, MICROPYPATH=str(FIRMWARE_DIR))
    subprocess.run([micropython_binary(), "-c",
                    f"import secp256k1; secp256k1.write_table({str(path)!r})"],
                   env=env, check=True, capture_output=True, timeout=120)
    return path
