"""The fault model's text form, its limits, and its seeded dice."""

from __future__ import annotations

import pytest
from nanotoll.fleet.mqtt_frames import Packet
from nanotoll.fleet.netfaults import (
    FaultDice,
    LinkFaults,
    NetFaults,
    NetFaultsError,
    parse_net_faults,
)

PUBLISH = Packet(b"\x30\x03\x00\x01t")
CONNECT = Packet(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")


def test_shared_keys_set_both_directions_and_a_direction_key_wins() -> None:
    faults = parse_net_faults("up.loss=0.3, loss=0.1,dup=0.2,down.delay=0.5,"
                              "down.delay_ms=250,reorder=0.05,seed=9")
    assert faults.up == LinkFaults(loss=0.3, dup=0.2, reorder=0.05)
    assert faults.down == LinkFaults(loss=0.1, dup=0.2, delay=0.5, delay_ms=250,
                                     reorder=0.05)
    assert faults.seed == 9
    assert parse_net_faults(faults.describe()) == faults


@pytest.mark.parametrize(("text", "message"), [
    ("loss", "is not KEY=VALUE"),
    ("jitter=0.1", "unknown key 'jitter'"),
    ("left.loss=0.1", "unknown direction"),
    ("loss=lots", "loss must be a number"),
    ("delay_ms=0.5,delay=1", "delay_ms must be an integer"),
    ("loss=0.6", "up.loss must be in [0, 0.5]"),
    ("down.dup=1.5", "down.dup must be in [0, 1]"),
    ("reorder=nan", "reorder must be in"),
    ("delay=0.2", "needs delay_ms above 0"),
    ("delay_ms=100", "needs delay above 0"),
    ("delay=1,delay_ms=60000", "delay_ms must be in 0..10000"),
])
def test_a_bad_specification_names_its_key(text: str, message: str) -> None:
    with pytest.raises(NetFaultsError) as caught:
        parse_net_faults(text)
    assert message in str(caught.value)


def test_no_faults_is_inactive() -> None:
    assert not parse_net_faults("").active
    assert not parse_net_faults("seed=3").active
    assert parse_net_faults("down.reorder=0.1").active


def _fates(faults: NetFaults, connection: int, direction: str, count: int) -> list[object]:
    dice = FaultDice(faults.link(direction), faults.seed, connection, direction)
    return [dice.roll(PUBLISH) for _ in range(count)]


def test_the_same_seed_gives_the_same_fates() -> None:
    faults = parse_net_faults("loss=0.2,dup=0.2,delay=0.2,delay_ms=50,reorder=0.2,seed=4")
    assert _fates(faults, 1, "up", 300) == _fates(faults, 1, "up", 300)
    # each connection and direction has dice of its own
    assert _fates(faults, 1, "up", 300) != _fates(faults, 2, "up", 300)
    assert _fates(faults, 1, "up", 300) != _fates(faults, 1, "down", 300)
    other = parse_net_faults("loss=0.2,dup=0.2,delay=0.2,delay_ms=50,reorder=0.2,seed=5")
    assert _fates(faults, 1, "up", 300) != _fates(other, 1, "up", 300)


def test_connect_is_never_duplicated_but_may_be_lost() -> None:
    dice = FaultDice(LinkFaults(loss=0.5, dup=1.0), 1, 1, "up")
    fates = [dice.roll(CONNECT) for _ in range(400)]
    assert all(f.copies == 1 for f in fates)
    assert 150 < sum(f.drop for f in fates) < 250
    publish = FaultDice(LinkFaults(dup=1.0), 1, 1, "up").roll(PUBLISH)
    assert publish.copies == 2
