"""firmware/manifest.py is the one list of the firmware's modules: it covers every file
of firmware/, its order is an import order, and every reader (the host's reader for
flash and the benches, device.py's at boot) takes the same modules from it."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
from nanotoll.bench.agent import agent_modules, import_order
from nanotoll.bench.device import voucher_modules
from nanotoll.device.boards import BOARDS, MANIFEST_DEST
from nanotoll.device.manifest import (
    FIRMWARE_DIR,
    MANIFEST_PATH,
    ManifestError,
    imported_names,
    read_manifest,
)
from support.tools import require


def test_manifest_lists_every_firmware_module_once() -> None:
    manifest = read_manifest()
    files = sorted(p.name for p in FIRMWARE_DIR.glob("*.py") if p != MANIFEST_PATH)
    assert sorted(m.path.name for m in manifest.modules) == files
    assert manifest.version and manifest.description


def test_every_module_comes_after_the_modules_it_imports() -> None:
    manifest = read_manifest()
    order = [m.name for m in manifest.modules]
    for position, module in enumerate(manifest.modules):
        later = imported_names(module.path) & set(order[position:])
        assert not later, f"{module.name} imports {sorted(later)}, listed after it"


def test_boot_order_is_the_agent_leaves_first() -> None:
    boot = read_manifest().boot_order()
    assert boot[0] == "errors" and boot[-1] == "agent"
    assert "device" not in boot and "wifi_board" not in boot


def _device_boot_reader() -> str:
    """firmware/device.py's _boot_modules function, as source."""
    source = (FIRMWARE_DIR / "device.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == "_boot_modules":
            segment = ast.get_source_segment(source, node)
            assert segment is not None
            return segment
    raise AssertionError("firmware/device.py has no _boot_modules")


def _run_boot_reader(folders: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = ("import sys\n" + _device_boot_reader() + "\n"
              f"sys.path[:] = {folders!r}\n"
              "try:\n    print(' '.join(_boot_modules()))\n"
              "except ImportError as exc:\n    print('ImportError', exc)\n")
    return subprocess.run([require("micropython"), "-c", script], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def test_device_reads_the_boot_order_the_host_reads(tmp_path: Path) -> None:
    # As on a flashed board: the manifest in /lib, after folders that do not hold it.
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "manifest.py").write_bytes(MANIFEST_PATH.read_bytes())
    done = _run_boot_reader(["", ".frozen", str(lib)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert tuple(done.stdout.split()) == read_manifest().boot_order()


def test_device_passes_by_another_manifest(tmp_path: Path) -> None:
    # boards/qemu_mps2/manifest.py (the board's frozen modules) on sys.path first.
    board = MANIFEST_PATH.parents[1] / "boards" / "qemu_mps2"
    done = _run_boot_reader([str(board), str(MANIFEST_PATH.parent)], tmp_path)
    assert tuple(done.stdout.split()) == read_manifest().boot_order()


def test_device_without_a_manifest_says_so(tmp_path: Path) -> None:
    board = MANIFEST_PATH.parents[1] / "boards" / "qemu_mps2"
    done = _run_boot_reader(["", str(tmp_path), str(board)], tmp_path)
    assert done.stdout.strip() == ("ImportError no firmware manifest.py on sys.path: "
                                   "flash the firmware again")


def test_flash_installs_the_manifest_modules_of_each_board() -> None:
    manifest = read_manifest()
    for name, spec in BOARDS.items():
        lib = [dest for _, dest in spec.sources() if dest.startswith("/lib/")]
        expected = [f"/lib/{module}.py" for module in manifest.names(name)]
        assert lib == [*expected, MANIFEST_DEST, "/lib/board.py"], name
        assert ("/lib/wifi_board.py" in lib) == spec.wifi, name


def test_benches_take_their_modules_from_the_manifest() -> None:
    board = read_manifest().names("qemu_mps2")
    assert agent_modules() == board
    order = import_order()
    assert [name for name in order if name in board] == list(board)
    assert order.index("board") > order.index("mqtt")  # board.py imports mqtt
    voucher = voucher_modules()
    assert [name for name in board if name in voucher] == list(voucher)
    assert {"voucher", "cbor", "secp256k1", "_field_viper"} <= set(voucher)
    assert "errors" not in voucher and "_field_plain" not in voucher


@pytest.mark.parametrize(("text", "error"), [
    ('module("errors.py")\n', "no metadata"),
    ('metadata(description="x", version="1")\nmodule("nothing.py")\n', "no such file"),
    ('metadata(description="x", version="1")\nmodule("errors.py", boards=("mars",))\n',
     "unknown boards"),
    ('metadata(description="x", version="1")\nmodule("errors.py")\nmodule("errors.py")\n',
     "listed twice"),
    ('metadata(description="x", version="1")\nmodule("errors.py", boot=True, on_demand=True)\n',
     "not imported on demand"),
    ('metadata(description="x", version="1")\npackage("lib")\n', "package() is not used"),
    ('metadata(description="x", version="1")\nopen("/etc/passwd")\n', "NameError"),
])
def test_reader_refuses_a_malformed_manifest(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "manifest.py"
    path.write_text(text)
    (tmp_path / "errors.py").write_text("")
    with pytest.raises(ManifestError, match=re.escape(error)):
        read_manifest(path)
