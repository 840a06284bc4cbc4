"""docs/operator.md's table of log events is the code's: every event the gateway process
logs (the gateway, chain and ledger packages), each at the level the code gives it, and
nothing the code does not log."""

from __future__ import annotations

import re

from support import paths as _paths

ROOT = _paths.ROOT
GUIDE = ROOT / "docs" / "operator.md"
PACKAGES = ("gateway", "chain", "ledger")  # what ``nanotoll gateway run`` runs

# event(logger, "name"[, logging.LEVEL | level], ...): the level is the third argument.
EVENT_CALL = re.compile(r'\bevent\(\s*[\w.]+,\s*"([a-z_]+)"\s*(?:,\s*([\w.]+)(?=\s*[,)]))?')
EXCEPTION_CALL = re.compile(r'\.exception\(\s*"([^"]+)"')
TABLE_ROW = re.compile(r"^\| `([^`]+)` \| ([a-z][^|]*) \|", re.MULTILINE)
CHOSEN_LEVELS = {"request": {"info", "warning"}}  # events whose level depends on the outcome


def _code_events() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / "gateway" / "nanotoll" / package).rglob("*.py"):
            text = path.read_text()
            for name, argument in EVENT_CALL.findall(text):
                if not argument:
                    levels = {"info"}  # event()'s default
                elif argument.startswith("logging."):
                    levels = {argument.split(".", 1)[1].lower()}
                else:
                    levels = CHOSEN_LEVELS[name]  # a variable: the known choice
                found.setdefault(name, set()).update(levels)
            for message in EXCEPTION_CALL.findall(text):
                found.setdefault(message, set()).add("error")
    return found


def _documented_events() -> dict[str, set[str]]:
    section = GUIDE.read_text().split("Every event the gateway process logs", 1)[1]
    section = section.split("\n## ", 1)[0]
    return {name: set(re.findall(r"\b(debug|info|warning|error)\b", levels))
            for name, levels in TABLE_ROW.findall(section)}


def test_every_logged_event_is_documented_at_its_level() -> None:
    code, documented = _code_events(), _documented_events()
    assert code, "no event found in the code"
    assert set(code) == set(documented), (
        f"undocumented: {sorted(set(code) - set(documented))}; "
        f"documented, never logged: {sorted(set(documented) - set(code))}")
    wrong = {name: (levels, documented[name]) for name, levels in code.items()
             if levels != documented[name]}
    assert not wrong, f"code level vs documented level: {wrong}"
