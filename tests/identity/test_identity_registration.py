"""The registration file, its references and how it is read: built from a gateway's
config and catalog, parsed back strictly, fetched over http only, served by the web
listener. No chain and no broker here (tests/identity/test_identity_chain.py has them)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nanotoll.gateway.config import ConfigError, parse_config
from nanotoll.gateway.identity import SUMMARY_PATH, IdentityDocuments
from nanotoll.gateway.metrics import Metrics, MetricsServer
from nanotoll.identity.errors import IdentityError
from nanotoll.identity.fetch import fetch_document
from nanotoll.identity.provider_file import agent_uri, provider_registration
from nanotoll.identity.reference import parse_agent_reference, registry_name
from nanotoll.identity.registration import (
    PLAIN_PATH,
    REGISTRATION_TYPE,
    WELL_KNOWN_PATH,
    parse_registration,
)
from nanotoll.protocol.eip712 import domain_separator
from nanotoll.protocol.messages import Product, sign_catalog
from nanotoll.protocol.signing import address_of
from nanotoll.servers.process import free_port
from support.gateway_support import CHAIN_ID, ESCROW, PROVIDER_KEY, config_document

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
REPUTATION = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
PROVIDER = address_of(PROVIDER_KEY)


def config(**identity: Any) -> Any:
    document = config_document(mqtt_port=1999, metrics={"port": 9464},
                               identity={"identity_registry": REGISTRY,
                                         "reputation_registry": REPUTATION,
                                         "name": "wx", "description": "nowcasts", **identity})
    return parse_config(document, Path("."), "gateway.toml")


def catalog() -> Any:
    return sign_catalog(PROVIDER_KEY, domain_separator(CHAIN_ID, ESCROW),
                        bytes.fromhex(PROVIDER[2:]), 3, 0, 10**9,
                        (Product("weather", 1500, "nowcast"), Product("nav", 4000, "air")))


def document(**change: Any) -> dict[str, Any]:
    built = json.loads(provider_registration(config(), PROVIDER, catalog(), [7]).encode())
    built.update(change)
    return built


def test_the_file_says_what_a_device_needs_and_reads_back_equal() -> None:
    registration = provider_registration(config(), PROVIDER, catalog(), [7])
    raw = registration.encode()
    built = json.loads(raw)
    assert built["type"] == REGISTRATION_TYPE
    mqtt = next(s for s in built["services"] if s["name"] == "MQTT")
    assert mqtt == {"name": "MQTT", "endpoint": "mqtt://127.0.0.1:1999", "version": "1",
                    "catalogTopic": f"nt/1/{PROVIDER[2:].lower()}/catalog"}
    assert built["registrations"] == [{"agentId": 7,
                                       "agentRegistry": f"eip155:{CHAIN_ID}:{REGISTRY}"}]
    assert built["nanotoll"]["escrow"] == ESCROW
    assert built["nanotoll"]["products"][1] == {"name": "nav", "unitPrice": 4000,
                                                "description": "air"}
    assert "reputation" in built["supportedTrust"]
    assert parse_registration(raw) == registration
    assert registration.registered_as(CHAIN_ID, REGISTRY) == (7,)
    assert registration.registered_as(CHAIN_ID + 1, REGISTRY) == ()


def test_agent_uri_and_broker_follow_the_config() -> None:
    assert agent_uri(config()) == f"http://127.0.0.1:9464{WELL_KNOWN_PATH}"
    assert agent_uri(config(agent_uri="https://wx.example/agent.json")) == \
        "https://wx.example/agent.json"
    told = provider_registration(config(broker_url="mqtts://broker.example:8883"), PROVIDER,
                                 catalog())
    assert told.broker() == ("broker.example", 8883, True)
    no_listener = parse_config(config_document(identity={"identity_registry": REGISTRY}),
                               Path("."), "gateway.toml")
    with pytest.raises(IdentityError, match="no web listener"):
        agent_uri(no_listener)


@pytest.mark.parametrize(("identity", "message"), [
    ({"identity_registry": "0x12"}, "identity_registry"),
    ({"agent_uri": "ipfs://bafy"}, "agent_uri: must be a http or https URL"),
    ({"broker_url": "tcp://h:1"}, "broker_url"),
    ({"agent_id": -1}, "agent_id"),
    ({"colour": "red"}, "unknown key"),
])
def test_bad_identity_config_is_refused_naming_the_key(identity: dict[str, Any],
                                                        message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config_document(identity=identity), Path("."), "gateway.toml")


def _without_mqtt(built: dict[str, Any]) -> dict[str, Any]:
    built["services"] = [s for s in built["services"] if s["name"] != "MQTT"]
    return built


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps(document(type="https://example/other")).encode(), "type"),
    (json.dumps(_without_mqtt(document())).encode(), "one MQTT service"),
    (json.dumps(document(nanotoll={"provider": "0x12"})).encode(), "nanotoll."),
    (json.dumps(document(registrations=[{"agentId": 1, "agentRegistry": "eip155:x"}])
                ).encode(), "not a registry name"),
    (b" " * (64 * 1024 + 1), "more than"),
])
def test_a_malformed_file_is_refused_naming_the_field(raw: bytes, message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        parse_registration(raw)


def test_agent_references() -> None:
    ref = parse_agent_reference(f"eip155:31337:{REGISTRY.lower()}/12")
    assert (ref.chain_id, ref.registry, ref.agent_id) == (31337, REGISTRY, 12)
    assert str(ref) == f"{registry_name(31337, REGISTRY)}/12"
    for bad in ("eip155:31337:0x12/1", f"eip155:31337:{REGISTRY}/0", f"eip155:1:{REGISTRY}",
                f"solana:1:{REGISTRY}/1"):
        with pytest.raises(IdentityError, match="not an agent reference"):
            parse_agent_reference(bad)


@contextlib.contextmanager
def http_server(status: int, body: bytes, location: str = "") -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/agent.json"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "ipfs://bafybeigd", "data:,{}",
                                 "ftp://host/agent.json", "agent.json"])
def test_schemes_other_than_http_are_refused(uri: str) -> None:
    with pytest.raises(IdentityError, match="is not fetched"):
        fetch_document(uri)


def test_fetch_bounds_and_failures() -> None:
    with http_server(200, b"{}") as uri:
        assert fetch_document(uri) == b"{}"
    with http_server(200, b"x" * 101) as uri, pytest.raises(IdentityError, match="over 100"):
        fetch_document(uri, limit=100)
    with http_server(404, b"") as uri, pytest.raises(IdentityError, match="HTTP 404"):
        fetch_document(uri)
    for target in ("file:///etc/passwd", "http://127.0.0.1:9/elsewhere.json"):
        with http_server(302, b"", target) as uri, pytest.raises(IdentityError,
                                                                  match="HTTP 302"):
            fetch_document(uri)
    with pytest.raises(IdentityError, match="unreachable"):
        fetch_document(f"http://127.0.0.1:{free_port()}/agent.json", timeout=2)


def test_the_web_listener_serves_the_file_at_both_paths_without_the_metrics_login() -> None:
    port = free_port()
    gateway = config(agent_id=7)
    documents = IdentityDocuments(gateway, PROVIDER, catalog)
    server = MetricsServer(Metrics(), port, login=("ops", "secret"),
                           documents=documents.routes())
    try:
        for path in (WELL_KNOWN_PATH, PLAIN_PATH):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as got:
                assert got.headers["Content-Type"] == "application/json"
                registration = parse_registration(got.read())
            assert registration.registered_as(CHAIN_ID, REGISTRY) == (7,)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{SUMMARY_PATH}",
                                    timeout=5) as got:
            summary = json.loads(got.read())
        assert summary["agentId"] == 7
        assert summary["agentRegistry"] == f"eip155:{CHAIN_ID}:{REGISTRY}"
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        server.close()
