"""The settlement gateway a data provider runs: verify, record, serve, redeem.

Entry points (the CLI wires them): :func:`run_gateway`, :func:`settle_now`, :func:`status`
in :mod:`nanotoll.gateway.commands`; configuration in :mod:`nanotoll.gateway.config`.
"""

from __future__ import annotations

from .commands import run_gateway, settle_now, status
from .config import ConfigError, GatewayConfig, load_config

__all__ = ["ConfigError", "GatewayConfig", "load_config", "run_gateway", "settle_now", "status"]
