"""The dashboard's paths on the web listener: the page, its script, uPlot, the JSON API.

uPlot's files are read at run time from ``node_modules/uplot/dist`` of the checkout
(``make setup`` installs the pinned version; ``NANOTOLL_UPLOT_DIR`` points elsewhere),
not copied into the package: one pinned copy, and the page loads nothing from outside
the gateway. Without them the page still shows every figure, only not plotted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from ...servers.tools import REPO_ROOT

Page = Callable[[], tuple[str, bytes]]  # () -> (content type, body)

UPLOT_FILES = {"uPlot.iife.min.js": "text/javascript; charset=utf-8",
               "uPlot.min.css": "text/css; charset=utf-8"}


class AssetMissing(LookupError):
    """A file the page needs is not installed."""


def uplot_dir() -> Path:
    return Path(os.environ.get("NANOTOLL_UPLOT_DIR")
                or REPO_ROOT / "node_modules" / "uplot" / "dist")


def _shipped(name: str, content_type: str) -> Page:
    def page() -> tuple[str, bytes]:
        return content_type, resources.files(__package__).joinpath(name).read_bytes()
    return page


def _uplot(name: str, content_type: str) -> Page:
    def page() -> tuple[str, bytes]:
        path = uplot_dir() / name
        try:
            return content_type, path.read_bytes()
        except OSError:
            raise AssetMissing(f"{path} is missing: run make setup (npm ci)") from None
    return page


def dashboard_pages(document: Callable[[], dict[str, Any]]) -> dict[str, Page]:
    """Path -> page, for the listener (all behind its login)."""
    def api() -> tuple[str, bytes]:
        return "application/json", json.dumps(document(), separators=(",", ":")).encode()

    pages: dict[str, Page] = {
        "/": _shipped("page.html", "text/html; charset=utf-8"),
        "/dashboard": _shipped("page.html", "text/html; charset=utf-8"),
        "/dashboard/app.js": _shipped("app.js", "text/javascript; charset=utf-8"),
        "/api/dashboard": api,
    }
    for name, content_type in UPLOT_FILES.items():
        pages[f"/dashboard/{name}"] = _uplot(name, content_type)
    return pages
