"""Coverage-guided fuzzing, bounded: every target of ``nanotoll bench fuzz`` for a few
seconds, then its CBOR corpus through the firmware decoder on the unix port."""

from __future__ import annotations

from pathlib import Path

import pytest
from nanotoll.bench.fuzz import (
    CBOR_TARGETS,
    TARGETS,
    Mismatch,
    Target,
    _Worker,
    run_fuzz_bench,
    seeds,
)
from nanotoll.protocol.errors import ErrorCode, ProtocolError


def test_every_target_runs_clean_for_a_few_seconds(tmp_path: Path) -> None:
    figures = run_fuzz_bench(runs=10**9, seconds=2, workdir=str(tmp_path))
    assert figures["targets"] == len(TARGETS) == 9
    for name in TARGETS:
        assert figures[f"{name}_executions"] > 200, name  # a loaded machine runs few
        assert figures[f"{name}_coverage"] > 0, name
        assert figures[f"{name}_crashes"] == 0, (name, figures.get(f"{name}_finding_kinds"))
        assert figures[f"{name}_mismatches"] == 0, (name, figures.get(f"{name}_finding_kinds"))
        if name in (*CBOR_TARGETS, "policy"):
            # every distinct input of the corpus (libFuzzer's count may hold duplicates)
            assert figures[f"{name}_firmware_replayed"] > figures[f"{name}_corpus"] // 2, name
    assert figures["crashes"] == figures["mismatches"] == 0


@pytest.mark.parametrize("name", TARGETS)
def test_every_target_has_seeds(name: str) -> None:
    assert len(seeds(name)) >= 2


def test_the_policy_vectors_replay_without_a_disagreement(tmp_path: Path) -> None:
    """The policy vectors, valid and invalid (those of cbor_invalid.json among them), get
    one verdict from the firmware's policy decoder and from CPython's."""
    from nanotoll.bench.fuzz import firmware_replay

    inputs = seeds("policy")
    replayed, disagreeing = firmware_replay(inputs, tmp_path, policy=True)
    assert replayed == len(set(inputs)) and disagreeing == 0
    assert not list(tmp_path.glob("firmware-mismatch-*"))


def test_the_registration_target_refuses_and_round_trips() -> None:
    from nanotoll.bench.fuzz import build_target
    from nanotoll.identity.errors import IdentityError

    target = build_target("registration")
    for seed in seeds("registration"):
        target.check(seed)  # accepted, and the same once written out again
    sample = seeds("registration")[0]
    for bad in (b"{}", b"[]", b"\xff", sample.replace(b'"MQTT"', b'"mqtt"'),
                sample.replace(b"mqtts://broker.example", b"mqtts://broker.[example")):
        with pytest.raises(IdentityError):
            target.check(bad)


def test_the_harness_counts_and_keeps_crashes_and_mismatches(tmp_path: Path) -> None:
    def check(data: bytes) -> None:
        if data == b"refused":
            raise ProtocolError(ErrorCode.MALFORMED, "the decoder's own refusal")
        if data == b"differs":
            raise Mismatch("two readings")
        if data == b"crash":
            raise TypeError("not a refusal")

    worker = _Worker(Target(check, (ProtocolError,)), tmp_path)
    for data in (b"ok", b"refused", b"differs", b"crash", b"crash"):
        worker(data)
    assert worker.counts == {"crashes": 2, "mismatches": 1}
    assert (tmp_path / "crashes-02").read_bytes() == b"crash"
    assert (tmp_path / "mismatches-01").read_bytes() == b"differs"


def test_lower_runs_and_unknown_targets_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fuzz targets"):
        run_fuzz_bench(runs=10, targets=["nope"])
    with pytest.raises(ValueError, match="at least 1"):
        run_fuzz_bench(runs=0)


def test_an_escrow_log_with_an_oversized_byte_string_is_a_format_error() -> None:
    """A Redeemed log whose items claim 2^64 bytes: eth_abi raises OverflowError, which
    the decoder turns into its own refusal like any other malformed log."""
    from nanotoll.chain.eventlog import EscrowEventDecoder, LogFormatError

    decoder = EscrowEventDecoder()
    data = b"".join(word.to_bytes(32, "big") for word in (0, 64, 2**64))  # total, offset, length
    refused = 0
    for topic in decoder.topics:  # every event: anything but LogFormatError fails the test
        log = {"topics": [bytes.fromhex(topic[2:]), bytes(32)], "data": data,
               "blockNumber": 1, "blockHash": bytes(32), "logIndex": 0}
        try:
            decoder.decode(log)
        except LogFormatError:
            refused += 1
    assert refused >= 1  # Redeemed's items
