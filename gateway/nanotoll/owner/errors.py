"""The owner tools' one error."""

from __future__ import annotations


class OwnerError(Exception):
    """Input the owner can fix: the message says which and what to do. Raised before
    anything is sent, so nothing on-chain is half done."""
