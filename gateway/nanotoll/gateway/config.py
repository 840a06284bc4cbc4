"""Gateway configuration: one TOML file, validated into frozen dataclasses.

Every error names the file and the key (``gateway.toml: [chain] escrow: ...``). The
provider's private key never appears in the file or on a command line: the file names
an environment variable that holds it, or an encrypted keystore (whose password comes
from an environment variable).

Example::

    [mqtt]
    host = "127.0.0.1"
    port = 8883
    ca_file = "broker/ca.pem"                   # TLS; omit for a plain listener
    username = "gateway-<provider address>"
    password_file = "broker/secrets/gateway-<provider address>.password"
                                                # or: password_env = "NANOTOLL_MQTT_PASSWORD"

    [provider]
    key_env = "NANOTOLL_PROVIDER_KEY"          # or: keystore = "provider.json"

    [chain]
    rpc_url = "http://127.0.0.1:8545"
    escrow = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    chain_id = 31337

    [ledger]
    url = "sqlite:///ledger.db"                 # relative to this file

    [events]                                    # optional: the escrow event follower
    poll_interval = 1.0                         # seconds between polls of the chain head
    confirmations = 0                           # blocks below the head before a log counts

    [identity]                                  # optional: ERC-8004 (docs/operator.md)
    identity_registry = "0x..."                 # where the provider registers as an agent
    reputation_registry = "0x..."
    name = "weather nowcasts"
    description = "METAR-based nowcasts over MQTT"
    # agent_uri: where devices read the registration file (default: the web listener's
    # /.well-known/agent-registration.json); broker_url: the broker devices are told of

    [catalog]
    seq = 1
    [[catalog.products]]
    name = "weather"
    price = 1500
    description = "nowcast for a position, altitude and time"
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..address import parse_address
from ..protocol.messages import PRODUCT_NAME
from ..protocol.signing import address_of, check_private_key

ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
MAX_UINT64 = (1 << 64) - 1
DEFAULT_KEY_ENV = "NANOTOLL_PROVIDER_KEY"
DEFAULT_PASSWORD_ENV = "NANOTOLL_KEYSTORE_PASSWORD"


class ConfigError(ValueError):
    """A configuration the gateway refuses; the message names the file and key."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""  # empty: a random id per process
    keepalive: int = 30
    inflight: int = 256  # requests the broker may have outstanding with us (MQTT v5
    # Receive Maximum), and responses we may have unacknowledged
    ca_file: Path | None = None  # set: TLS, the broker's certificate checked against it
    username: str | None = None
    # Where the broker password is: an environment variable or a file, never this file.
    password_env: str | None = None
    password_file: Path | None = None

    def password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The broker password, read now (a rotated file is picked up on restart)."""
        return _secret("mqtt", self.username, self.password_env, self.password_file, environ)


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    """Where the metrics endpoint listens and, optionally, the basic-auth login it asks."""

    host: str = "127.0.0.1"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None

    def login(self, environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        password = _secret("metrics", self.username, self.password_env, self.password_file,
                           environ)
        return (self.username, password) if self.username and password else None


def _secret(table: str, username: str | None, env: str | None, file: Path | None,
            environ: Mapping[str, str] | None) -> str | None:
    """A password from an environment variable or a file (never from the config)."""
    environ = os.environ if environ is None else environ
    if env is not None:
        value = environ.get(env)
        if not value:
            raise ConfigError(f"[{table}] password_env: the environment variable {env} is "
                              f"not set (the password of {username!r})")
        return value
    if file is not None:
        try:
            return file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"[{table}] password_file: cannot read {file}: {exc}") from exc
    return None


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where the provider's private key comes from: an env var or a keystore file."""

    env: str | None = DEFAULT_KEY_ENV
    keystore: Path | None = None
    password_env: str = DEFAULT_PASSWORD_ENV

    def load(self, environ: Mapping[str, str] | None = None) -> bytes:
        environ = os.environ if environ is None else environ
        if self.keystore is not None:
            return _decrypt_keystore(self.keystore, environ.get(self.password_env))
        assert self.env is not None
        text = environ.get(self.env, "").strip()
        if not text:
            raise ConfigError(f"[provider] key_env: environment variable {self.env} is not set")
        try:
            secret = bytes.fromhex(text[2:] if text.startswith(("0x", "0X")) else text)
            return check_private_key(secret)
        except ValueError as exc:
            raise ConfigError(
                f"[provider] key_env: {self.env} must hold a 32-byte hex private key ({exc})"
            ) from None


def _decrypt_keystore(path: Path, password: str | None) -> bytes:
    import json

    from eth_account import Account

    if password is None:
        raise ConfigError(f"[provider] keystore: set {DEFAULT_PASSWORD_ENV} (or the variable "
                          "named by keystore_password_env) to its password")
    try:
        document = json.loads(path.read_text())
        return check_private_key(bytes(Account.decrypt(document, password)))
    except OSError as exc:
        raise ConfigError(f"[provider] keystore: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"[provider] keystore: {path}: {exc}") from None


@dataclass(frozen=True, slots=True)
class ChainConfig:
    rpc_url: str
    escrow: str
    chain_id: int
    confirmations: int = 1
    poll_interval: float = 0.2  # seconds between receipt polls
    receipt_timeout: float = 120.0  # seconds before a sent transaction counts as stuck


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """The escrow event follower (``events``): keeps cached channels fresh from logs."""

    enabled: bool = True
    poll_interval: float = 1.0  # seconds between polls of the chain head
    confirmations: int = 0  # blocks below the head before a log is applied; 0 = the head
    max_range: int = 1000  # blocks per eth_getLogs call (nodes cap the range)
    max_backoff: float = 30.0  # seconds between retries at most while the node fails


@dataclass(frozen=True, slots=True)
class SettlementConfig:
    threshold: int = 1_000_000  # units unredeemed on one channel that trigger a redeem
    interval: int = 3600  # seconds an accepted voucher may wait unredeemed
    expiry_window: int = 7200  # redeem a channel whose expiry is this close
    batch_size: int = 0  # vouchers per transaction; 0 = the contract's safe batch size
    check_every: float = 5.0  # seconds between the worker's scans


@dataclass(frozen=True, slots=True)
class ProductConfig:
    name: str
    price: int | None  # None: the plugin's own price
    description: str | None  # None: the plugin's own
    kind: str  # which plugin serves it: a built-in, an entry point or module:Class
    timeout: float = 2.0  # seconds the plugin's serve may take
    options: Mapping[str, Any] = field(default_factory=dict)  # given to the plugin


@dataclass(frozen=True, slots=True)
class CatalogConfig:
    seq: int = 1
    validity: int = 30 * 86400  # seconds from valid_from
    valid_from: int | None = None  # None: the hour the gateway started in
    products: tuple[ProductConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """The provider's ERC-8004 identity: its registration file and where it registers."""

    identity_registry: str | None = None
    reputation_registry: str | None = None
    agent_id: int = 0  # 0: the agent whose agentWallet is the provider, from the registry
    name: str = "nanotoll provider"
    description: str = "data sold per request over MQTT, paid with signed vouchers"
    image: str = ""
    agent_uri: str | None = None  # None: the web listener's well-known path
    broker_url: str | None = None  # None: mqtt(s)://[mqtt] host:port


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    chain: ChainConfig
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    key: KeySource = field(default_factory=KeySource)
    ledger_url: str = "sqlite:///nanotoll-ledger.db"
    expiry_margin: int = 3600
    settlement: SettlementConfig = field(default_factory=SettlementConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    metrics_port: int | None = None  # Prometheus text endpoint; None = off
    metrics: MetricsAccess = field(default_factory=MetricsAccess)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    log_level: str = "INFO"
    source: str = "<config>"

    def provider_key(self, environ: Mapping[str, str] | None = None) -> bytes:
        return self.key.load(environ)

    def provider_address(self, environ: Mapping[str, str] | None = None) -> str:
        return address_of(self.provider_key(environ))


# ----------------------------------------------------------------- parsing --


class _Section:
    """One TOML table with typed getters that raise errors naming the key."""

    def __init__(self, source: str, name: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        self.source, self.name, self.table = source, name, dict(table)
        self.used: set[str] = set()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{self.name}] {key}: {message}")

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        return self.table.get(key, default)

    def integer(self, key: str, default: int | None = None, low: int = 0,
            high: int = MAX_UINT64) -> int:
        value = self._get(key, default)
        if value is None:
            raise self.error(key, "is required")
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise self.error(key, f"must be in {low}..{high}, got {value}")
        return value

    def number(self, key: str, default: float, low: float = 0.0) -> float:
        value = self._get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < low:
            raise self.error(key, f"must be a number ≥ {low}, got {value!r}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def text(self, key: str, default: str | None = None, pattern: re.Pattern[str] | None = None,
            hint: str = "") -> str:
        value = self._get(key, default)
        if value is None:
            raise self.error(key, "is required")
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            raise self.error(key, f"must be {hint or 'text'}, got {value!r}")
        return value

    def address(self, key: str) -> str:
        """A required address; mixed case must be its EIP-55 checksum."""
        text = self.text(key, pattern=ADDRESS, hint="a 0x-prefixed 20-byte hex address")
        try:
            return parse_address(text)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def optional_str(self, key: str) -> str | None:
        value = self._get(key, None)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.error(key, f"must be non-empty text, got {value!r}")
        return value

    def removed(self, key: str, advice: str) -> None:
        """Refuse a key that an older version read: say so, and what to do instead."""
        if key in self.table:
            raise self.error(key, f"was removed; {advice}")

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key (a typo?)")


def _section(source: str, document: dict[str, Any], name: str) -> _Section:
    return _Section(source, name, document.get(name, {}))


def _resolve(base: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def normalise_ledger_url(url: str, base: Path) -> str:
    """``sqlite:///rel.db`` resolves against ``base``; ``sqlite:////abs.db`` is absolute."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path:
            raise ConfigError("ledger url sqlite:/// needs a file name")
        return "sqlite:///" + str(_resolve(base, path))
    if url.startswith(("postgresql://", "postgres://")):
        return url
    raise ConfigError(f"ledger url must start with sqlite:/// or postgresql://, got {url!r}")


def _products(source: str, raw: Any) -> tuple[ProductConfig, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= 32:
        raise ConfigError(f"{source}: [[catalog.products]] needs 1..32 entries")
    products = []
    for index, table in enumerate(raw):
        section = _Section(source, f"catalog.products #{index + 1}", table)
        name = section.text("name", pattern=PRODUCT_NAME, hint="a name [a-z][a-z0-9_]{0,31}")
        price = section.integer("price", low=1) if "price" in section.table else None
        description = section.text("description") if "description" in section.table \
            else None
        if description is not None and len(description) > 64:
            raise section.error("description", "at most 64 characters")
        kind = section.text("kind", name)
        timeout = section.number("timeout", 2.0, 0.01)
        options = section._get("options", {})
        if not isinstance(options, dict):
            raise section.error("options", "must be a table (given to the plugin)")
        section.finish()
        products.append(ProductConfig(name, price, description, kind, timeout, options))
    names = [p.name for p in products]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: [[catalog.products]] names must be unique: {names}")
    return tuple(products)


def _mqtt_security(s: _Section, base: Path) -> dict[str, Any]:
    """[mqtt] ca_file and the login."""
    ca_file = s.optional_str("ca_file")
    return {"ca_file": _resolve(base, ca_file) if ca_file else None, **_login(s, base)}


def _login(s: _Section, base: Path) -> dict[str, Any]:
    """username and where the password is (password_env or password_file; a
    ``password`` key is refused: secrets stay out of the config)."""
    if "password" in s.table:
        raise s.error("password", "a password never goes in the config: put it in a file "
                      "(password_file) or an environment variable (password_env)")
    username = s.optional_str("username")
    password_env = s.optional_str("password_env")
    password_file = s.optional_str("password_file")
    if password_env and password_file:
        raise s.error("password_file", "give password_env or password_file, not both")
    if (password_env or password_file) and not username:
        raise s.error("username", "is required with a password")
    if username and not (password_env or password_file):
        raise s.error("password_env", f"username {username!r} needs a password: give "
                      "password_env or password_file")
    return {"username": username, "password_env": password_env,
            "password_file": _resolve(base, password_file) if password_file else None}


def _identity(s: _Section) -> IdentityConfig:
    def optional_address(key: str) -> str | None:
        return s.address(key) if key in s.table else None

    def optional_url(key: str, schemes: str) -> str | None:
        value = s.optional_str(key)
        if value is not None and not re.fullmatch(rf"({schemes})://\S+", value):
            raise s.error(key, f"must be a {schemes.replace('|', ' or ')} URL, got {value!r}")
        return value

    defaults = IdentityConfig()
    identity = IdentityConfig(
        identity_registry=optional_address("identity_registry"),
        reputation_registry=optional_address("reputation_registry"),
        agent_id=s.integer("agent_id", 0),
        name=s.text("name", defaults.name),
        description=s.text("description", defaults.description),
        image=s.text("image", ""),
        agent_uri=optional_url("agent_uri", "http|https"),
        broker_url=optional_url("broker_url", "mqtt|mqtts"),
    )
    s.finish()
    return identity


def parse_config(document: dict[str, Any], base: Path, source: str = "<config>") -> GatewayConfig:
    """Validate a parsed TOML document; relative paths resolve against ``base``."""
    known = {"mqtt", "provider", "chain", "ledger", "rules", "settlement", "events", "catalog",
             "metrics", "identity", "log"}
    for key in document:
        if key not in known:
            raise ConfigError(f"{source}: [{key}]: unknown table (known: {sorted(known)})")

    s = _section(source, document, "mqtt")
    s.removed("workers", "the gateway runs its requests in one thread; delete the line")
    mqtt = MqttConfig(
        host=s.text("host", "127.0.0.1"),
        port=s.integer("port", 1883, 1, 65535),
        client_id=s.text("client_id", ""),
        keepalive=s.integer("keepalive", 30, 5, 3600),
        inflight=s.integer("inflight", 256, 16, 65535),
        **_mqtt_security(s, base),
    )
    s.finish()

    s = _section(source, document, "provider")
    key_env = s.optional_str("key_env")
    keystore = s.optional_str("keystore")
    password_env = s.text("keystore_password_env", DEFAULT_PASSWORD_ENV)
    s.finish()
    if key_env and keystore:
        raise s.error("keystore", "give key_env or keystore, not both")
    key_source = KeySource(
        env=None if keystore else (key_env or DEFAULT_KEY_ENV),
        keystore=_resolve(base, keystore) if keystore else None,
        password_env=password_env,
    )

    if "chain" not in document:
        raise ConfigError(f"{source}: [chain]: table is required (rpc_url, escrow, chain_id)")
    s = _section(source, document, "chain")
    chain = ChainConfig(
        rpc_url=s.text("rpc_url", pattern=re.compile(r"(https?|wss?)://\S+|/\S+\.ipc"),
                      hint="an http(s)://, ws(s):// or .ipc URL"),
        escrow=s.address("escrow"),
        chain_id=s.integer("chain_id", low=1),
        confirmations=s.integer("confirmations", 1, 0, 1000),
        poll_interval=s.number("poll_interval", 0.2, 0.01),
        receipt_timeout=s.number("receipt_timeout", 120.0, 1.0),
    )
    s.finish()

    s = _section(source, document, "ledger")
    url = s.text("url", "sqlite:///nanotoll-ledger.db")
    s.finish()
    try:
        ledger_url = normalise_ledger_url(url, base)
    except ConfigError as exc:
        raise s.error("url", str(exc)) from None

    s = _section(source, document, "rules")
    expiry_margin = s.integer("expiry_margin", 3600, 0, 365 * 86400)
    s.finish()

    s = _section(source, document, "settlement")
    settlement = SettlementConfig(
        threshold=s.integer("threshold", 1_000_000, 1),
        interval=s.integer("interval", 3600, 1),
        expiry_window=s.integer("expiry_window", 2 * expiry_margin, 0),
        batch_size=s.integer("batch_size", 0, 0, 10_000),
        check_every=s.number("check_every", 5.0, 0.05),
    )
    s.finish()

    s = _section(source, document, "events")
    events = EventsConfig(
        enabled=s.boolean("enabled", True),
        poll_interval=s.number("poll_interval", 1.0, 0.05),
        confirmations=s.integer("confirmations", 0, 0, 1000),
        max_range=s.integer("max_range", 1000, 1, 100_000),
        max_backoff=s.number("max_backoff", 30.0, 0.05),
    )
    s.finish()
    if events.max_backoff < events.poll_interval:
        raise s.error("max_backoff", f"must be ≥ poll_interval ({events.poll_interval:g} s), "
                      f"got {events.max_backoff:g}")

    s = _section(source, document, "catalog")
    valid_from = s._get("valid_from", None)
    catalog = CatalogConfig(
        seq=s.integer("seq", 1),
        validity=s.integer("validity", 30 * 86400, 60),
        valid_from=None if valid_from is None else s.integer("valid_from"),
        products=_products(source, s._get("products", None)),
    )
    s.finish()

    s = _section(source, document, "metrics")
    metrics_port = s._get("port", None)
    if metrics_port is not None:
        metrics_port = s.integer("port", low=1, high=65535)
    metrics = MetricsAccess(host=s.text("host", "127.0.0.1"), **_login(s, base))
    s.finish()

    identity = _identity(_section(source, document, "identity"))

    s = _section(source, document, "log")
    level = s.text("level", "INFO", re.compile(r"DEBUG|INFO|WARNING|ERROR"),
                  "DEBUG, INFO, WARNING or ERROR")
    s.finish()

    return GatewayConfig(chain=chain, mqtt=mqtt, key=key_source, ledger_url=ledger_url,
                         expiry_margin=expiry_margin, settlement=settlement, events=events,
                         catalog=catalog,
                         metrics_port=metrics_port, metrics=metrics, identity=identity,
                         log_level=level, source=source)


def load_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(document, path.resolve().parent, str(path))
