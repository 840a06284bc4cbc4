"""Channel ids as an owner writes them: ``7``, ``1-100``, ``1-100,205``, or ``@FILE`` with
ids, ranges or both, one or more a line (``#`` starts a comment)."""

from __future__ import annotations

from pathlib import Path

from .errors import OwnerError

MAX_CHANNEL_ID = 2**32 - 1


def parse_channels(text: str) -> list[int]:
    """The ids ``text`` names, in the order given, each once."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            body = path.read_text()
        except OSError as exc:
            raise OwnerError(f"channel list {path}: cannot read it ({exc.strerror})") from None
        parts = [part for line in body.splitlines()
                 for part in line.split("#", 1)[0].replace(",", " ").split()]
        where = f"channel list {path}"
    else:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        where = "channels"
    ids: list[int] = []
    seen: set[int] = set()
    for part in parts:
        for channel_id in _expand(part, where):
            if channel_id not in seen:
                seen.add(channel_id)
                ids.append(channel_id)
    if not ids:
        raise OwnerError(f"{where}: no channel id given")
    return ids


def _expand(part: str, where: str) -> range:
    low_text, dash, high_text = part.partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if dash else low
    except ValueError:
        raise OwnerError(f"{where}: {part!r} is not an id or a range like 1-100") from None
    if not 1 <= low <= high <= MAX_CHANNEL_ID:
        raise OwnerError(f"{where}: {part!r} must be ids from 1 to {MAX_CHANNEL_ID}, "
                         "low to high")
    return range(low, high + 1)
