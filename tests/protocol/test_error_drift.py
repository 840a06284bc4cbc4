"""Error codes are written in three places that must agree: ``nanotoll.protocol.errors``
(the gateway), ``firmware/errors.py`` (the devices) and the table in docs/protocol.md
section 5 (people). The firmware cannot import the CPython package, so this test is what
ties them: change a code in all three or this fails, naming the one that differs."""

from __future__ import annotations

import ast
import re

from nanotoll.protocol.errors import ErrorCode
from support.paths import ROOT

FIRMWARE_ERRORS = ROOT / "firmware" / "errors.py"
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
TABLE_ROW = re.compile(r"\|\s*(\d+)\s*\|\s*([A-Z_]+)\s*\|")


def protocol_codes() -> dict[str, int]:
    return {code.name: int(code) for code in ErrorCode}


def firmware_module() -> ast.Module:
    return ast.parse(FIRMWARE_ERRORS.read_text(), str(FIRMWARE_ERRORS))


def firmware_constants() -> dict[str, int]:
    """Module-level ``NAME = <int>`` assignments of firmware/errors.py."""
    constants = {}
    for node in firmware_module().body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper()
                and isinstance(node.value, ast.Constant) and type(node.value.value) is int):
            constants[node.targets[0].id] = node.value.value
    return constants


def firmware_names() -> dict[int, str]:
    """The ``_NAMES`` table firmware/errors.py prints codes with."""
    for node in firmware_module().body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "_NAMES"):
            names = ast.literal_eval(node.value)
            assert isinstance(names, dict)
            return names
    raise AssertionError("firmware/errors.py has no _NAMES table")


def documented_codes() -> dict[str, int]:
    """The rows of docs/protocol.md's error-code table (section 5)."""
    text = PROTOCOL_DOC.read_text()
    start = text.index("## 5. Error codes")
    end = text.index("\n## ", start + 1)
    return {name: int(number) for number, name in TABLE_ROW.findall(text[start:end])}


def test_firmware_constants_match_the_protocol() -> None:
    assert firmware_constants() == protocol_codes(), (
        "firmware/errors.py's codes differ from nanotoll/protocol/errors.py")


def test_firmware_names_match_the_protocol() -> None:
    assert firmware_names() == {value: name for name, value in protocol_codes().items()}, (
        "firmware/errors.py's _NAMES differ from nanotoll/protocol/errors.py")


def test_the_documented_table_matches_the_protocol() -> None:
    assert documented_codes() == protocol_codes(), (
        "docs/protocol.md section 5 differs from nanotoll/protocol/errors.py")


def test_a_changed_code_is_caught() -> None:
    """The comparisons above see a one-number change (so they cannot pass vacuously)."""
    changed = dict(protocol_codes(), BUSY=29)
    assert firmware_constants() != changed
    assert documented_codes() != changed
    assert len(documented_codes()) >= 15
