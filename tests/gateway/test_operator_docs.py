"""The shipped gateway config and the operator guide agree with the config parser."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from nanotoll.gateway.config import load_config
from support import paths as _paths
from support.gateway_support import KEY_ENV, PROVIDER_KEY

ROOT = _paths.ROOT
EXAMPLE = ROOT / "examples" / "gateway" / "gateway.toml"
GUIDE = ROOT / "docs" / "operator.md"


def _documented_keys() -> set[tuple[str, str]]:
    """(table, key) of every row of the guide's configuration table."""
    rows = re.findall(r"^\| `([a-z_.]+)` \| `([a-z_]+)` \|", GUIDE.read_text(), re.MULTILINE)
    return set(rows)


def _example_keys(document: dict, prefix: str = "") -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for name, value in document.items():
        table = f"{prefix}.{name}" if prefix else name
        if isinstance(value, dict):
            keys |= _example_keys(value, table)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                keys |= _example_keys(item, table)
        else:
            keys.add((prefix, name))
    return keys


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert [p.name for p in config.catalog.products] == ["weather", "nav", "route"]
    assert config.provider_key(KEY_ENV) == PROVIDER_KEY
    assert config.ledger_url == f"sqlite:///{EXAMPLE.parent}/nanotoll-ledger.db"


def test_every_key_of_the_example_is_in_the_guide() -> None:
    with EXAMPLE.open("rb") as handle:
        example = _example_keys(tomllib.load(handle))
    documented = _documented_keys()
    assert example, "the example has no keys"
    assert example <= documented, f"undocumented: {sorted(example - documented)}"


def test_the_guide_names_only_keys_the_parser_takes(tmp_path: Path) -> None:
    """Each documented key, written into a copy of the example, is accepted (an unknown
    key would be refused as a typo)."""
    base = EXAMPLE.read_text()
    commented = {("provider", "keystore"), ("catalog", "valid_from"), ("metrics", "port"),
                 ("provider", "keystore_password_env"), ("mqtt", "password_file"),
                 ("metrics", "host"), ("metrics", "username"), ("metrics", "password_file"),
                 ("metrics", "password_env")}
    with EXAMPLE.open("rb") as handle:
        example = _example_keys(tomllib.load(handle))
    assert _documented_keys() - example == commented, "a documented key is in no example"
    for table, key in sorted(_documented_keys()):
        if (table, key) not in commented:
            continue
        value = {"keystore": '"ks.json"', "valid_from": "1767225600", "port": "9108",
                 "keystore_password_env": '"PW"', "password_file": '"pw.txt"',
                 "host": '"127.0.0.1"', "username": '"prometheus"',
                 "password_env": '"METRICS_PW"'}[key]
        text = base.replace(f"[{table}]\n", f"[{table}]\n{key} = {value}\n", 1)
        if key == "keystore":
            text = text.replace('key_env = "NANOTOLL_PROVIDER_KEY"\n', "", 1)
        if key == "password_file" and table == "mqtt":
            text = text.replace('password_env = "NANOTOLL_MQTT_PASSWORD"\n', "", 1)
        if table == "metrics" and key in ("username", "password_env", "password_file"):
            # a login is a user and a password: the other half goes in beside it
            other = 'password_env = "METRICS_PW"' if key == "username" \
                else 'username = "prometheus"'
            text = text.replace("[metrics]\n", f"[metrics]\n{other}\n", 1)
        path = tmp_path / f"{table}-{key}.toml"
        path.write_text(text)
        load_config(path)
