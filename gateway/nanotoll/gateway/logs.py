"""Structured logs: one JSON object per line on stderr.

``nanotoll.logevent.event(logger, "request", code="OK", channel=7, ms=1.2)`` writes
``{"ts": ..., "level": "info", "logger": ..., "event": "request", "code": "OK", ...}``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["event"] = record.getMessage()
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def setup_logging(level: str = "INFO", stream: Any = None) -> None:
    """JSON lines for the ``nanotoll`` loggers (idempotent)."""
    root = logging.getLogger("nanotoll")
    root.setLevel(level)
    for handler in root.handlers:
        if getattr(handler, "_nanotoll_json", False):
            return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._nanotoll_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.propagate = False


def now_ms() -> float:
    return time.perf_counter() * 1000
