"""A product's params schema: which keys a request may carry, of which type and range.

A plugin declares its schema as data, so the gateway checks every request against it
before any money moves (``BAD_PARAMS``), and the dashboard and the docs can show it.
Three kinds cover the wire's params: a bounded integer, a text matching a pattern, and a
fixed-length list of bounded integers. Rules between keys (one before another, a time
near now) stay in the plugin's optional ``check``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ...protocol.errors import ErrorCode, ProtocolError

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

Params = Mapping[str, Any]


def bad_params(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_PARAMS, message)


@dataclass(frozen=True, slots=True)
class Param:
    """One key of a request's params."""

    kind: Literal["int", "text", "ints"]
    required: bool = True
    low: int = INT64_MIN  # "int" and "ints": each integer's range
    high: int = INT64_MAX
    pattern: str | None = None  # "text": the whole text matches it
    length: int = 0  # "ints": how many integers
    hint: str = ""  # what a refusal says the value must be
    _compiled: re.Pattern[str] | None = field(default=None, init=False, repr=False,
                                              compare=False)

    def __post_init__(self) -> None:
        if self.kind == "text":
            if self.pattern is None:
                raise ValueError("a text param needs a pattern")
            object.__setattr__(self, "_compiled", re.compile(self.pattern))
        elif self.kind == "ints" and self.length < 1:
            raise ValueError("an ints param needs a length")
        if self.low > self.high:
            raise ValueError("low is above high")

    def check(self, key: str, value: Any) -> None:
        """Raise BAD_PARAMS unless ``value`` fits."""
        if self.kind == "text":
            assert self._compiled is not None
            if not isinstance(value, str) or not self._compiled.fullmatch(value):
                raise bad_params(f"{key} must be {self.hint or f'text matching {self.pattern}'}")
            return
        if self.kind == "ints":
            if (not isinstance(value, list) or len(value) != self.length
                    or not all(_is_int(v) and self.low <= v <= self.high for v in value)):
                raise bad_params(f"{key} must be {self.hint or self._ints_hint()}")
            return
        if not _is_int(value):
            raise bad_params(f"{key} must be an integer")
        if not self.low <= value <= self.high:
            raise bad_params(f"{key} must be in {self.low}..{self.high}, got {value}")

    def _ints_hint(self) -> str:
        return f"a list of {self.length} integers in {self.low}..{self.high}"

    def describe(self) -> dict[str, Any]:
        """The JSON form shown by the dashboard's API."""
        described: dict[str, Any] = {"kind": self.kind, "required": self.required}
        if self.kind == "text":
            described["pattern"] = self.pattern
        else:
            described.update(low=self.low, high=self.high)
        if self.kind == "ints":
            described["length"] = self.length
        return described


Schema = Mapping[str, Param]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_params(schema: Schema, params: Params) -> None:
    """Raise BAD_PARAMS for a missing, unknown or ill-typed key."""
    required = {key for key, param in schema.items() if param.required}
    missing = required - params.keys()
    if missing:
        raise bad_params(f"missing params: {', '.join(sorted(missing))}")
    unknown = params.keys() - schema.keys()
    if unknown:
        raise bad_params(f"unknown params: {', '.join(sorted(map(str, unknown)))}")
    for key, value in params.items():
        schema[key].check(key, value)


def describe_schema(schema: Schema) -> dict[str, Any]:
    return {key: param.describe() for key, param in sorted(schema.items())}
