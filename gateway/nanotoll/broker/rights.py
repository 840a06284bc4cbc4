"""Who may do what on the broker: the dynamic-security roles of a device, a provider's
gateway and an owner's tool, as ACL lists.

mosquitto 2.0's dynamic-security plugin substitutes no ``%u``/``%c`` in ACL topics, so
each device and each owner gets a role of its own that names its topics literally. The
default for everything no role allows is deny (``DEFAULT_ACCESS``): a client receives
only what a role lets it receive, even on a filter it was allowed to subscribe.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..protocol.topics import (
    catalog_topic,
    policy_topic,
    registration_topic,
    request_filter,
    request_topic,
    response_topic,
    shared_subscription,
    status_topic,
)

ADMIN_ROLE = "nt-admin"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"

DEFAULT_ACCESS = {"publishClientSend": False, "publishClientReceive": False,
                  "subscribe": False, "unsubscribe": True}

Acl = dict[str, Any]


def acl(kind: str, topic: str, allow: bool = True) -> Acl:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": allow}


def _receives(topic: str) -> list[Acl]:
    """Subscribing to ``topic`` and receiving what is published there."""
    return [acl("subscribeLiteral", topic), acl("publishClientReceive", topic)]


def device_role_name(device: str) -> str:
    return f"nt-device-{device}"


def gateway_role_name(provider: str) -> str:
    return f"nt-gateway-{provider}"


def owner_role_name(owner: str) -> str:
    return f"nt-owner-{owner}"


def device_acls(provider: str, device: str) -> list[Acl]:
    """Its own request topic and last will out; its own responses and policy, and the
    catalog, in."""
    return [
        acl("publishClientSend", request_topic(provider, device)),
        acl("publishClientSend", status_topic(provider, device)),
        *_receives(response_topic(provider, device)),
        *_receives(policy_topic(provider, device)),
        *_receives(catalog_topic(provider)),
    ]


def gateway_acls(provider: str) -> list[Acl]:
    """The provider's requests in, through its shared subscription only; responses and
    the retained catalog and registration file out."""
    return [
        acl("subscribeLiteral", shared_subscription(provider)),
        acl("publishClientReceive", request_filter(provider)),
        acl("publishClientSend", response_topic(provider, "+")),
        acl("publishClientSend", catalog_topic(provider)),
        acl("publishClientSend", registration_topic(provider)),
    ]


def owner_acls(provider: str, devices: Iterable[str]) -> list[Acl]:
    """Each of the owner's devices' policy topics, out and in (``device policy set``
    reads back what it published, ``show`` reads what is retained); the provider's
    public documents in (the signed catalog and its ERC-8004 registration, which
    discovery checks before a device is provisioned); nothing else."""
    policies = [policy_topic(provider, device) for device in devices]
    return [
        *(acl("publishClientSend", topic) for topic in policies),
        *(entry for topic in policies for entry in _receives(topic)),
        *_receives(catalog_topic(provider)),
        *_receives(registration_topic(provider)),
    ]


def admin_acls() -> list[Acl]:
    """The plugin's control topic and nothing else: administering is not trading."""
    return [
        acl("publishClientSend", f"{CONTROL_TOPIC}/#"),
        acl("subscribeLiteral", f"{CONTROL_TOPIC}/response"),
        acl("publishClientReceive", f"{CONTROL_TOPIC}/response"),
    ]
