"""Channel ids as the owner writes them on the command line or in a file."""

from __future__ import annotations

from pathlib import Path

import pytest
from nanotoll.owner.errors import OwnerError
from nanotoll.owner.selection import parse_channels


def test_ids_ranges_and_lists_in_order_each_once() -> None:
    assert parse_channels("7") == [7]
    assert parse_channels("1-3,9, 2") == [1, 2, 3, 9]
    assert parse_channels("4294967295") == [2**32 - 1]


def test_a_file_of_ids_and_ranges(tmp_path: Path) -> None:
    listing = tmp_path / "fleet.txt"
    listing.write_text("# the north fleet\n1-3 10\n11, 12  # spares\n\n3\n")
    assert parse_channels(f"@{listing}") == [1, 2, 3, 10, 11, 12]


@pytest.mark.parametrize(("text", "says"), [
    ("", "no channel id"),
    ("0", "from 1 to"),
    ("5-2", "low to high"),
    ("4294967296", "from 1 to"),
    ("seven", "not an id or a range"),
    ("1-x", "not an id or a range"),
])
def test_bad_ids_are_refused_saying_which(text: str, says: str) -> None:
    with pytest.raises(OwnerError, match=says):
        parse_channels(text)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(OwnerError, match="nope.txt: cannot read it"):
        parse_channels(f"@{tmp_path / 'nope.txt'}")
