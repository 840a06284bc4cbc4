"""Structured log events, one call for every package: ``event(logger, "name", key=value)``.

The fields ride on the log record; the gateway's JSON formatter (``gateway.logs``) writes
them as one JSON object a line, and any other handler still shows the event's name. It
lives below every package so that the ledger, the chain and the gateway log alike without
importing one another.
"""

from __future__ import annotations

import logging
from typing import Any


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": {"event": name, **fields}})
