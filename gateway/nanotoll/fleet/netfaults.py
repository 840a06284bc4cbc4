"""The network fault model: what happens to each whole MQTT packet on a lossy link.

Each direction has its own probabilities: ``up`` is device to broker, ``down`` broker to
device. A packet is lost (``loss``), sent twice (``dup``), held back ``delay_ms`` with
every later packet of its direction queued behind it, as a TCP retransmission holds the
stream (``delay``), or sent after the next packet of its direction (``reorder``).

A lost packet never comes back within its connection: TCP would have resent it, the
broker does not resend in-session. So a lost request is carried by the client's own
QoS 1 re-send, a lost response by the device's request re-send, and a lost CONNACK or
SUBACK by the client's reconnect. CONNECT and CONNACK are never duplicated: no link
makes a second one, and the broker or client closes the connection on it by rule.

Text form (the fleet's ``--net-faults``): ``loss=0.1,dup=0.1`` for both directions,
``up.loss=0.2,down.delay=0.05,down.delay_ms=300`` for one; a direction's own key wins
over the shared one; ``seed=N`` makes the dice repeat for the same packet sequence.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .mqtt_frames import Packet

DIRECTIONS = ("up", "down")  # up: device -> broker; down: broker -> device
NEVER_DUPLICATED = frozenset({"CONNECT", "CONNACK"})
# Above this a session rarely lives through its own handshake and purchases stop
# being what a run measures.
MAX_LOSS = 0.5
MAX_DELAY_MS = 10_000
# A packet held for reordering goes out after the next one, or after this long alone:
# a client waiting for it sends nothing more (CONNACK, a response).
REORDER_HOLD_S = 0.1


class NetFaultsError(ValueError):
    """A fault specification that cannot be used; the message names the key."""


@dataclass(frozen=True)
class LinkFaults:
    """The probabilities of one direction."""

    loss: float = 0.0
    dup: float = 0.0
    delay: float = 0.0
    delay_ms: int = 0
    reorder: float = 0.0

    @property
    def active(self) -> bool:
        return any((self.loss, self.dup, self.delay and self.delay_ms, self.reorder))

    def problems(self, direction: str) -> list[str]:
        found = []
        for name, upper in (("loss", MAX_LOSS), ("dup", 1.0), ("delay", 1.0),
                            ("reorder", 1.0)):
            value = getattr(self, name)
            if math.isnan(value) or not 0.0 <= value <= upper:
                found.append(f"{direction}.{name} must be in [0, {upper:g}], got {value}")
        if not 0 <= self.delay_ms <= MAX_DELAY_MS:
            found.append(f"{direction}.delay_ms must be in 0..{MAX_DELAY_MS}, got "
                         f"{self.delay_ms}")
        if self.delay > 0 and self.delay_ms == 0:
            found.append(f"{direction}.delay={self.delay:g} needs delay_ms above 0")
        if self.delay_ms > 0 and self.delay == 0:
            found.append(f"{direction}.delay_ms={self.delay_ms} needs delay above 0, the "
                         "share of packets held (1 for every packet)")
        return found


@dataclass(frozen=True)
class NetFaults:
    up: LinkFaults = field(default_factory=LinkFaults)
    down: LinkFaults = field(default_factory=LinkFaults)
    seed: int = 0

    def link(self, direction: str) -> LinkFaults:
        return self.up if direction == "up" else self.down

    @property
    def active(self) -> bool:
        return self.up.active or self.down.active

    def validate(self) -> None:
        found = self.up.problems("up") + self.down.problems("down")
        if found:
            raise NetFaultsError("; ".join(found))

    def describe(self) -> str:
        """The text form, shortest: shared keys when both directions agree."""
        keys = ("loss", "dup", "delay", "delay_ms", "reorder")
        parts = []
        for key in keys:
            up, down = getattr(self.up, key), getattr(self.down, key)
            if up == down:
                parts += [f"{key}={up:g}"] if up else []
            else:
                parts += [f"{d}.{key}={v:g}" for d, v in (("up", up), ("down", down)) if v]
        return ",".join(parts + [f"seed={self.seed}"])

    def as_dict(self) -> dict[str, object]:
        return {"seed": self.seed,
                **{d: {k: getattr(self.link(d), k)
                       for k in ("loss", "dup", "delay", "delay_ms", "reorder")}
                   for d in DIRECTIONS}}


_FLOAT_KEYS = ("loss", "dup", "delay", "reorder")


def _value(key: str, text: str) -> float | int:
    name = key.rpartition(".")[2]
    try:
        return int(text) if name == "delay_ms" or name == "seed" else float(text)
    except ValueError:
        kind = "an integer" if name in ("delay_ms", "seed") else "a number"
        raise NetFaultsError(f"{key} must be {kind}, got {text!r}") from None


def _link(values: dict[str, float | int]) -> LinkFaults:
    return LinkFaults(loss=float(values.get("loss", 0.0)), dup=float(values.get("dup", 0.0)),
                      delay=float(values.get("delay", 0.0)),
                      delay_ms=int(values.get("delay_ms", 0)),
                      reorder=float(values.get("reorder", 0.0)))


def parse_net_faults(text: str) -> NetFaults:
    """``loss=0.1,dup=0.1,up.delay=0.05,up.delay_ms=200,seed=7`` -> NetFaults (validated)."""
    shared: dict[str, float | int] = {}
    own: dict[str, dict[str, float | int]] = {d: {} for d in DIRECTIONS}
    seed = 0
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep:
            raise NetFaultsError(f"{part!r} is not KEY=VALUE")
        value = _value(key, raw.strip())
        direction, dot, name = key.rpartition(".")
        if key == "seed":
            seed = int(value)
        elif name not in (*_FLOAT_KEYS, "delay_ms"):
            raise NetFaultsError(f"unknown key {key!r}; keys: loss, dup, delay, delay_ms, "
                                 "reorder, seed, each but seed also as up.KEY or down.KEY")
        elif not dot:
            shared[name] = value
        elif direction in DIRECTIONS:
            own[direction][name] = value
        else:
            raise NetFaultsError(f"unknown direction in {key!r}: up (device to broker) or "
                                 "down (broker to device)")
    links = {d: _link({**shared, **own[d]}) for d in DIRECTIONS}
    faults = NetFaults(up=links["up"], down=links["down"], seed=seed)
    faults.validate()
    return faults


@dataclass(frozen=True)
class Fate:
    """What happens to one packet."""

    drop: bool = False
    copies: int = 1
    delay_s: float = 0.0
    reorder: bool = False


class FaultDice:
    """The fate of each packet of one direction of one connection, from a seeded RNG.

    Four numbers are drawn for every packet, whatever happens to it, so one choice
    never shifts the dice of the packets after it.
    """

    def __init__(self, link: LinkFaults, seed: int, connection: int, direction: str) -> None:
        self.link = link
        self._random = random.Random(f"{seed}/{connection}/{direction}")

    def roll(self, packet: Packet) -> Fate:
        lost, twice, late, swapped = (self._random.random() for _ in range(4))
        link = self.link
        if lost < link.loss:
            return Fate(drop=True)
        copies = 2 if twice < link.dup and packet.name not in NEVER_DUPLICATED else 1
        delay_s = link.delay_ms / 1000 if late < link.delay else 0.0
        return Fate(copies=copies, delay_s=delay_s, reorder=swapped < link.reorder)
