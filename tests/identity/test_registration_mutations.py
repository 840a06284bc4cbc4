"""The ERC-8004 registration file, mutated field by field: every JSON type and boundary in
every position a device's tools read (docs/operator.md shows the file), the key left out,
an unknown key beside it, the file at its size limit and one byte over.

The verdict of each comes from the rules written here (what a device relies on, and the
catalog's limits for the products), never from the parser; a refusal must be an
IdentityError that names the field. The firmware reads no part of the file (discovery
runs on the owner's machine), so CPython's parser is the only reader.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_utils import to_checksum_address
from nanotoll.identity.errors import IdentityError
from nanotoll.identity.registration import (
    MAX_REGISTRATION_BYTES,
    REGISTRATION_TYPE,
    ProductEntry,
    Registration,
    RegistrationEntry,
    parse_registration,
)

PROVIDER = to_checksum_address("0xd7f600c6fc2b9104dc9067264e2d49062dfc2285")
REGISTRY = to_checksum_address("0xe7f1725e7734ce288f8367e1bb143e90bb3f0512")


def sample() -> dict[str, Any]:
    return Registration(
        name="wx", description="nowcasts", broker_url="mqtts://broker.example:8883",
        catalog_topic=f"nt/1/{PROVIDER[2:].lower()}/catalog", protocol_version=1,
        provider=PROVIDER, escrow="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        chain_id=31337, products=(ProductEntry("weather", 1500, "nowcast"),),
        registrations=(RegistrationEntry(7, f"eip155:31337:{REGISTRY}"),),
        web="http://127.0.0.1:9464/.well-known/agent-registration.json",
        reputation_registry="0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0").document()


MISSING = object()  # the key left out
SAMPLES: list[tuple[str, Any]] = [
    ("null", None), ("true", True), ("false", False), ("0", 0), ("1", 1), ("-1", -1),
    ("2^64-1", 2**64 - 1), ("2^64", 2**64), ("2^256-1", 2**256 - 1), ("2^256", 2**256),
    ("1.0", 1.0), ("1.5", 1.5), ("''", ""), ("'1'", "1"), ("'a'", "a"), ("'Weather'", "Weather"),
    ("'d'*64", "d" * 64), ("'d'*65", "d" * 65), ("[]", []), ("[1]", [1]), ("{}", {}),
    ("{'a': 1}", {"a": 1}), ("lower-case address", PROVIDER.lower()),
    ("checksummed address", PROVIDER), ("address, checksum broken", PROVIDER.swapcase()[:2].lower()
                                         + PROVIDER.swapcase()[2:]),
    ("address of 39 digits", PROVIDER[:-1]), ("address without 0x", PROVIDER[2:]),
    ("mqtt url", "mqtt://h:1883"), ("mqtts url without port", "mqtts://h"),
    ("http url", "http://h:80"), ("url with a stray bracket", "mqtt://[h:1"),
    ("registry name", f"eip155:1:{REGISTRY}"), ("registry name of chain 0", f"eip155:0:{REGISTRY}"),
    ("the registration type", REGISTRATION_TYPE), ("missing", MISSING),
]

Rule = Callable[[Any], bool]


def is_int(v: Any, low: int, high: int) -> bool:
    return type(v) is int and low <= v <= high


def is_text(v: Any) -> bool:
    return type(v) is str


def is_address(v: Any) -> bool:
    if not is_text(v) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", v):
        return False
    digits = v[2:]
    return digits in (digits.lower(), digits.upper()) or to_checksum_address(v) == v


def is_broker(v: Any) -> bool:
    return is_text(v) and re.fullmatch(r"mqtts?://[a-z0-9.\-]+(:[0-9]{1,5})?", v) is not None


def is_registry_name(v: Any) -> bool:
    match = is_text(v) and re.fullmatch(r"eip155:[1-9][0-9]{0,19}:(0x[0-9a-fA-F]{40})", v)
    return bool(match) and is_address(match.group(1))  # type: ignore[union-attr]


def optional(rule: Rule) -> Rule:
    return lambda v: v is MISSING or v is None or rule(v)


U256 = 2**256 - 1


@dataclass(frozen=True)
class Field:
    name: str
    path: tuple[Any, ...]
    rule: Rule  # True: the file is accepted with this value here
    mentions: str  # what the refusal's message must name (a regular expression)


FIELDS = [
    Field("type", ("type",), lambda v: v == REGISTRATION_TYPE, "type"),
    Field("name", ("name",), is_text, "name"),
    Field("description", ("description",), is_text, "description"),
    Field("image", ("image",), optional(is_text), "image"),
    Field("services", ("services",), lambda v: False, "services"),
    Field("MQTT service", ("services", 0), lambda v: False, "MQTT"),
    Field("MQTT endpoint", ("services", 0, "endpoint"), is_broker, "endpoint|broker URL"),
    Field("MQTT version", ("services", 0, "version"),
          lambda v: type(v) in (str, int) and str(v) == "1", "version"),
    Field("MQTT catalogTopic", ("services", 0, "catalogTopic"), is_text, "catalogTopic"),
    Field("web endpoint", ("services", 2, "endpoint"), optional(is_text), "endpoint"),
    Field("registrations", ("registrations",), lambda v: v == [], "registrations"),
    Field("registration", ("registrations", 0), lambda v: False, "registrations"),
    Field("agentId", ("registrations", 0, "agentId"), lambda v: is_int(v, 1, U256), "agentId"),
    Field("agentRegistry", ("registrations", 0, "agentRegistry"), is_registry_name,
          "agentRegistry|registry name"),
    Field("nanotoll", ("nanotoll",), lambda v: False, "nanotoll"),
    Field("protocolVersion", ("nanotoll", "protocolVersion"), lambda v: is_int(v, 1, 1),
          "protocolVersion"),
    Field("provider", ("nanotoll", "provider"), is_address, "provider"),
    Field("escrow", ("nanotoll", "escrow"), is_address, "escrow"),
    Field("chainId", ("nanotoll", "chainId"), lambda v: is_int(v, 1, U256), "chainId"),
    Field("reputationRegistry", ("nanotoll", "reputationRegistry"),
          lambda v: v is MISSING or is_address(v), "reputationRegistry"),
    Field("products", ("nanotoll", "products"), lambda v: v == [], "products"),
    Field("product", ("nanotoll", "products", 0), lambda v: False, "products"),
    Field("product name", ("nanotoll", "products", 0, "name"),
          lambda v: is_text(v) and re.fullmatch(r"[a-z][a-z0-9_]{0,31}", v) is not None, "name"),
    Field("unitPrice", ("nanotoll", "products", 0, "unitPrice"),
          lambda v: is_int(v, 1, 2**64 - 1), "unitPrice"),
    Field("product description", ("nanotoll", "products", 0, "description"),
          lambda v: is_text(v) and len(v) <= 64, "description"),
]


def put(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``tree`` with ``value`` at ``path`` (the key removed for MISSING)."""
    head, rest = path[0], path[1:]
    copy = list(tree) if isinstance(tree, list) else dict(tree)
    if rest:
        copy[head] = put(tree[head], rest, value)
    elif value is MISSING:
        del copy[head]
    else:
        copy[head] = value
    return copy


@dataclass(frozen=True)
class Mutation:
    field: Field
    label: str
    data: bytes
    accepted: bool


def mutations() -> Iterator[Mutation]:
    base = sample()
    for field in FIELDS:
        for label, value in SAMPLES:
            if value is MISSING and isinstance(field.path[-1], int):
                continue  # a list entry: its removal is the list's "[]" sample
            document = put(base, field.path, value)
            accepted = field.rule(value)
            if field.name == "MQTT version" and value is MISSING:
                accepted = False
            yield Mutation(field, label, json.dumps(document).encode(), accepted)


def verdict(data: bytes) -> str | IdentityError:
    try:
        parse_registration(data)
    except IdentityError as exc:
        return exc
    except Exception as exc:  # anything but IdentityError is a crash, and a finding
        return f"crash {exc!r}"
    return "accepted"


def test_every_field_gets_the_spec_verdict_and_a_refusal_names_the_field() -> None:
    wrong = []
    count = 0
    for mutation in mutations():
        count += 1
        got = verdict(mutation.data)
        name = f"{mutation.field.name} = {mutation.label}"
        if isinstance(got, str):
            if got != ("accepted" if mutation.accepted else "refused"):
                wrong.append(f"{name}: {got}, spec says "
                             f"{'accepted' if mutation.accepted else 'refused'}")
        elif mutation.accepted:
            wrong.append(f"{name}: refused ({got}), spec says accepted")
        elif not re.search(mutation.field.mentions, str(got)):
            wrong.append(f"{name}: refused without naming {mutation.field.mentions}: {got}")
    entries = sum(isinstance(field.path[-1], int) for field in FIELDS)
    assert count == len(FIELDS) * len(SAMPLES) - entries  # list entries are not removed
    assert not wrong, f"{len(wrong)} disagreements:\n" + "\n".join(wrong[:60])


def test_both_verdicts_occur_in_every_field() -> None:
    for field in FIELDS:
        verdicts = {m.accepted for m in mutations() if m.field is field}
        if field.name not in ("services", "MQTT service", "registration", "nanotoll",
                              "product"):
            assert verdicts == {True, False}, field.name


def objects(tree: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(tree, dict):
        yield path
        for key, value in tree.items():
            yield from objects(value, (*path, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from objects(value, (*path, index))


def test_an_unknown_key_in_any_object_is_ignored() -> None:
    """The ERC lets a file carry more than a reader knows: nothing a device relies on
    changes."""
    base = sample()
    expected = parse_registration(json.dumps(base).encode())
    paths = list(objects(base))
    assert len(paths) == 7  # the file, three services, a registration, nanotoll, a product
    for path in paths:
        document = put(base, (*path, "extraKey"), {"any": [1, None]}) if path else \
            {**base, "extraKey": {"any": [1, None]}}
        assert parse_registration(json.dumps(document).encode()) == expected, path


def padded(size: int) -> bytes:
    base = sample()
    empty = len(json.dumps(put(base, ("description",), "")).encode())
    data = json.dumps(put(base, ("description",), "d" * (size - empty))).encode()
    assert len(data) == size
    return data


def test_the_size_limit() -> None:
    assert parse_registration(padded(MAX_REGISTRATION_BYTES)).description.startswith("d")
    with pytest.raises(IdentityError, match="bytes, more than"):
        parse_registration(padded(MAX_REGISTRATION_BYTES + 1))


@pytest.mark.parametrize(("data", "says"), [
    (b"", "not JSON"), (b"\xff{}", "not JSON"), (b"[]", "not a JSON object"),
    (b"NaN", "not a JSON object"), (b'{"type": 1', "not JSON"),
    (json.dumps(sample()).encode().replace(b'{"type"', b'{"name": "x", "type"', 1), "twice"),
    (json.dumps(sample()).encode().replace(b'"chainId": 31337',
                                           b'"chainId": 1, "chainId": 31337'), "twice"),
])
def test_bytes_that_are_no_file(data: bytes, says: str) -> None:
    """Not JSON, not an object, a key twice in one object (two readers could each take
    another value of it)."""
    with pytest.raises(IdentityError, match=says):
        parse_registration(data)


def test_a_second_mqtt_service_is_refused() -> None:
    base = sample()
    document = put(base, ("services",), [*base["services"], base["services"][0]])
    with pytest.raises(IdentityError, match="one MQTT service, found 2"):
        parse_registration(json.dumps(document).encode())
