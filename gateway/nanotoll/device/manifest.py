"""``firmware/manifest.py`` read on the host: which modules make the firmware, in which
import order, on which boards.

The file is written in micropython-lib's manner (``metadata(...)`` then one
``module(...)`` call a module). It is evaluated here with only those functions in scope
and no builtins, so it can state what it lists and nothing else. Flash, the benches and
the firmware tests take their module lists from :func:`read_manifest`; the device takes
its boot order from the same file (``firmware/device.py``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..servers.tools import REPO_ROOT

FIRMWARE_DIR = REPO_ROOT / "firmware"
BOARDS_DIR = REPO_ROOT / "boards"
MANIFEST_PATH = FIRMWARE_DIR / "manifest.py"


class ManifestError(ValueError):
    """The manifest is malformed; the message names the file and the call."""


@dataclass(frozen=True, slots=True)
class FirmwareModule:
    name: str  # the import name
    path: Path
    boards: tuple[str, ...] | None  # None: every board
    boot: bool  # device.py imports it at boot, in manifest order
    # imported for each use and dropped afterwards (secp256k1's table building and
    # recovery): its file must stay on the board, also where others are imported once
    on_demand: bool = False

    def on(self, board: str) -> bool:
        return self.boards is None or board in self.boards


@dataclass(frozen=True, slots=True)
class FirmwareManifest:
    description: str
    version: str
    modules: tuple[FirmwareModule, ...]  # import order, leaves first

    def for_board(self, board: str) -> tuple[FirmwareModule, ...]:
        return tuple(m for m in self.modules if m.on(board))

    def names(self, board: str) -> tuple[str, ...]:
        return tuple(m.name for m in self.for_board(board))

    def boot_order(self) -> tuple[str, ...]:
        """What device.py imports at boot, one module at a time."""
        return tuple(m.name for m in self.modules if m.boot)

    def with_imports(self, roots: Iterable[str], board: str) -> tuple[str, ...]:
        """``roots`` and every firmware module they import, directly or not, that
        ``board`` takes; in manifest order."""
        on_board = {m.name: m for m in self.for_board(board)}
        wanted: set[str] = set()
        pending = list(roots)
        while pending:
            name = pending.pop()
            if name in wanted:
                continue
            if name not in on_board:
                raise ManifestError(f"{name!r} is not a firmware module for board {board!r}")
            wanted.add(name)
            pending += [n for n in imported_names(on_board[name].path) if n in on_board]
        return tuple(m.name for m in self.modules if m.name in wanted)


def imported_names(source: Path) -> set[str]:
    """Top-level names of the modules a source file imports (``import x``, ``from x
    import ...``), wherever the statement stands."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def known_boards() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in BOARDS_DIR.iterdir() if p.is_dir()))


class _Reader:
    """The functions a manifest may call; they record what it says."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta: dict[str, str] | None = None
        self.modules: list[FirmwareModule] = []
        self.boards = known_boards()

    def metadata(self, *, description: str, version: str, **_: Any) -> None:
        if self.meta is not None:
            raise ManifestError(f"{self.path}: metadata() is called twice")
        self.meta = {"description": description, "version": version}

    def module(self, module_path: str, *, boards: Iterable[str] | None = None,
               boot: bool = False, on_demand: bool = False) -> None:
        if not module_path.endswith(".py") or "/" in module_path:
            raise ManifestError(f"{self.path}: module({module_path!r}): give a .py file of "
                                "the firmware folder")
        path = self.path.parent / module_path
        if not path.exists():
            raise ManifestError(f"{self.path}: module({module_path!r}): no such file")
        name = module_path[:-3]
        if any(m.name == name for m in self.modules):
            raise ManifestError(f"{self.path}: module({module_path!r}) is listed twice")
        chosen = None if boards is None else tuple(boards)
        unknown = sorted(set(chosen or ()) - set(self.boards))
        if unknown:
            raise ManifestError(f"{self.path}: module({module_path!r}): unknown boards "
                                f"{unknown} (known: {', '.join(self.boards)})")
        if boot and on_demand:
            raise ManifestError(f"{self.path}: module({module_path!r}): a module imported at "
                                "boot is not imported on demand")
        self.modules.append(FirmwareModule(name, path, chosen, bool(boot), bool(on_demand)))

    def unsupported(self, call: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> None:
            raise ManifestError(f"{self.path}: {call}() is not used by the nanotoll "
                                "firmware (one flat folder of modules): list module()s")
        return refuse


def read_manifest(path: Path = MANIFEST_PATH) -> FirmwareManifest:
    reader = _Reader(path)
    scope: dict[str, Any] = {
        "__builtins__": {},
        "metadata": reader.metadata,
        "module": reader.module,
        "package": reader.unsupported("package"),
        "require": reader.unsupported("require"),
        "include": reader.unsupported("include"),
    }
    try:
        exec(compile(path.read_text(), str(path), "exec"), scope)  # noqa: S102 - names above only
    except ManifestError:
        raise
    except Exception as exc:
        raise ManifestError(f"{path}: {type(exc).__name__}: {exc}") from exc
    if reader.meta is None:
        raise ManifestError(f"{path}: no metadata(description=..., version=...)")
    return FirmwareManifest(reader.meta["description"], reader.meta["version"],
                            tuple(reader.modules))
