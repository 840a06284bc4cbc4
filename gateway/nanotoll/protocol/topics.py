"""The MQTT topics of protocol version 1 (docs/protocol.md, "Topics"), built and parsed.

``provider`` and ``device`` are 40 lowercase hex digits of an address, without ``0x``.
Every CPython side (gateway, devices' tools, benches, tests) takes its topic strings
from here; the firmware writes the same four patterns in ``firmware/agent.py``.
"""

from __future__ import annotations

import re

from . import PROTOCOL_VERSION
from .errors import ErrorCode, ProtocolError

ROOT = f"nt/{PROTOCOL_VERSION}"
ADDRESS_HEX = re.compile(r"[0-9a-f]{40}")
# A level a response may be published to: the gateway never answers on a junk level.
REPLY_SEGMENT = re.compile(r"[0-9A-Za-z_-]{1,64}")


def catalog_topic(provider: str) -> str:
    """Where the provider's signed catalog is published, retained."""
    return f"{ROOT}/{provider}/catalog"


def registration_topic(provider: str) -> str:
    """Where the provider's gateway publishes its ERC-8004 registration file (JSON),
    retained: the document its web listener serves, as it was when the gateway
    connected."""
    return f"{ROOT}/{provider}/agent"


def request_prefix(provider: str) -> str:
    """The request topics of a provider, up to the device level."""
    return f"{ROOT}/{provider}/req/"


def request_topic(provider: str, device: str) -> str:
    return f"{ROOT}/{provider}/req/{device}"


def request_filter(provider: str) -> str:
    """The subscription filter that matches every request topic of a provider."""
    return f"{ROOT}/{provider}/req/+"


def shared_subscription(provider: str) -> str:
    """The MQTT v5 shared subscription the provider's gateway processes split work on."""
    return f"$share/nanotoll-{provider}/{request_filter(provider)}"


def response_topic(provider: str, device: str) -> str:
    return f"{ROOT}/{provider}/resp/{device}"


def status_topic(provider: str, device: str) -> str:
    """A device's last will (``offline``), retained."""
    return f"{ROOT}/{provider}/status/{device}"


def policy_topic(provider: str, device: str) -> str:
    """Where the device's owner publishes the device's spending policy; only that owner's
    broker client may publish there (the broker's ACLs, ``nanotoll.broker.rights``)."""
    return f"{ROOT}/{provider}/policy/{device}"


def reply_segment(topic: str, prefix: str) -> str | None:
    """The ``{device}`` level to answer on for a request received on ``topic``: the last
    level when it is a plausible one (letters, digits, ``_``/``-``, at most 64), else None:
    the request is dropped with a log line rather than answered on a topic nobody
    provisioned (a junk level would make the gateway publish wherever a sender likes)."""
    segment = topic[len(prefix):] if topic.startswith(prefix) else topic.rsplit("/", 1)[-1]
    return segment if REPLY_SEGMENT.fullmatch(segment) else None


def request_device(topic: str, prefix: str) -> bytes:
    """The 20-byte device address a request topic under ``prefix`` names; WRONG_TOPIC
    when the topic is not a request topic of that provider or its device level is not an
    address."""
    if not topic.startswith(prefix):
        raise ProtocolError(ErrorCode.WRONG_TOPIC, f"not a request topic of {prefix}")
    segment = topic[len(prefix):]
    if not ADDRESS_HEX.fullmatch(segment):
        raise ProtocolError(ErrorCode.WRONG_TOPIC,
                            "device segment must be 40 lowercase hex digits")
    return bytes.fromhex(segment)
