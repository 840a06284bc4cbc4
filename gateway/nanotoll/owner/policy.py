"""``nanotoll device policy set | show``: the owner's signed spending policy for a device,
made from the channel as the chain holds it, signed with the payer's key, published
retained on the device's policy topic, and read back from the broker.

The device applies a policy only when it is signed by the owner recorded at provisioning
(the channel's payer), so ``set`` refuses a key that is not the channel's payer before
anything is published, and every limit is checked before signing.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address

from ..chain.client import EscrowClient
from ..nodelay import no_delay
from ..protocol.eip712 import domain_separator
from ..protocol.policy import PolicyError, SignedPolicy, SpendingPolicy, decode_policy
from ..protocol.signing import checksum_address
from ..protocol.topics import policy_topic
from .errors import OwnerError
from .funding import read_channels

READ_BACK_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class BrokerAccess:
    """How the owner's tool reaches the broker: address, and for a secured broker the
    owner's client (username = its address, lowercase without 0x) and the broker's CA."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyLimits:
    """What ``set`` was asked for; None takes the chain's value (deposit, expiry) or
    the whole deposit (budget)."""

    budget: int | None = None
    expiry_margin: int = 3600
    max_unit_price: int = 0
    per_hour: int = 0
    per_minute: int = 0
    providers: tuple[str, ...] = ()
    provider_caps: tuple[tuple[str, int], ...] = ()
    product_caps: tuple[tuple[str, int], ...] = ()


def _raw_address(text: str, what: str) -> bytes:
    if not is_address(text):
        raise OwnerError(f"{what}: {text!r} is not an address")
    return bytes.fromhex(to_checksum_address(text)[2:])


def make_policy(client: EscrowClient, owner: LocalAccount, channel_id: int, seq: int,
                limits: PolicyLimits) -> tuple[SpendingPolicy, str, str]:
    """The policy for ``channel_id`` with the chain's deposit and expiry; returns it with
    the topic's provider and device (lowercase hex, no 0x)."""
    state = read_channels(client, [channel_id])[0]
    if not state.exists:
        raise OwnerError(f"channel {channel_id} does not exist on escrow {client.address}")
    if state.payer != owner.address:
        raise OwnerError(f"channel {channel_id} is paid for by {state.payer}, not by "
                         f"{owner.address}: its device applies only policies its owner "
                         "signed; use that account's keystore or key")
    if state.closed:
        raise OwnerError(f"channel {channel_id} was reclaimed: a policy for it is useless")
    policy = SpendingPolicy(
        channel_id=channel_id, seq=seq, deposit=state.deposit,
        budget=state.deposit if limits.budget is None else limits.budget,
        expiry=state.expiry, expiry_margin=limits.expiry_margin,
        max_unit_price=limits.max_unit_price, per_hour=limits.per_hour,
        per_minute=limits.per_minute,
        providers=tuple(sorted(_raw_address(p, "--provider") for p in limits.providers)),
        provider_caps=tuple(sorted((_raw_address(a, "--provider-cap"), c)
                                   for a, c in limits.provider_caps)),
        product_caps=tuple(sorted(limits.product_caps, key=lambda cap: cap[0].encode())))
    try:
        policy.check()
    except PolicyError as exc:
        raise OwnerError(f"nothing was published: {exc}") from None
    return policy, state.payee[2:].lower(), state.signer[2:].lower()


def _client(access: BrokerAccess) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_socket_open = no_delay
    if access.username is not None:
        client.username_pw_set(access.username, access.password)
    if access.ca_file is not None:
        client.tls_set(ca_certs=access.ca_file)
    try:
        client.connect(access.host, access.port, keepalive=30)
    except OSError as exc:
        raise OwnerError(f"cannot reach the broker at {access.host}:{access.port}: "
                         f"{exc}") from None
    return client


def publish_policy(access: BrokerAccess, topic: str, payload: bytes,
                   timeout: float = READ_BACK_SECONDS) -> None:
    """Publish retained, QoS 1, and wait for the broker's PUBACK."""
    client = _client(access)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise OwnerError(f"the broker at {access.host}:{access.port} did not confirm the "
                             f"policy on {topic} within {timeout:.0f} s (check the owner's "
                             "broker client and its right to publish there)")
    finally:
        client.disconnect()
        client.loop_stop()


def read_retained(access: BrokerAccess, topic: str,
                  timeout: float = READ_BACK_SECONDS) -> bytes | None:
    """The retained message on ``topic``, or None if the broker holds none; OwnerError
    when the broker refuses the login or the subscription."""
    got: list[bytes] = []
    refused: list[str] = []
    done = threading.Event()
    client = _client(access)

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(f"the broker at {access.host}:{access.port} refused the login "
                           f"of {access.username or 'an anonymous client'} ({reason}): "
                           "check --broker-user and the password")
            done.set()
            return
        client.subscribe(topic, qos=1)

    def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        # A refused read would otherwise look like an empty topic.
        if reasons and reasons[0].is_failure:
            refused.append(f"the broker at {access.host}:{access.port} does not let "
                           f"{access.username or 'an anonymous client'} read {topic}: "
                           "only the owner the device was provisioned for (`nanotoll "
                           "device provision --broker-folder`) may")
            done.set()
            return
        # The broker sends a retained message right after the SUBACK; half a second
        # without one means it holds none.
        if not done.is_set():
            threading.Timer(0.5, done.set).start()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        if message.retain:
            got.append(bytes(message.payload))
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    if refused:
        raise OwnerError(refused[0])
    return got[0] if got else None


def describe(signed: SignedPolicy, separator: bytes, owner: str | None) -> dict[str, Any]:
    """A signed policy as JSON-ready fields, with its signer and whether that is ``owner``."""
    p = signed.policy
    signer = checksum_address(signed.signer(separator))
    return {
        "channel": p.channel_id, "seq": p.seq, "deposit": p.deposit, "budget": p.budget,
        "expiry": p.expiry, "expiry_margin": p.expiry_margin,
        "max_unit_price": p.max_unit_price, "per_hour": p.per_hour,
        "per_minute": p.per_minute,
        "providers": [checksum_address(a) for a in p.providers],
        "provider_caps": {checksum_address(a): c for a, c in p.provider_caps},
        "product_caps": dict(p.product_caps),
        "signer": signer, "signed_by_owner": owner is not None and signer == owner,
    }


def set_policy(client: EscrowClient, owner: LocalAccount, access: BrokerAccess,
               channel_id: int, limits: PolicyLimits, seq: int | None = None
               ) -> dict[str, Any]:
    """Make, sign and publish the policy; read it back from the broker. ``seq`` None takes
    one above the retained policy's (1 when there is none)."""
    policy, provider, device = make_policy(client, owner, channel_id, 1, limits)
    topic = policy_topic(provider, device)
    separator = domain_separator(int(client.w3.eth.chain_id), client.address)
    if seq is None:
        current = read_retained(access, topic)
        seq = 1
        if current is not None:
            try:
                seq = decode_policy(current).policy.seq + 1
            except PolicyError:
                seq = 1
    signed = replace(policy, seq=seq).sign(bytes(owner.key), separator)
    payload = signed.encode()
    publish_policy(access, topic, payload)
    back = read_retained(access, topic)
    if back != payload:
        raise OwnerError(f"published on {topic}, but the broker gives back "
                         f"{'nothing' if back is None else 'another policy'}: check the "
                         "owner's right to publish there")
    return {"topic": topic, **describe(signed, separator, owner.address)}


def show_policy(client: EscrowClient, access: BrokerAccess, channel_id: int
                ) -> dict[str, Any]:
    """The policy the broker holds for the channel's device, checked against the payer."""
    state = read_channels(client, [channel_id])[0]
    if not state.exists:
        raise OwnerError(f"channel {channel_id} does not exist on escrow {client.address}")
    topic = policy_topic(state.payee[2:].lower(), state.signer[2:].lower())
    raw = read_retained(access, topic)
    if raw is None:
        raise OwnerError(f"no policy is retained on {topic}: the device keeps its "
                         "provisioned one (set one with `nanotoll device policy set`)")
    try:
        signed = decode_policy(raw)
    except PolicyError as exc:
        raise OwnerError(f"the message retained on {topic} is no valid policy: {exc}") from None
    separator = domain_separator(int(client.w3.eth.chain_id), client.address)
    return {"topic": topic, **describe(signed, separator, state.payer)}


def parse_caps(items: Sequence[str], what: str) -> tuple[tuple[str, int], ...]:
    """KEY=UNITS pairs from the command line."""
    caps = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise OwnerError(f"{what}: {item!r} is not KEY=UNITS")
        caps.append((key, int(value)))
    return tuple(caps)
