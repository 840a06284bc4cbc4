"""Account and contract addresses typed by people (config files, command lines): EIP-55.

An address written in mixed case carries a checksum in its letters' case; one wrong
letter then fails the check instead of sending money to a mistyped contract. All-lowercase
(or all-uppercase) hex carries no checksum and is taken as written.
"""

from __future__ import annotations

import re

from .protocol.signing import checksum_address

_HEX40 = re.compile(r"0x[0-9a-fA-F]{40}")


def parse_address(text: str) -> str:
    """``text`` in its checksummed form; ValueError when it is not a 0x-prefixed 20-byte
    hex address, or when its mixed case is not the EIP-55 checksum."""
    if not _HEX40.fullmatch(text):
        raise ValueError(f"must be a 0x-prefixed 20-byte hex address, got {text!r}")
    digits = text[2:]
    good = checksum_address(bytes.fromhex(digits))
    if digits not in (digits.lower(), digits.upper()) and text != good:
        raise ValueError(f"{text} has a wrong EIP-55 checksum (mixed case must be exactly "
                         f"{good}; or write it all in lower case)")
    return good
