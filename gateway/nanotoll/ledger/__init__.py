"""The ledger: what the gateway accepted, what it answered, and what it redeemed.

- :mod:`.interface` defines :class:`Ledger`, its records and its errors.
- :mod:`.sqlite` and :mod:`.postgres` implement it; :func:`open_ledger` picks one by URL.

The ledger imports nothing else of nanotoll: the chain and the gateway build on it.
"""

from __future__ import annotations

from pathlib import Path

from .interface import (
    AcceptItem,
    AcceptResult,
    AcceptStatus,
    ChannelRecord,
    LeaseBusy,
    Ledger,
    LedgerError,
    Settlement,
    SettlementItem,
    SettlementState,
)


def open_ledger(url: str, create: bool = True) -> Ledger:
    """A ledger for ``sqlite:///path`` or ``postgresql://user@host:port/database``.
    With ``create`` False (readers such as ``gateway status``) a ledger that does not
    exist yet is a LedgerError, never a new empty one."""
    if url.startswith("sqlite:///"):
        # Imported on use: a gateway loads only the driver its ledger needs.
        from .sqlite import SQLiteLedger

        path = Path(url[len("sqlite:///"):])
        if not create and not path.is_file():
            raise LedgerError(f"no ledger at {path} (nanotoll gateway run creates it); "
                              "check [ledger] url or --ledger")
        return SQLiteLedger(path)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresLedger

        return PostgresLedger(url, create=create)
    raise LedgerError(f"unsupported ledger url {url!r}")


__all__ = [
    "AcceptItem",
    "AcceptResult",
    "AcceptStatus",
    "ChannelRecord",
    "LeaseBusy",
    "Ledger",
    "LedgerError",
    "Settlement",
    "SettlementItem",
    "SettlementState",
    "open_ledger",
]
