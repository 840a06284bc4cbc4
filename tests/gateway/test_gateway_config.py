"""Gateway config: a TOML file, validated, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from nanotoll.gateway.config import ConfigError, load_config
from support.gateway_support import KEY_ENV, PROVIDER_KEY

GOOD = """
[mqtt]
host = "127.0.0.1"
port = 18830

[provider]
key_env = "NANOTOLL_PROVIDER_KEY"

[chain]
rpc_url = "http://127.0.0.1:8545"
escrow = "0x95C62b7BCa32875bad1194Eb8c6A158277366Fd9"
chain_id = 31337

[ledger]
url = "sqlite:///state/ledger.db"

[settlement]
threshold = 50000
interval = 600

[catalog]
seq = 2
[[catalog.products]]
name = "weather"
price = 1500
description = "nowcast"
[[catalog.products]]
name = "corridor"
kind = "route"
price = 25000
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.mqtt.port == 18830 and config.chain.chain_id == 31337
    assert config.ledger_url == f"sqlite:///{tmp_path}/state/ledger.db"
    assert config.expiry_margin == 3600 and config.settlement.threshold == 50_000
    assert [p.kind for p in config.catalog.products] == ["weather", "route"]
    assert config.provider_key(KEY_ENV) == PROVIDER_KEY


@pytest.mark.parametrize(("change", "message"), [
    (("chain_id = 31337", "chain_id = 0"), "[chain] chain_id: must be in 1.."),
    (("escrow = \"0x95C6", "escrow = \"0x95"), "[chain] escrow: must be a 0x-prefixed"),
    (("port = 18830", "port = \"x\""), "[mqtt] port: must be an integer"),
    (("threshold = 50000", "treshold = 50000"), "[settlement] treshold: unknown key"),
    (("price = 1500", "price = 0"), "[catalog.products #1] price: must be in 1.."),
    (("url = \"sqlite", "url = \"mysql"), "[ledger] url: ledger url must start"),
    (("[chain]", "[chains]"), "[chains]: unknown table"),
    (("port = 18830", "port = 18830\nworkers = 4"),
     "[mqtt] workers: was removed; the gateway runs its requests in one thread; delete the line"),
])
def test_errors_name_the_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace(*change)))
    assert message in str(info.value)
    assert "gateway.toml" in str(info.value)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[mqtt\n"))


def test_key_from_env_errors(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="NANOTOLL_PROVIDER_KEY is not set"):
        config.provider_key({})
    with pytest.raises(ConfigError, match="32-byte hex private key"):
        config.provider_key({"NANOTOLL_PROVIDER_KEY": "0x1234"})


def test_key_from_an_encrypted_keystore(tmp_path: Path) -> None:
    import json

    (tmp_path / "provider.json").write_text(
        json.dumps(Account.encrypt(PROVIDER_KEY, "pw", kdf="pbkdf2", iterations=2)))
    text = GOOD.replace('key_env = "NANOTOLL_PROVIDER_KEY"', 'keystore = "provider.json"')
    config = load_config(write(tmp_path, text))
    assert config.provider_key({"NANOTOLL_KEYSTORE_PASSWORD": "pw"}) == PROVIDER_KEY
    with pytest.raises(ConfigError, match="keystore"):
        config.provider_key({"NANOTOLL_KEYSTORE_PASSWORD": "wrong"})
    with pytest.raises(ConfigError, match="password"):
        config.provider_key({})


def test_broker_tls_and_credentials_keys(tmp_path: Path) -> None:
    (tmp_path / "gw.password").write_text("s3cret\n")
    text = GOOD.replace("port = 18830", 'port = 18830\nca_file = "ca.pem"\nusername = "gw"\n'
                        'password_file = "gw.password"')
    config = load_config(write(tmp_path, text))
    assert config.mqtt.ca_file == tmp_path / "ca.pem" and config.mqtt.username == "gw"
    assert config.mqtt.password({}) == "s3cret"
    from_env = load_config(write(tmp_path, text.replace('password_file = "gw.password"',
                                                        'password_env = "MQTT_PW"')))
    assert from_env.mqtt.password({"MQTT_PW": "pw"}) == "pw"
    with pytest.raises(ConfigError, match="MQTT_PW is not set"):
        from_env.mqtt.password({})
    assert load_config(write(tmp_path, GOOD)).mqtt.password({}) is None


@pytest.mark.parametrize(("keys", "message"), [
    ('username = "gw"\npassword = "x"', "[mqtt] password: a password never goes"),
    ('username = "gw"', "[mqtt] password_env: username 'gw' needs a password"),
    ('password_env = "PW"', "[mqtt] username: is required with a password"),
    ('username = "gw"\npassword_env = "PW"\npassword_file = "f"',
     "[mqtt] password_file: give password_env or password_file, not both"),
])
def test_broker_credentials_refused(tmp_path: Path, keys: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace("port = 18830", f"port = 18830\n{keys}")))
    assert message in str(info.value)


def test_metrics_listen_where_configured_and_ask_a_login(tmp_path: Path) -> None:
    import base64
    import urllib.error
    import urllib.request

    from nanotoll.gateway.metrics import Metrics, MetricsServer

    (tmp_path / "metrics.password").write_text("scrape-me\n")
    text = GOOD + '\n[metrics]\nport = 9108\nhost = "127.0.0.1"\nusername = "prometheus"\n' \
        'password_file = "metrics.password"\n'
    access = load_config(write(tmp_path, text)).metrics
    assert access.host == "127.0.0.1" and access.login() == ("prometheus", "scrape-me")
    assert load_config(write(tmp_path, GOOD)).metrics.login() is None

    server = MetricsServer(Metrics(), 0, access.host, access.login())
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        for header in (None, "Basic " + base64.b64encode(b"prometheus:wrong").decode()):
            request = urllib.request.Request(url)
            if header:
                request.add_header("Authorization", header)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 401
        request = urllib.request.Request(url)
        request.add_header("Authorization",
                           "Basic " + base64.b64encode(b"prometheus:scrape-me").decode())
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.close()
